"""Read an LDAP directory's changes into the organization's mirror (before each export).

One scan, in one database transaction (all of it or none of it):
- the organizational units become containers, found again by entryUUID when renamed or moved;
- the entries changed since the last scan (modifyTimestamp) are read whole and written to the
  mirror with fresh local USNs when they differ from it;
- the list of the recipients present (entryUUID and DN only) finds the deletes, the entries
  that stopped being recipients, and those the scan could not take before.
The stable id of a recipient is its entryUUID: it is the mirror's object GUID.
"""

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import ldap
import ldap.dn
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.functions import Lower
from django.utils import timezone

from directory import changes
from directory.bulk import OneOf, update_objects
from directory.constants import GENERAL_ATTRIBUTES, Kind
from directory.ldap import schema
from directory.ldap.connection import connected, recording_failure, search
from directory.models import (
    Container,
    LdapDirectory,
    Recipient,
    Site,
    alias_validator,
    allocate_usns,
    rdn_validator,
    smtp_validator,
)
from transport.wire import sanitize_value

SITE_NAME = "LDAP"
# Entries committed a little after others that carry a later timestamp are still read.
OVERLAP = timedelta(seconds=2)
TIMESTAMP_FORMAT = "%Y%m%d%H%M%SZ"
MAX_PROBLEMS = 200
FETCH_CHUNK = 200
MIRROR_FIELDS = ["kind", "container_id", "target_address", *GENERAL_ATTRIBUTES]


@dataclass
class ScanResult:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    read: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return self.created + self.updated + self.deleted


def scan(organization_id: int) -> ScanResult:
    """Bring the mirror up to date with LDAP; DirectoryUnavailable if LDAP fails (no change)."""
    with recording_failure(organization_id), transaction.atomic():
        return _scan(organization_id)


def normalize(dn: str) -> str:
    """A DN in one spelling, to compare DNs (attribute names and values ignore case here)."""
    return ldap.dn.dn2str(ldap.dn.str2dn(dn)).lower()


def parent_of(dn: str) -> str:
    return ldap.dn.dn2str(ldap.dn.str2dn(dn)[1:]).lower()


def _scan(organization_id: int) -> ScanResult:
    directory = (
        LdapDirectory.objects.select_for_update()
        .select_related("organization")
        .get(organization_id=organization_id)
    )
    result = ScanResult()
    mirror = dict(
        mirrored(organization_id).values_list("guid", "pk"),
    )
    since = _since(directory.high_water)
    with connected(directory) as conn:
        base = list(
            search(conn, directory.base_dn, "(objectClass=*)", ["entryUUID"], ldap.SCOPE_BASE)
        )
        units = list(search(conn, directory.base_dn, schema.UNIT_FILTER, ["entryUUID", "ou"]))
        present = {
            uuid.UUID(attrs["entryUUID"][0]): dn
            for dn, attrs in search(conn, directory.base_dn, schema.RECIPIENT_FILTER, ["entryUUID"])
        }
        changed_filter = schema.RECIPIENT_FILTER
        if since:
            changed_filter = f"(&{changed_filter}(modifyTimestamp>={since}))"
        changed = list(search(conn, directory.base_dn, changed_filter, schema.READ_ATTRIBUTES))
        seen = {uuid.UUID(attrs["entryUUID"][0]) for _dn, attrs in changed}
        # Present, but neither in the mirror nor changed: left out by an earlier scan.
        missing = [guid for guid in present if guid not in mirror and guid not in seen]
        for start in range(0, len(missing), FETCH_CHUNK):
            chunk = missing[start : start + FETCH_CHUNK]
            any_of = "".join(f"(entryUUID={guid})" for guid in chunk)
            changed += search(
                conn,
                directory.base_dn,
                f"(&{schema.RECIPIENT_FILTER}(|{any_of}))",
                schema.READ_ATTRIBUTES,
            )
    result.read = len(changed)
    containers = sync_containers(
        directory,
        SITE_NAME,
        [(dn, uuid.UUID(attrs["entryUUID"][0])) for dn, attrs in [base[0], *units]],
    )
    removed = [pk for guid, pk in mirror.items() if guid not in present]
    if removed:
        result.deleted = changes.delete_recipients(Recipient.objects.filter(OneOf("pk", removed)))
    _apply(directory, changed, containers, result)
    forget_vanished_units(directory)
    stamps = [attrs["modifyTimestamp"][0] for _dn, attrs in changed if "modifyTimestamp" in attrs]
    if stamps:
        directory.high_water = max(directory.high_water, *stamps)
    directory.last_scan_at = timezone.now()
    directory.last_error = ""
    directory.scan_problems = result.problems[:MAX_PROBLEMS]
    directory.save(update_fields=["high_water", "last_scan_at", "last_error", "scan_problems"])
    return result


