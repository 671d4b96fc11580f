"""Setting an installation up: organizations, sites and containers added, renamed, moved and
deleted. The console, the API and the admin all call these functions, so each path checks the
same things and gives the same messages; renames and moves go through directory.changes, which
rewrites the DNs of everything inside.

Each function validates everything first and writes in one transaction: a refused request
leaves nothing half-made.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from directory import changes
from directory.constants import Role
from directory.models import Container, Organization, Site

DEFAULT_SITE = "Site1"
DEFAULT_CONTAINERS = ("Recipients", "InterOrg Contacts")


class InUse(ValidationError):
    """A site or container that still holds something: deleting it would lose that."""


def _save(instance, *, exclude: Sequence[str] = ()) -> None:
    """Validate (fields, clean(), constraints) and save; a race on a unique index that the
    validation could not see still ends as a ValidationError, not a server error."""
    instance.full_clean(exclude=list(exclude))
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError:
        raise ValidationError({"name": "That name is already taken here."}) from None


# Sites ----------------------------------------------------------------------------------------


def create_site(organization: Organization, name: str) -> Site:
    site = Site(organization=organization, name=name)
    _save(site)
    return site


def rename_site(site: Site, name: str) -> Site:
    """Rename a site; its containers' DNs follow (directory.changes.rename_site)."""
    candidate = Site(pk=site.pk, organization=site.organization, name=name)
    candidate._state.adding = False  # (its own row is no clash)
    candidate.full_clean()
    return changes.rename_site(site, name)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' if number != 1 else ''}"


def site_in_use(site: Site) -> str | None:
    """Why the site cannot be deleted (its containers would go with it), or None."""
    held = site.containers.count()
    if held:
        return f"{site.dn} still holds {_count(held, 'container')}: move or delete them first."
    return None


def delete_site(site: Site) -> None:
    """Delete an empty site; one that still holds containers is refused with what it holds."""
    if problem := site_in_use(site):
        raise InUse(problem)
    site.delete()


# Containers -----------------------------------------------------------------------------------


def create_container(site: Site, name: str, parent: Container | None = None) -> Container:
    container = Container(site=site, parent=parent, name=name, organization=site.organization)
    _save(container)
    return container


def move_container(container: Container, **moves) -> Container:
    """Rename a container or move it (another parent, another site of its organization): what
    lies inside follows, its site too (directory.changes.move_container)."""
    return changes.move_container(container, **moves)


def container_in_use(container: Container) -> str | None:
    """Why the container cannot be deleted (what it holds), or None."""
    recipients = container.recipients.count()
    inside = container.children.count()
    if not (recipients or inside):
        return None
    held = [
        _count(number, noun)
        for number, noun in ((recipients, "recipient"), (inside, "container"))
        if number
    ]
    return (
        f"{container.dn} holds {' and '.join(held)}: move them to another container "
        "(or delete them) first."
    )


def delete_container(container: Container) -> None:
    """Delete an empty container. One holding recipients or containers is refused, saying what
    it holds; so is the container a requestor imports into."""
    if problem := container_in_use(container):
        raise InUse(problem)
    try:
        container.delete()
    except ProtectedError:
        raise InUse(
            f"{container.dn} is the container a requestor imports into: choose another on the "
            "Import Config page first."
        ) from None


# Organizations --------------------------------------------------------------------------------


@dataclass
class Agent:
    service: str  # "master" or "requestor"
    address: str


@dataclass
class Pairing:
    """What the other installation's administrator needs to trust this organization: where its
    agents receive mail, and the fingerprint of the key its messages are signed with."""

    organization: Organization
    agents: list[Agent] = field(default_factory=list)
    public_key: str = ""
    fingerprint: str = ""


def pairing(organization: Organization) -> Pairing:
    """The organization's agent addresses and active signing key (made on first use)."""
    from master.models import MasterConfig
    from requestor.models import RequestorConfig
    from transport import signing

    agents = []
    master = MasterConfig.objects.filter(organization=organization).first()
    if master is not None:
        agents.append(Agent("master", master.address))
    requestor = RequestorConfig.objects.filter(organization=organization).first()
    if requestor is not None:
        agents.append(Agent("requestor", requestor.address))
    key = signing.active_key(organization.pk)
    return Pairing(organization, agents, key.public_key, key.fingerprint)


