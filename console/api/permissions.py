"""DRF's side of console.permissions: read for operators, write for administrators."""

from rest_framework.permissions import SAFE_METHODS, BasePermission

from console import permissions


class OrganizationAccess(BasePermission):
    """Every object answers `organization_id` through its view's `organization_of()`; list
    querysets are already restricted to the user's organizations."""

    message = "Your role in this organization does not allow that."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        if request.method in SAFE_METHODS:
            return True
        # A change needs the administrator role somewhere; which organization is checked on
        # the object (or, for a creation, on the organization the new object belongs to).
        return permissions.visible_org_ids(request.user, permissions.Access.ADMINISTRATOR) != set()

    def has_object_permission(self, request, view, obj) -> bool:
        organization_id = view.organization_of(obj)
        if request.method in SAFE_METHODS:
            return permissions.can_view(request.user, organization_id)
        return permissions.can_administer(request.user, organization_id)
