"""Read Active Directory's changes into the organization's mirror, by the domain controller's
own update sequence numbers (before each export).

Every write to a DC's database takes the next USN of that DC and stamps the object with it
(uSNChanged), deletes included: a deleted object moves to the Deleted Objects container with a
new uSNChanged, where the Show Deleted control finds it. So one scan asks only for what changed
after the watermark (the DC's highestCommittedUSN when the last scan began):
- the people, groups and contacts of the domain with a higher uSNChanged, read whole (mail or
  not: one that stopped being a recipient, or left the units read, leaves the mirror); a rename
  or a move to another OU changes uSNChanged too, and the object is found again by its
  objectGUID, the mirror's GUID;
- the deleted ones with a higher uSNChanged (Show Deleted), by objectGUID;
- the objects the last scan reported a problem with (an address another recipient held, ...).
Its cost grows with the changes, not with the directory.

USNs are the DC's own: they mean nothing on another DC, nor on the same DC restored from a
backup, which gets a new invocationId (its NTDS Settings object's), nor on a copy of its
database put back as it was, whose highestCommittedUSN goes back below the watermark (or, once
written to past it, whose last object read, the probe, has gone back or is gone). Then,
as on the first scan, when the rules of what is read changed, or when an OU that existed
before became a container of the organization, the scan makes one full comparison: every
recipient read and compared with the mirror, which loses what AD no longer has. The reason is
recorded (full_scan_reason, last_full_scan_at).

Deletes come from the deleted objects only if the bind account can see them: AD shows
tombstones only to accounts with List contents on `CN=Deleted Objects`, and to others the
deletes would simply never appear. So the first scan, each full comparison, and every hour
while it fails, checks it: it deletes an object of its own (a probe, in the import OU) and looks
for its tombstone. Where the account cannot see it, each scan also lists the objectGUIDs of
every recipient to find the deletes (slower as the domain grows, never wrong), and the Directory
page says why and what to grant.

The OUs become containers, found again by objectGUID when renamed or moved: those listed in
unit_dns and the OUs beneath them, or else every OU under the base DN and the Users container.
One scan is one database transaction: all of it or none of it.
"""

import uuid
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta

import ldap
import ldap.dn
from django.db import transaction
from django.utils import timezone
from ldap.controls import LDAPControl

from directory import changes
from directory.ad import schema
from directory.bulk import OneOf
from directory.constants import DeletesRead, DisabledAccounts, HiddenEntries, Kind
from directory.ldap import scan as ldap_scan
from directory.ldap.connection import connected, describe, recording_failure, search
from directory.ldap.scan import normalize, parent_of
from directory.models import Container, LdapDirectory
from requestor.models import RequestorConfig

SITE_NAME = "Active Directory"
SHOW_DELETED = "1.2.840.113556.1.4.417"
SHOW_DELETED_CONTROLS = (LDAPControl(SHOW_DELETED, True, None),)
MIRROR_FIELDS = [*ldap_scan.MIRROR_FIELDS, "hidden_from_others"]
FETCH_CHUNK = 200
# How often a bind account that could not see deleted objects is checked again.
DELETES_RECHECK = timedelta(hours=1)
PROBE_MARKER = "InterOrg Sync deletion probe"
PROBE_PLACES = 3  # units tried besides the import OU
BINARY = tuple(name.lower() for name in schema.BINARY_ATTRIBUTES)
# Read in every scan, whatever the schema: AD leaves out attributes it does not know.
READ_ATTRIBUTES = [*schema.READ_ATTRIBUTES, *schema.EXCHANGE_ATTRIBUTES]
# A full comparison reads every object that is, or looks meant to be, a recipient.
FULL_FILTER = (
    f"(&{schema.CANDIDATE_FILTER}(!(objectClass=computer))"
    f"(|(mail=*)(objectClass=contact)({schema.PROXY_ATTRIBUTE}=*)))"
)


