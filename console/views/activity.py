"""The dashboard's history as JSON (console.activity): of every organization the user may read,
or of one. The dashboard's charts read the same data from the page and refresh it from here."""

import logging

from django.http import JsonResponse

from console import activity, permissions
from console.views.base import org_page

log = logging.getLogger(__name__)


def _window(request) -> activity.Window | JsonResponse:
    try:
        return activity.window_of(request.GET.get("window"))
    except activity.BadWindow as error:
        log.warning("History refused for %s: %s", request.user, error)
        return JsonResponse({"error": str(error)}, status=400)


def all_history(request):
    window = _window(request)
    if isinstance(window, JsonResponse):
        return window
    organizations = list(permissions.visible_organizations(request.user))
    return JsonResponse(activity.history(organizations, window))


@org_page()
def organization_history(request, organization):
    window = _window(request)
    if isinstance(window, JsonResponse):
        return window
    return JsonResponse(activity.history([organization], window))
