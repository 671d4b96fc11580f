"""The dashboard: every organization the user may see, with its state at a glance."""

from django.shortcuts import render

from console import permissions, status
from console.views.base import org_page, page


def dashboard(request):
    organizations = permissions.visible_organizations(request.user)
    statuses = status.all_statuses(organizations)
    return render(request, "console/dashboard.html", {"statuses": statuses})


@org_page()
def overview(request, organization):
    return page(
        request,
        "console/overview.html",
        organization,
        "overview",
        status=status.organization_status(organization),
    )
