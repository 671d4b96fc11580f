"""The directory browser of an organization whose directory is an LDAP server: its units and
entries read live from the server (the django-ldapdb models of directory.ldap.models, or of
directory.ad.models for Active Directory), each beside its mirror recipient, which keeps what
LDAP has no attribute for (the trust level).

Every LDAP failure becomes DirectoryUnavailable with the message a scan would record, so a page
can say that the server cannot be reached instead of failing.
"""

import uuid
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import Error as DatabaseError
from django.db.models import Count, Q

from directory.backends import DirectoryUnavailable, ldap_missing
from directory.constants import Kind
from directory.models import Container, LdapDirectory, Organization, Recipient

# What the browser shows of a mirror recipient next to its entry.
MIRROR_FIELDS = ("pk", "guid", "global_key", "origin_organization", "trust_level", "kind")


def _models():
    if ldap_missing():
        raise DirectoryUnavailable(ldap_missing())
    from directory.ldap import models

    return models


def _models_of(directory: LdapDirectory):
    """The entries' models of the directory's kind (OpenLDAP's classes, or Active Directory's)."""
    models = _models()
    if directory.organization.uses_ad:
        from directory.ad import models
    return models


def directory_of(organization: Organization) -> LdapDirectory:
    directory = LdapDirectory.objects.filter(organization=organization).first()
    if directory is None:
        raise DirectoryUnavailable(
            f"{organization.name} has no LDAP server settings yet: enter them on its "
            "Directory Service page."
        )
    directory.organization = organization
    return directory


@contextmanager
def reading(directory: LdapDirectory):
    """LDAP errors inside (raw from python-ldap, or wrapped by Django's database layer when
    ldapdb connects) become DirectoryUnavailable."""
    _models()
    import ldap

    from directory.ldap.connection import unavailable

    try:
        yield
    except ldap.LDAPError as exc:
        raise unavailable(directory, exc) from exc
    except DatabaseError as exc:
        cause = exc.__cause__
        if isinstance(cause, ldap.LDAPError):
            raise unavailable(directory, cause) from exc
        raise


def _depth(dn: str, base_dn: str) -> int:
    import ldap.dn

    return len(ldap.dn.str2dn(dn)) - len(ldap.dn.str2dn(base_dn))


def _tree_key(dn: str) -> tuple:
    """Sorts DNs as a tree: a unit right after its parent, siblings by name."""
    import ldap.dn

    return tuple(
        tuple((attr.lower(), value.lower()) for attr, value, _flags in rdn)
        for rdn in reversed(ldap.dn.str2dn(dn))
    )


@dataclass
class UnitRow:
    """An organizational unit (or the base entry) with its mirror container, if scanned yet."""

    dn: str
    name: str
    depth: int
    container: Container | None


def units(directory: LdapDirectory) -> list[UnitRow]:
    """The base entry and every organizational unit under it, as a tree, each with its mirror
    container (one LDAP search, one SQL query; in Active Directory, one more for the Users
    container, and without the OU where hidden contacts wait)."""
    models = _models_of(directory)
    with reading(directory):
        found = list(models.bound(models.Unit, directory).objects.all())
        if directory.organization.uses_ad:
            found = _ad_units(models, directory, found)
    containers = (
        Container.objects.filter(organization_id=directory.organization_id)
        .filter(ldap_uuid__isnull=False)
        .annotate(
            own=Count("recipients", filter=Q(recipients__global_key__isnull=True)),
            imported=Count(
                "recipients",
                filter=Q(recipients__global_key__isnull=False, recipients__hidden_at=None),
            ),
        )
        .order_by()
    )
    by_uuid = {container.ldap_uuid: container for container in containers}
    base = next((c for c in by_uuid.values() if c.parent_id is None), None)
    rows = [UnitRow(directory.base_dn, directory.base_dn, 0, base)]
    for unit in sorted(found, key=lambda unit: _tree_key(unit.dn)):
        container = by_uuid.get(_uuid(unit.entry_uuid))
        rows.append(UnitRow(unit.dn, unit.name, _depth(unit.dn, directory.base_dn), container))
    return rows


