"""The dashboard: every organization the user may see, with its state at a glance."""

from django.shortcuts import render

from console import permissions, status
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
        {"statuses": statuses, "lockouts": lockouts, "message_archive": message_archive},
    )


@org_page()
def overview(request, organization):
    return page(
        request,
        "console/overview.html",
        organization,
        "overview",
        status=status.organization_status(organization),
    )