@dataclass
class ScanResult(ldap_scan.ScanResult):
    full: bool = False
    reason: str = ""


@dataclass
class Controller:
    """What the rootDSE and the NTDS Settings object say of the DC that answers."""

    highest_usn: int
    service_name: str
    invocation_id: str
    host: str
    naming_context: str


def scan(organization_id: int) -> ScanResult:
    """Bring the mirror up to date with AD; DirectoryUnavailable if AD fails (no change)."""
    with recording_failure(organization_id), transaction.atomic():
        return _scan(organization_id)


def rules(directory: LdapDirectory) -> str:
    """What decides which objects are read, as one text: when it changes, a full comparison
    finds the objects it takes in or leaves out (and checks again how deletes are found)."""
    units = sorted(normalize(dn) for dn in _unit_dns(directory))
    # Another bind account may see other objects, and deleted objects or not.
    return (
        f"bind={directory.bind_dn.strip().lower()};"
        f"units={'|'.join(units)};disabled={directory.disabled_accounts};"
        f"hidden={directory.hidden_entries};address_book_only={directory.address_book_only}"
    )


def _scan(organization_id: int) -> ScanResult:
    directory = (
        LdapDirectory.objects.select_for_update()
        .select_related("organization")
        .get(organization_id=organization_id)
    )
    result = ScanResult()
    known = set(
        Container.objects.filter(organization_id=organization_id, ldap_uuid__isnull=False)
        .exclude(ldap_dn="")
        .values_list("ldap_uuid", flat=True)
    )
    with connected(directory) as conn:
        dc = _controller(conn)
        base, units, missing = _units(conn, directory)
        reason = (
            _full_scan_reason(directory, dc)
            or _new_units_reason(directory, units, known)
            or _probe_reason(conn, directory, dc)
        )
        result.full, result.reason = bool(reason), reason
        if _check_deletes(conn, directory, dc, result.full, [dn for dn, _g, _u in units]):
            # The probe's own USNs are not changes to read: the searches below, made after
            # it, read every change of others up to now and later anyway.
            dc.highest_usn = _highest_usn(conn)
        present = None
        if result.full:
            entries = list(
                search(conn, directory.base_dn, FULL_FILTER, READ_ATTRIBUTES, binary=BINARY)
            )
            deleted = []
        else:
            entries, deleted = _changes_since(conn, directory, dc)
            if directory.deletes_read == DeletesRead.LISTING:
                present = {
                    _guid(attrs)
                    for _dn, attrs in search(
                        conn, directory.base_dn, FULL_FILTER, ["objectGUID"], binary=BINARY
                    )
                }
    result.problems += [f"{dn}: left out, no such unit (nothing in it is read)" for dn in missing]
    if directory.deletes_read == DeletesRead.LISTING:
        result.problems.append(
            f"Deletes are found by listing every recipient at each scan: {directory.deletes_note}"
        )
    result.read = len(entries)
    containers = ldap_scan.sync_containers(
        directory, SITE_NAME, [base, *[(dn, guid) for dn, guid, _usn in units]]
    )
    # The base entry is a container only to hold the others: nothing directly in it is read.
    containers.pop(normalize(directory.base_dn), None)
    rows, gone, troubled, reported = _take(directory, entries, containers, result)
    mirrored = ldap_scan.mirrored(organization_id)
    if result.full:
        keep = {*rows, *troubled}
        removed = mirrored.exclude(OneOf("guid", keep)) if keep else mirrored
    else:
        removed = mirrored.filter(OneOf("guid", {*gone, *(_guid(a) for _dn, a in deleted)}))
        if present is not None:  # the deletes the account cannot see as such
            removed = removed | (mirrored.exclude(OneOf("guid", present)) if present else mirrored)
    # And the recipients of units gone from the scope (moved out of it, or no longer listed).
    removed = removed | mirrored.filter(container__ldap_dn="")
    result.deleted = changes.delete_recipients(removed)
    kept = ldap_scan.apply_rows(organization_id, rows, result, fields=MIRROR_FIELDS)
    ldap_scan.forget_vanished_units(directory)
    retry = troubled | reported | {guid for guid in rows if guid not in kept}
    directory.usn_probe = _probe(directory, [*entries, *deleted], dc, result.full)
    _record(directory, dc, result, retry=sorted(str(guid) for guid in retry))
    return result