def _ad_units(models, directory: LdapDirectory, found: list) -> list:
    import ldap

    from directory.ad import schema

    hidden = _normalize_dn(schema.hidden_unit_dn(directory.base_dn))
    users = models.bound(
        models.AdContainer,
        directory,
        base=schema.users_container_dn(directory.base_dn),
        scope=ldap.SCOPE_BASE,
    )
    return [unit for unit in found if _normalize_dn(unit.dn) != hidden] + list(users.objects.all())


def _normalize_dn(dn: str) -> str:
    from directory.ldap.scan import normalize

    return normalize(dn)


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (TypeError, ValueError):
        return None


def unit_dn(directory: LdapDirectory, container: Container) -> str | None:
    """Where a mirror container's unit is now (found by its entryUUID, so a unit renamed since
    the last scan is still found); None when it is gone from LDAP."""
    if container.parent_id is None:
        return directory.base_dn
    models = _models_of(directory)
    with reading(directory):
        unit = (
            models.bound(models.Unit, directory)
            .objects.filter(entry_uuid=str(container.ldap_uuid))
            .first()
        )
        if unit is None and directory.organization.uses_ad:  # the Users container
            unit = (
                models.bound(models.AdContainer, directory)
                .objects.filter(entry_uuid=str(container.ldap_uuid))
                .first()
            )
    return unit.dn if unit else None


class Concatenated:
    """Querysets one after the other, as Paginator pages them: each is counted (a search that
    reads DNs only) and only the entries of the page are read whole."""

    def __init__(self, *querysets) -> None:
        self.querysets = querysets
        self._counts: list[int] | None = None

    def counts(self) -> list[int]:
        if self._counts is None:
            self._counts = [queryset.count() for queryset in self.querysets]
        return self._counts

    def count(self) -> int:
        return sum(self.counts())

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, item: slice) -> list:
        start, stop = item.start or 0, item.stop
        rows: list = []
        for queryset, size in zip(self.querysets, self.counts(), strict=True):
            if stop is not None and stop <= 0:
                break
            if start < size:
                end = size if stop is None else min(stop, size)
                rows += list(queryset[max(start, 0) : end])
            start, stop = start - size, None if stop is None else stop - size
        return rows


def unit_entries(directory: LdapDirectory, dn: str, query: str = "") -> Concatenated:
    """The people, then the groups, directly under the entry `dn`, matching `query` (part of a
    name, uid or mail; LDAP compares them ignoring case). Nothing is read until paged."""
    import ldap

    models = _models_of(directory)
    people = models.bound(models.Person, directory, base=dn, scope=ldap.SCOPE_ONELEVEL)
    groups = models.bound(models.Group, directory, base=dn, scope=ldap.SCOPE_ONELEVEL)
    people_qs, groups_qs = people.objects.all(), groups.objects.all()
    if query:
        people_fields = getattr(models, "PEOPLE_SEARCH", PEOPLE_SEARCH)
        group_fields = getattr(models, "GROUP_SEARCH", GROUP_SEARCH)
        people_qs = people_qs.filter(_any_contains(people_fields, query))
        groups_qs = groups_qs.filter(_any_contains(group_fields, query))
    return Concatenated(people_qs.order_by("cn"), groups_qs.order_by("name"))


# Where the search of a unit's entries looks (directory.ad.models has its own).
PEOPLE_SEARCH = ("cn", "display_name", "alias", "primary_smtp")
GROUP_SEARCH = ("name", "primary_smtp")


def _any_contains(fields: tuple[str, ...], query: str) -> Q:
    found = Q()
    for name in fields:
        found |= Q(**{f"{name}__contains": query})
    return found


