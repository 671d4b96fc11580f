"""Who may do what to which organization: the one rule book of the console and the API.

Levels: an operator reads an organization; an administrator also changes its configuration and
recipients and runs its actions. A role comes from an OrganizationRole row (one organization) or
from the "InterOrg operators" / "InterOrg administrators" groups (every organization); superusers
administer everything. Execute Now and Import/Export All need the administrator role, or the
operator role plus Django's `requestor.execute_now` / `requestor.reset_usns` permission (the
original allowed Execute Now to whoever held the service account, not to every reader). That
rule is `may` / `require` below, and only there: the console, the API and the admin ask it.
"""

from dataclasses import dataclass
from enum import IntEnum

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404

from console.constants import ADMINISTRATORS_GROUP, OPERATORS_GROUP, ConsoleRole
from directory.models import Organization


class Access(IntEnum):
    NONE = 0
    OPERATOR = 1
    ADMINISTRATOR = 2


_LEVEL = {ConsoleRole.OPERATOR: Access.OPERATOR, ConsoleRole.ADMINISTRATOR: Access.ADMINISTRATOR}
_CACHE = "_console_access"


class _Grants:
    """A user's access, read once per request: an installation-wide level and per-org levels."""

    def __init__(self, everywhere: Access, per_org: dict[int, Access]) -> None:
        self.everywhere = everywhere
        self.per_org = per_org

    def level(self, organization_id: int) -> Access:
        return max(self.everywhere, self.per_org.get(organization_id, Access.NONE))

    def org_ids(self, minimum: Access) -> set[int] | None:
        """Organizations where the level is at least `minimum`; None means all of them."""
        if self.everywhere >= minimum:
            return None
        return {org_id for org_id, level in self.per_org.items() if level >= minimum}


def _grants(user) -> _Grants:
    if not user or not user.is_authenticated or not user.is_active:
        return _Grants(Access.NONE, {})
    cached = getattr(user, _CACHE, None)
    if cached is not None:
        return cached
    if user.is_superuser:
        grants = _Grants(Access.ADMINISTRATOR, {})
    else:
        groups = set(user.groups.values_list("name", flat=True))
        everywhere = Access.NONE
        if OPERATORS_GROUP in groups:
            everywhere = Access.OPERATOR
        if ADMINISTRATORS_GROUP in groups:
            everywhere = Access.ADMINISTRATOR
        per_org = {
            org_id: _LEVEL[role]
            for org_id, role in user.organization_roles.values_list("organization_id", "role")
        }
        grants = _Grants(everywhere, per_org)
    setattr(user, _CACHE, grants)
    return grants


def forget(user) -> None:
    """Drop the access cached on a user object (after its roles changed)."""
    if hasattr(user, _CACHE):
        delattr(user, _CACHE)


def access(user, organization: Organization | int) -> Access:
    org_id = organization if isinstance(organization, int) else organization.pk
    return _grants(user).level(org_id)


def can_view(user, organization) -> bool:
    return access(user, organization) >= Access.OPERATOR


def can_administer(user, organization) -> bool:
    return access(user, organization) >= Access.ADMINISTRATOR


@dataclass(frozen=True)
class Button:
    """A requestor action, and the Django permission that lets an operator run it."""

    title: str
    permission: str


EXECUTE_NOW = "execute_now"
IMPORT_ALL = "import_all"
EXPORT_ALL = "export_all"
BUTTONS = {
    EXECUTE_NOW: Button("Execute Now", "requestor.execute_now"),
    IMPORT_ALL: Button("Import All Recipients", "requestor.reset_usns"),
    EXPORT_ALL: Button("Export All Recipients", "requestor.reset_usns"),
}


def may(user, organization, action: str) -> bool:
    """May the user run `action` (a key of BUTTONS) for this organization: its administrators,
    and its operators holding the button's Django permission. No role, no button (a Django
    permission alone is not a role in any organization)."""
    level = access(user, organization)
    return level >= Access.ADMINISTRATOR or (
        level >= Access.OPERATOR and user.has_perm(BUTTONS[action].permission)
    )


def require(user, organization, action: str) -> None:
    """PermissionDenied, saying what would allow it, unless the user `may` run the action."""
    if not may(user, organization, action):
        button = BUTTONS[action]
        name = organization if isinstance(organization, int) else organization.name
        raise PermissionDenied(
            f"{button.title} for {name} needs the administrator role in that organization, or "
            f"the operator role with the permission “{button.permission}”."
        )


def may_somewhere(user, action: str) -> bool:
    """May the user run `action` for at least one organization (the admin offers it then)."""
    if visible_org_ids(user, Access.ADMINISTRATOR) != set():
        return True
    return visible_org_ids(user) != set() and user.has_perm(BUTTONS[action].permission)


def can_execute_now(user, organization) -> bool:
    return may(user, organization, EXECUTE_NOW)


def can_reset_usns(user, organization) -> bool:
    return may(user, organization, IMPORT_ALL)


def administrators(organization: Organization | int) -> QuerySet:
    """The active users who may administer the organization: its administrators, the members
    of the administrators group, and superusers (the rule of `access`, as a query)."""
    org_id = organization if isinstance(organization, int) else organization.pk
    role = Q(
        organization_roles__organization_id=org_id,
        organization_roles__role=ConsoleRole.ADMINISTRATOR,
    )
    everywhere = Q(is_superuser=True) | Q(groups__name=ADMINISTRATORS_GROUP)
    return get_user_model().objects.filter(role | everywhere, is_active=True).distinct()


def is_installation_administrator(user) -> bool:
    """May create and delete organizations (administrator everywhere)."""
    return _grants(user).everywhere >= Access.ADMINISTRATOR


def visible_org_ids(user, minimum: Access = Access.OPERATOR) -> set[int] | None:
    return _grants(user).org_ids(minimum)


def restrict(queryset: QuerySet, user, field: str = "organization") -> QuerySet:
    """Only the rows of organizations the user may see; `field` leads to the organization."""
    ids = visible_org_ids(user)
    if ids is None:
        return queryset
    lookup = "pk__in" if field == "pk" else f"{field}__in"
    return queryset.filter(**{lookup: ids})


def visible_organizations(user) -> QuerySet:
    return restrict(Organization.objects.all(), user, field="pk")


def organization_or_404(user, name: str, minimum: Access = Access.OPERATOR) -> Organization:
    """The organization called `name` if the user may see it (404 otherwise, so outsiders
    learn nothing); PermissionDenied when they may see it but not at the `minimum` level."""
    # (PostgreSQL refuses a NUL byte in a text parameter: no organization is named so.)
    org = None if "\x00" in name else Organization.objects.filter(name=name).first()
    if org is None or not can_view(user, org):
        raise Http404("No such organization.")
    if access(user, org) < minimum:
        raise PermissionDenied("Your role in this organization does not allow that.")
    return org