def _controller(conn) -> Controller:
    [(_dn, root)] = conn.search_s(
        "",
        ldap.SCOPE_BASE,
        "(objectClass=*)",
        ["highestCommittedUSN", "dsServiceName", "dnsHostName", "defaultNamingContext"],
    )
    service = root["dsServiceName"][0].decode()
    [(_dn, ntds)] = conn.search_s(service, ldap.SCOPE_BASE, "(objectClass=*)", ["invocationId"])
    return Controller(
        highest_usn=int(root["highestCommittedUSN"][0]),
        service_name=service,
        invocation_id=str(uuid.UUID(bytes_le=ntds["invocationId"][0])),
        host=root.get("dnsHostName", [b""])[0].decode(),
        naming_context=root["defaultNamingContext"][0].decode(),
    )


def _deleted_objects(dc: Controller) -> str:
    return f"CN=Deleted Objects,{dc.naming_context}"


def _check_deletes(
    conn, directory: LdapDirectory, dc: Controller, full: bool, units: list[str]
) -> None:
    """Whether the bind account sees deleted objects (directory.deletes_read): checked on the
    first scan, on each full comparison and, while it cannot, every DELETES_RECHECK. True if
    it was checked (with a probe written and deleted)."""
    now = timezone.now()
    due = (
        full
        or directory.deletes_read == DeletesRead.UNKNOWN
        or (
            directory.deletes_read == DeletesRead.LISTING
            and (
                directory.deletes_checked_at is None
                or now - directory.deletes_checked_at >= DELETES_RECHECK
            )
        )
    )
    if not due:
        return False
    why = _why_tombstones_are_not_seen(conn, directory, dc, units)
    directory.deletes_read = DeletesRead.LISTING if why else DeletesRead.TOMBSTONES
    directory.deletes_note, directory.deletes_checked_at = why, now
    return True


def _highest_usn(conn) -> int:
    [(_dn, root)] = conn.search_s("", ldap.SCOPE_BASE, "(objectClass=*)", ["highestCommittedUSN"])
    return int(root["highestCommittedUSN"][0])


def _why_tombstones_are_not_seen(
    conn, directory: LdapDirectory, dc: Controller, units: list[str]
) -> str:
    """Delete a probe object of our own and look for its tombstone: "" when it is seen, else
    why it is not. The probe goes where the account writes the imported contacts, or else in
    the first unit read where it may create a contact."""
    import ldap.modlist

    grant = (
        f"grant {directory.bind_dn} List contents and Read property on {_deleted_objects(dc)} "
        "(docs/ad.md, Permissions) to make scans read only the changes"
    )
    imports = (
        RequestorConfig.objects.filter(organization_id=directory.organization_id)
        .values_list("import_container__ldap_dn", flat=True)
        .first()
    )
    places = list(dict.fromkeys(dn for dn in [imports, *units[:PROBE_PLACES]] if dn))
    refused = []
    for place in places:
        name = f"{PROBE_MARKER} {uuid.uuid4().hex[:12]}"
        dn = f"CN={ldap.dn.escape_dn_chars(name)},{place}"
        entry = {
            "objectClass": [b"top", b"contact"],
            schema.MARKER_ATTRIBUTE: [PROBE_MARKER.encode()],
        }
        try:
            conn.add_s(dn, ldap.modlist.addModlist(entry))
        except (ldap.SERVER_DOWN, ldap.TIMEOUT, ldap.CONNECT_ERROR):
            raise
        except ldap.LDAPError as exc:
            refused.append(f"{place}: {describe(exc)}")
            continue
        [(_dn, attrs)] = conn.search_s(dn, ldap.SCOPE_BASE, attrlist=["objectGUID"])
        guid = uuid.UUID(bytes_le=attrs["objectGUID"][0])
        conn.delete_s(dn)
        seen = list(
            search(
                conn,
                _deleted_objects(dc),
                f"(&(isDeleted=TRUE){_guid_filter([guid])})",
                ["1.1"],
                ldap.SCOPE_ONELEVEL,
                controls=SHOW_DELETED_CONTROLS,
            )
        )
        if seen:
            return ""
        return f"{directory.bind_dn} does not see deleted objects; {grant}"
    if not refused:
        return f"there is no unit in which to check it; {grant}"
    return (
        f"it could not be checked: the account may create no object to delete "
        f"({'; '.join(refused)}); {grant}"
    )