def _names(containers: str | Iterable[str]) -> list[str]:
    """Container names, one per line (or one per item of a list)."""
    if isinstance(containers, str):
        containers = [containers]
    return [name.strip() for item in containers for name in item.splitlines() if name.strip()]


# Where each model's field errors are reported in the setup's own terms.
_SITE_FIELDS = {"name": "site"}
_CONTAINER_FIELDS = {"name": "containers", "__all__": "containers"}
_REQUESTOR_FIELDS = {
    "address": "requestor_address",
    "dn": "requestor_dn",
    "master_address": "master_address",
    "master_public_key": "master_public_key",
    "__all__": "requestor_address",
}
_MASTER_FIELDS = {"address": "master_agent_address", "dn": "master_dn", "__all__": "master_dn"}


def _renamed(exc: ValidationError, names: dict[str, str]) -> ValidationError:
    if not hasattr(exc, "error_dict"):
        return ValidationError({names.get("__all__", "__all__"): exc.messages})
    return ValidationError(
        {names.get(key, key): messages for key, messages in exc.message_dict.items()}
    )


def _checked(instance, names: dict[str, str], exclude: Sequence[str] = ()) -> None:
    try:
        _save(instance, exclude=exclude)
    except ValidationError as exc:
        raise _renamed(exc, names) from None


def create_organization(
    *,
    name: str,
    mail_domain: str,
    display_name: str = "",
    role: str = Role.REQUESTOR,
    site: str = DEFAULT_SITE,
    containers: str | Iterable[str] = DEFAULT_CONTAINERS,
    requestor_address: str = "",
    requestor_dn: str = "",
    master_address: str = "",
    master_public_key: str = "",
    import_container: str = "",
    master_agent_address: str = "",
    master_dn: str = "",
) -> Pairing:
    """A new organization with its site, containers, sync services and signing key.

    A requestor gets its agent's SMTP address and its master's address (an SMTP address, or the
    DN of a master in this installation, in which case the requestor gets a DN too); it imports
    into `import_container` (by default the last container listed, when there are several). A
    master gets its agent's SMTP address and a DN under the first container. All or nothing:
    the first problem found is raised as a ValidationError naming the setup's field.
    """
    from master.models import MasterConfig
    from requestor.models import RequestorConfig
    from transport.constants import AddressType, address_type_of

    names = _names(containers)
    errors = {}
    if not names:
        errors["containers"] = ["Name at least one container."]
    elif len({n.lower() for n in names}) != len(names):
        errors["containers"] = ["Each container needs its own name."]
    runs_requestor = role in (Role.REQUESTOR, Role.BOTH)
    runs_master = role in (Role.MASTER, Role.BOTH)
    if runs_requestor and not requestor_address:
        errors["requestor_address"] = ["A requestor needs its agent's SMTP address."]
    if runs_requestor and not master_address:
        errors["master_address"] = ["A requestor needs its master's address."]
    if runs_master and not master_agent_address:
        errors["master_agent_address"] = ["A master needs its agent's SMTP address."]
    if import_container and import_container.lower() not in {n.lower() for n in names}:
        errors["import_container"] = ["Choose one of the containers listed above."]
    if errors:
        raise ValidationError(errors)

    with transaction.atomic():
        organization = Organization(
            name=name, display_name=display_name or name, role=role, mail_domain=mail_domain
        )
        _checked(organization, {})
        site_row = Site(organization=organization, name=site)
        _checked(site_row, _SITE_FIELDS)
        made = {}
        for container_name in names:
            container = Container(site=site_row, organization=organization, name=container_name)
            _checked(container, _CONTAINER_FIELDS)
            made[container_name.lower()] = container
        first = made[names[0].lower()]
        if runs_master:
            master = MasterConfig(
                organization=organization,
                address=master_agent_address,
                dn=master_dn or f"{first.dn}/cn=MASTER",
            )
            _checked(master, _MASTER_FIELDS)
        if runs_requestor:
            chosen = import_container or (names[-1] if len(names) > 1 else "")
            by_dn = address_type_of(master_address) == AddressType.EX
            requestor = RequestorConfig(
                organization=organization,
                address=requestor_address,
                dn=requestor_dn or (f"{first.dn}/cn=REQUESTOR" if by_dn else ""),
                master_address=master_address,
                master_public_key=master_public_key,
                import_container=made.get(chosen.lower()),
            )
            _checked(requestor, _REQUESTOR_FIELDS)
        return pairing(organization)