def mirrored(organization_id: int):
    """The organization's own recipients that mirror LDAP entries (not contacts, and not in a
    built-in container left from before the organization moved to LDAP)."""
    return Recipient.objects.filter(
        organization_id=organization_id,
        global_key__isnull=True,
        container__ldap_uuid__isnull=False,
    )


def _since(high_water: str) -> str:
    if not high_water:
        return ""
    stamp = datetime.strptime(high_water[:14] + "Z", TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    return (stamp - OVERLAP).strftime(TIMESTAMP_FORMAT)


def _container_name(rdn_value: str, taken: set[str], entry_uuid: uuid.UUID) -> str:
    name = "".join("-" if ch in "/=" or ord(ch) < 32 or ord(ch) == 127 else ch for ch in rdn_value)
    name = name.strip()[:64] or "unit"
    if name.lower() in taken:
        name = f"{name[:55]}-{entry_uuid.hex[:8]}"
    rdn_validator(name)
    return name


def sync_containers(
    directory, site_name: str, entries: list[tuple[str, uuid.UUID]]
) -> dict[str, int]:
    """Containers for the base entry (first of `entries`) and the units after it, (DN, stable
    id) each, in the site `site_name`; normalized DN -> container id."""
    organization = directory.organization
    site, _ = Site.objects.get_or_create(organization=organization, name=site_name)
    mirrored = Container.objects.filter(site=site, ldap_uuid__isnull=False)
    existing = {container.ldap_uuid: container for container in mirrored}
    by_dn: dict[str, Container] = {}
    base, units = entries[0], entries[1:]
    entries = [base] + sorted(units, key=lambda unit: len(ldap.dn.str2dn(unit[0])))
    siblings: dict[int | None, set[str]] = {}
    for index, (dn, entry_uuid) in enumerate(entries):
        parent = None
        if index:
            parent_dn = parent_of(dn)
            while parent_dn and parent_dn not in by_dn:
                parent_dn = parent_of(parent_dn)
            parent = by_dn.get(parent_dn)
        rdn_value = ldap.dn.str2dn(dn)[0][0][1]
        taken = siblings.setdefault(parent.pk if parent else None, set())
        name = _container_name(rdn_value, taken, entry_uuid)
        taken.add(name.lower())
        container = existing.get(entry_uuid) or Container(site=site, ldap_uuid=entry_uuid)
        if (
            container.pk is None
            or container.name != name
            or container.parent_id != (parent.pk if parent else None)
            or container.ldap_dn != dn
        ):
            container.name, container.parent, container.ldap_dn = name, parent, dn
            if container.pk is None:
                container.save()
            else:
                # Renamed or moved in LDAP: the DNs of the units inside follow, and the next
                # export finds the recipients this takes into or out of its scope.
                changes.move_container(container)
        by_dn[normalize(dn)] = container
    vanished = set(existing) - {c.ldap_uuid for c in by_dn.values()}
    Container.objects.filter(site=site, ldap_uuid__in=vanished).update(ldap_dn="")
    return {dn: container.pk for dn, container in by_dn.items()}


def forget_vanished_units(directory) -> None:
    """Containers of organizational units gone from LDAP, once nothing is left in them."""
    gone = Container.objects.filter(
        organization=directory.organization, ldap_uuid__isnull=False, ldap_dn=""
    ).filter(recipients__isnull=True, children__isnull=True)
    for container in gone:
        container.delete()


def _row_from_entry(dn: str, attrs: dict, containers: dict[str, int]) -> dict:
    """The mirror's values for an entry; ValueError says why it cannot be a recipient."""
    classes = {value.lower() for value in attrs.get("objectClass", [])}
    kind = schema.kind_of(classes, attrs)
    target = ""
    if kind == Kind.CUSTOM_RECIPIENT:
        target = attrs[schema.TARGET_ATTRIBUTE][0]
    parent = parent_of(dn)
    while parent and parent not in containers:
        parent = parent_of(parent)
    row = mirror_row(schema.general_from_entry(attrs, kind), kind, target, schema.TARGET_ATTRIBUTE)
    return {**row, "container_id": containers[parent]}


def mirror_row(values: dict[str, str], kind: str, target: str, target_name: str) -> dict:
    """The mirror's values (without the container) for an entry's General values, made safe;
    ValueError says why it cannot be a recipient."""
    values = {name: sanitize_value(name, value).strip() for name, value in values.items()}
    if not values["alias"]:
        raise ValueError("it has no name or mail to make an alias of")
    try:
        alias_validator(values["alias"])
    except ValidationError:
        values["alias"] = "".join(
            "_" if ch.isspace() or ch in "/=" else ch for ch in values["alias"]
        )
    try:
        smtp_validator(values["primary_smtp"])
    except ValidationError:
        raise ValueError(f"its mail {values['primary_smtp']!r} is not an SMTP address") from None
    if kind == Kind.CUSTOM_RECIPIENT:
        target = sanitize_value("primary_smtp", target).strip()
        try:
            smtp_validator(target)
        except ValidationError:
            raise ValueError(f"its {target_name} {target!r} is not valid") from None
    return {**values, "kind": kind, "target_address": target}


def _apply(directory, changed, containers, result: ScanResult) -> None:
    rows: dict[uuid.UUID, dict] = {}
    for dn, attrs in changed:
        try:
            rows[uuid.UUID(attrs["entryUUID"][0])] = _row_from_entry(dn, attrs, containers)
        except (ValueError, KeyError) as exc:
            result.problems.append(f"{dn}: left out, {exc}")
    apply_rows(directory.organization_id, rows, result)


def apply_rows(
    organization_id: int, rows: dict[uuid.UUID, dict], result: ScanResult, fields=MIRROR_FIELDS
) -> dict[uuid.UUID, dict]:
    """Write the mirror's `fields` of these rows (by stable id) where they differ from it, with
    fresh local USNs; those whose address or alias another recipient holds are left out (a
    problem each). Return the rows kept."""
    if not rows:
        return {}
    current = {
        row["guid"]: row
        for row in Recipient.objects.filter(OneOf("guid", rows), organization_id=organization_id)
        .order_by()
        .values(
            "pk",
            "guid",
            "global_key",
            "usn",
            "trust_level",
            "hidden_from_others",
            *dict.fromkeys(["master_usn", *fields]),
        )
    }
    changed = {guid: row for guid, row in rows.items() if _differs(row, current.get(guid), fields)}
    kept = {guid: row for guid, row in rows.items() if guid not in changed}
    rows = _unique(organization_id, changed, current, result)
    kept.update(rows)
    if not rows:
        return kept
    first = allocate_usns(organization_id, len(rows))
    now = timezone.now()
    create, update = [], []
    delta = changes.CellDelta(organization_id)
    for offset, (guid, row) in enumerate(rows.items()):
        values = [row[name] for name in fields]
        existing = current.get(guid)
        if existing is None:
            create.append((organization_id, guid, first + offset, now, *values))
            continue
        delta.remove(existing)
        delta.add({**existing, **row, "usn": first + offset})
        recipient = Recipient(pk=existing["pk"], usn=first + offset, changed_at=now, **row)
        update.append(recipient)
    with changes.writing():
        update_objects(Recipient, update, [*fields, "usn", "changed_at"])
    delta.save()
    columns = ["organization_id", "guid", "usn", "changed_at", *fields]
    changes.insert_recipients(organization_id, columns, create)
    result.created += len(create)
    result.updated += len(update)
    return kept


def _differs(row: dict, current: dict | None, fields) -> bool:
    return current is None or any(row[name] != current[name] for name in fields)


def _unique(organization_id, rows, current, result) -> dict:
    """Leave out entries whose address or alias another recipient of the organization holds."""
    smtps = {row["primary_smtp"].lower() for row in rows.values()}
    aliases = {row["alias"].lower() for row in rows.values()}
    others = Recipient.objects.filter(organization_id=organization_id).exclude(OneOf("guid", rows))
    held_smtp = set(
        others.annotate(value=Lower("primary_smtp"))
        .filter(OneOf("value", smtps))
        .values_list("value", flat=True)
    )
    held_alias = set(
        others.annotate(value=Lower("alias"))
        .filter(OneOf("value", aliases))
        .values_list("value", flat=True)
    )
    kept = {}
    for guid, row in sorted(rows.items(), key=lambda item: (item[0] not in current, str(item[0]))):
        smtp, alias = row["primary_smtp"].lower(), row["alias"].lower()
        if smtp in held_smtp:
            result.problems.append(
                f"{row['display_name']} ({guid}): left out, another recipient has {smtp}"
            )
            continue
        if alias in held_alias:
            result.problems.append(
                f"{row['display_name']} ({guid}): left out, another recipient has alias {alias}"
            )
            continue
        held_smtp.add(smtp)
        held_alias.add(alias)
        kept[guid] = row
    return kept