def _unit_dns(directory: LdapDirectory) -> list[str]:
    return [line.strip() for line in directory.unit_dns.splitlines() if line.strip()]


def _units(conn, directory: LdapDirectory):
    """The base entry (DN, objectGUID); the units that are containers (DN, objectGUID,
    uSNCreated) each; the listed units not found."""
    attrs = ["objectGUID", "uSNCreated"]

    def read(dn: str, filterstr: str, scope=ldap.SCOPE_SUBTREE):
        return [
            (found_dn, uuid.UUID(bytes_le=found["objectGUID"][0]), int(found["uSNCreated"][0]))
            for found_dn, found in search(conn, dn, filterstr, attrs, scope, binary=BINARY)
        ]

    [(base_dn, base_guid, _usn)] = read(directory.base_dn, "(objectClass=*)", ldap.SCOPE_BASE)
    found, missing = [], []
    listed = _unit_dns(directory)
    for dn in listed:
        try:
            found += read(dn, "(objectClass=*)", ldap.SCOPE_BASE)
            found += read(dn, schema.UNIT_FILTER)
        except ldap.NO_SUCH_OBJECT:
            missing.append(dn)
    if not listed:
        found += read(directory.base_dn, schema.UNIT_FILTER)
        users = schema.users_container_dn(directory.base_dn)
        with suppress(ldap.NO_SUCH_OBJECT):  # a base DN below the domain's has none
            found += read(users, "(objectClass=*)", ldap.SCOPE_BASE)
    units = {normalize(dn): (dn, guid, usn) for dn, guid, usn in found}
    units.pop(normalize(base_dn), None)
    return (base_dn, base_guid), list(units.values()), missing


def _full_scan_reason(directory: LdapDirectory, dc: Controller) -> str:
    if not directory.dc_service_name or not directory.invocation_id:
        return "the first scan of this directory"
    if normalize(dc.service_name) != normalize(directory.dc_service_name):
        return (
            f"another domain controller answers ({dc.host or dc.service_name}); the watermark "
            f"was {directory.dc_host or directory.dc_service_name}'s"
        )
    if dc.invocation_id != directory.invocation_id:
        return (
            f"domain controller {dc.host} was restored from a backup: its invocationId "
            f"{directory.invocation_id} is now {dc.invocation_id}"
        )
    if dc.highest_usn < directory.usn_watermark:
        return (
            f"domain controller {dc.host}'s highest USN {dc.highest_usn} is below the "
            f"watermark {directory.usn_watermark}: a copy of its database was put back"
        )
    if rules(directory) != directory.scanned_with:
        return "the units read or the rules for disabled and hidden recipients changed"
    return ""


def _new_units_reason(directory: LdapDirectory, units, known: set[uuid.UUID]) -> str:
    """A unit made before the watermark that is a container only now (moved into the scope)
    holds objects that did not change since: only a full comparison finds them."""
    moved_in = [
        dn for dn, guid, usn in units if guid not in known and usn <= directory.usn_watermark
    ]
    if not moved_in:
        return ""
    return f"units came into the scope: {'; '.join(moved_in[:5])}"


