"""The dashboard: every organization the user may see, with its state at a glance."""

from django.shortcuts import render

from console import activity, permissions, status
from console.views.base import org_page, page
from interorg_site import login_throttle
from transport import archive


def dashboard(request):
    organizations = permissions.visible_organizations(request.user)
    statuses = status.all_statuses(organizations)
    # Staff (who reach the admin, where the attempts are listed) see the login lockouts in force.
    lockouts = login_throttle.lockouts_now() if request.user.is_staff else None
    # And how full the message archive is (the SMTP receiver refuses mail once it is).
    message_archive = archive.figures() if request.user.is_staff else None
    return render(
        request,
        "console/dashboard.html",
        {
            "statuses": statuses,
            "lockouts": lockouts,
            "message_archive": message_archive,
            **_history(request, [s.organization for s in statuses]),
        },
    )


def _history(request, organizations) -> dict:
    """The charts' data (drawn by static/console/charts.js) and its table, for the window asked
    for: an unknown one is named and the default shown instead."""
    window_error = ""
    try:
        window = activity.window_of(request.GET.get("window"))
    except activity.BadWindow as error:
        window_error = str(error)
        window = activity.window_of(None)
    data = activity.history(organizations, window) if organizations else None
    return {
        "history": data,
        "history_tables": activity.table_rows(data) if data else [],
        "history_series": activity.SERIES,
        "history_windows": activity.WINDOWS,
        "history_window": window,
        "history_window_error": window_error,
    }


@org_page()
def overview(request, organization):
    return page(
        request,
        "console/overview.html",
        organization,
        "overview",
        status=status.organization_status(organization),
    )
