"""What every organization page shares: the access check and the property-page tabs."""

from functools import wraps

from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import render

from console import permissions
from console.permissions import Access


def org_page(minimum: Access = Access.OPERATOR):
    """Load the organization named in the URL for a user allowed at `minimum` level.

    Outsiders get 404 (they learn nothing of the organization), an operator asking for an
    administrator's page gets 403.
    """

    def decorator(view):
        @wraps(view)
        def wrapper(request, org: str, *args, **kwargs):
            organization = permissions.organization_or_404(request.user, org, minimum)
            return view(request, organization, *args, **kwargs)

        return wrapper

    return decorator


def page(request, template: str, organization, tab: str, **context):
    """Render an organization page with its tabs and what the user may do there."""
    context.update(
        organization=organization,
        tab=tab,
        can_administer=permissions.can_administer(request.user, organization),
        can_execute_now=permissions.can_execute_now(request.user, organization),
        can_reset_usns=permissions.can_reset_usns(request.user, organization),
    )
    return render(request, template, context)


def paginate(request, queryset, per_page: int = 50):
    return Paginator(queryset, per_page).get_page(request.GET.get("page"))


def require_administrator(request, organization) -> None:
    """Changes need the administrator role: an operator's POST is refused with 403."""
    if request.method not in ("GET", "HEAD") and not permissions.can_administer(
        request.user, organization
    ):
        raise PermissionDenied("Only administrators of this organization can change it.")


def lock_for_readers(request, organization, *forms) -> None:
    """Show an operator the settings with every input disabled (they cannot post them)."""
    if permissions.can_administer(request.user, organization):
        return
    for form in forms:
        for each in getattr(form, "forms", [form]):
            for field in each.fields.values():
                field.disabled = True