def _probe_reason(conn, directory: LdapDirectory, dc: Controller) -> str:
    """A copy of the DC's database put back as it was, then written to past the watermark,
    has USNs that no longer look lower: the object the last scan read last does, or is gone."""
    if not directory.usn_probe:
        return ""
    guid, _, usn = directory.usn_probe.partition(":")
    any_of = _guid_filter([uuid.UUID(guid)])
    found = [
        *search(conn, dc.naming_context, any_of, ["uSNChanged"]),
        *search(
            conn,
            _deleted_objects(dc),
            f"(&(isDeleted=TRUE){any_of})",
            ["uSNChanged"],
            ldap.SCOPE_ONELEVEL,
            controls=SHOW_DELETED_CONTROLS,
        ),
    ]
    now = max((int(attrs["uSNChanged"][0]) for _dn, attrs in found), default=None)
    if now is not None and now >= int(usn):
        return ""
    if now is None and directory.deletes_read == DeletesRead.LISTING:
        return (
            f"object {guid}, read last by the last scan, is gone, and the bind account cannot "
            "see deleted objects to tell a delete from a database put back"
        )
    return (
        f"domain controller {dc.host}'s database went back: object {guid}, changed at USN "
        f"{usn}, is {'now at ' + str(now) if now is not None else 'gone'} (a copy of its "
        "database was put back)"
    )


def _probe(directory: LdapDirectory, entries, dc: Controller, full: bool) -> str:
    """The probe for the next scan: the object read (or found deleted) with the highest
    uSNChanged up to the watermark, or the last probe if there is none."""
    stamps = [
        (int(attrs["uSNChanged"][0]), _guid(attrs))
        for _dn, attrs in entries
        if int(attrs["uSNChanged"][0]) <= dc.highest_usn
    ]
    if not stamps:  # (after a full comparison, the old probe may be another DC's)
        return "" if full else directory.usn_probe
    usn, guid = max(stamps)
    return f"{guid}:{usn}"


def _guid_filter(guids) -> str:
    return "".join(
        "(objectGUID=" + "".join(f"\\{byte:02x}" for byte in guid.bytes_le) + ")" for guid in guids
    )


def _changes_since(conn, directory: LdapDirectory, dc: Controller):
    """The objects changed after the watermark and those the last scan reported a problem
    with; those deleted after the watermark (objectGUID and uSNChanged)."""
    after = directory.usn_watermark + 1
    # The whole domain: an object moved out of a base DN below it changed too, and must leave.
    domain = dc.naming_context
    if not normalize(directory.base_dn).endswith(normalize(domain)):
        domain = directory.base_dn
    entries = list(
        search(
            conn,
            domain,
            f"(&{schema.CANDIDATE_FILTER}(uSNChanged>={after}))",
            READ_ATTRIBUTES,
            binary=BINARY,
        )
    )
    seen = {_guid(attrs) for _dn, attrs in entries}
    retry = [uuid.UUID(guid) for guid in directory.retry_guids if uuid.UUID(guid) not in seen]
    for start in range(0, len(retry), FETCH_CHUNK):
        any_of = _guid_filter(retry[start : start + FETCH_CHUNK])
        entries += search(
            conn,
            domain,
            f"(&{schema.CANDIDATE_FILTER}(|{any_of}))",
            READ_ATTRIBUTES,
            binary=BINARY,
        )
    deleted = list(
        search(
            conn,
            _deleted_objects(dc),
            f"(&(isDeleted=TRUE){schema.CANDIDATE_FILTER}(uSNChanged>={after}))",
            ["objectGUID", "uSNChanged"],
            ldap.SCOPE_ONELEVEL,
            binary=BINARY,
            controls=SHOW_DELETED_CONTROLS,
        )
    )
    return entries, deleted