@dataclass
class EntryRow:
    """An LDAP entry and its mirror recipient (None: not mirrored, see the scan problems)."""

    entry: object
    mirror: Recipient | None

    @property
    def kind_label(self) -> str:
        return Kind(self.entry.kind).label

    @property
    def name(self) -> str:
        return str(self.entry)


def with_mirror(organization: Organization, entries) -> list[EntryRow]:
    """Each entry with its mirror recipient: the one whose GUID is the entry's entryUUID, or for
    a contact written by the import, the one with its global key. One query for all."""
    guids = {_uuid(entry.entry_uuid) for entry in entries} - {None}
    keys = {entry.global_key for entry in entries if entry.is_ours and entry.global_key}
    mirrors = Recipient.objects.filter(organization=organization).filter(
        Q(guid__in=guids, global_key__isnull=True) | Q(global_key__in=keys)
    )
    by_guid, by_key = {}, {}
    for recipient in mirrors.only(*MIRROR_FIELDS):
        if recipient.global_key is None:
            by_guid[recipient.guid] = recipient
        else:
            by_key[recipient.global_key] = recipient
    rows = []
    for entry in entries:
        if entry.is_ours:
            mirror = by_key.get(entry.global_key)
        else:
            mirror = by_guid.get(_uuid(entry.entry_uuid))
        rows.append(EntryRow(entry, mirror))
    return rows


def entry_of(directory: LdapDirectory, recipient: Recipient):
    """The LDAP entry a mirror recipient stands for, read now; None if it is gone."""
    models = _models_of(directory)
    if recipient.is_imported:
        model, lookup = models.Person, {"global_key": recipient.global_key}
    elif recipient.kind == Kind.DISTRIBUTION_LIST:
        model, lookup = models.Group, {"entry_uuid": str(recipient.guid)}
    else:
        model, lookup = models.Person, {"entry_uuid": str(recipient.guid)}
    with reading(directory):
        return models.bound(model, directory).objects.filter(**lookup).first()


# Labels of the entry attributes that are not General attributes (those take the recipient's).
LABELS = {
    "cn": "common name",
    "name": "name",
    "target_address": "target address",
    "marker": "contact marker",
    "global_key": "global key",
    "members": "members",
    "description": "description",
    "entry_uuid": "entry UUID",
    "modified": "modified",
    "object_class": "object classes",
    "account": "account name",
    "proxy_addresses": "proxy addresses",
    "legacy_dn": "legacy Exchange DN",
    "account_control": "account control",
    "usn_changed": "USN changed",
    "category": "object category",
}
# Shown after the others: what tells LDAP administrators which entry it is, not what it says.
TECHNICAL = (
    "entry_uuid",
    "usn_changed",
    "modified",
    "account_control",
    "category",
    "object_class",
)


def _label(name: str) -> str:
    if name in LABELS:
        return LABELS[name]
    return str(Recipient._meta.get_field(name).verbose_name)


def _timestamp(value: str) -> str:
    """An LDAP GeneralizedTime (20240131120000Z) as 2024-01-31 12:00:00 UTC."""
    if len(value) >= 15 and value[:14].isdigit():
        v = value
        return f"{v[:4]}-{v[4:6]}-{v[6:8]} {v[8:10]}:{v[10:12]}:{v[12:14]} UTC"
    return value


def attributes(entry) -> list[tuple[str, str, list[str]]]:
    """(label, LDAP attribute, values) of each attribute an entry has, for its page."""
    rows, technical = [], []
    for field in entry._meta.fields:
        if field.name == "dn" or not field.db_column:
            continue
        value = getattr(entry, field.attname)
        values = [str(v) for v in value] if isinstance(value, list) else [str(value or "")]
        values = [v for v in values if v]
        if field.name == "modified":
            values = [_timestamp(v) for v in values]
        if values:
            row = (_label(field.name), field.db_column, values)
            (technical if field.name in TECHNICAL else rows).append(row)
    return rows + technical