def _guid(attrs: dict) -> uuid.UUID:
    return uuid.UUID(bytes_le=attrs["objectGUID"][0])


def _take(directory: LdapDirectory, entries, containers: dict[str, int], result: ScanResult):
    """The mirror rows of the recipients among `entries` (by objectGUID); the objectGUIDs of
    those that are not recipients (the mirror loses them); those left as the mirror has them,
    for a problem reported in `result`; those with a problem reported (read again by the next
    scan, so that the problems listed are always the current ones)."""
    rows: dict[uuid.UUID, dict] = {}
    gone: set[uuid.UUID] = set()
    troubled: set[uuid.UUID] = set()
    reported: set[uuid.UUID] = set()
    for dn, attrs in entries:
        guid = _guid(attrs)
        try:
            row = _row(directory, dn, attrs, containers)
        except ValueError as exc:
            result.problems.append(f"{dn}: left out, {exc}")
            troubled.add(guid)
            continue
        except LookupError as exc:
            if exc.args:
                result.problems.append(f"{dn}: left out, {exc.args[0]}")
                reported.add(guid)
            gone.add(guid)
            continue
        rows[guid] = row
    return rows, gone, troubled, reported


def _row(directory: LdapDirectory, dn: str, attrs: dict, containers: dict[str, int]) -> dict:
    """The mirror's row of a recipient. LookupError: not a recipient (with a problem to report
    as its argument, if any); ValueError: a recipient that cannot be read as it is."""
    kind = schema.kind_of({value.lower() for value in attrs.get("objectClass", [])})
    if kind is None or schema.is_ours(attrs):
        raise LookupError()
    parent = parent_of(dn)
    while parent and parent not in containers:
        parent = parent_of(parent)
    if not parent:
        raise LookupError()  # outside the units read
    if not attrs.get("mail"):
        if kind == Kind.CUSTOM_RECIPIENT or attrs.get(schema.PROXY_ATTRIBUTE):
            raise LookupError("it has no mail address")
        raise LookupError()  # a user or group without mail is no recipient
    if directory.disabled_accounts == DisabledAccounts.LEAVE_OUT and schema.is_disabled(attrs):
        raise LookupError()
    hidden = schema.is_hidden(attrs, directory.address_book_only)
    if hidden and directory.hidden_entries == HiddenEntries.LEAVE_OUT:
        raise LookupError()
    target = schema.target_of(attrs) if kind == Kind.CUSTOM_RECIPIENT else ""
    target_name = schema.TARGET_ATTRIBUTE if attrs.get(schema.TARGET_ATTRIBUTE) else "mail"
    values = schema.general_from_entry(attrs, kind)
    row = ldap_scan.mirror_row(values, kind, target, target_name)
    return {
        **row,
        "container_id": containers[parent],
        "hidden_from_others": hidden
        and directory.hidden_entries == HiddenEntries.HIDDEN_FROM_OTHERS,
    }


def _record(directory: LdapDirectory, dc: Controller, result: ScanResult, retry: list[str]):
    now = timezone.now()
    directory.usn_watermark = dc.highest_usn
    directory.invocation_id = dc.invocation_id
    directory.dc_service_name = dc.service_name
    directory.dc_host = dc.host
    directory.scanned_with = rules(directory)
    directory.retry_guids = retry
    directory.last_scan_at = now
    directory.last_error = ""
    directory.scan_problems = result.problems[: ldap_scan.MAX_PROBLEMS]
    fields = [
        "usn_watermark",
        "invocation_id",
        "dc_service_name",
        "dc_host",
        "scanned_with",
        "usn_probe",
        "retry_guids",
        "deletes_read",
        "deletes_note",
        "deletes_checked_at",
        "last_scan_at",
        "last_error",
        "scan_problems",
    ]
    if result.full:
        directory.last_full_scan_at, directory.full_scan_reason = now, result.reason
        fields += ["last_full_scan_at", "full_scan_reason"]
    directory.save(update_fields=fields)
