"""Write the imported contacts from the mirror into LDAP, and only those.

The mirror is the truth: a publish makes the entries that carry our marker (schema.CONTACT_MARKER)
match the organization's imported contacts, adding, renaming, modifying and deleting as needed.
An entry without the marker is never touched. It is idempotent: if LDAP goes down half-way, the
next publish finds what was written (by the global key on each entry) and does the rest.
Operations are pipelined (several in flight on one connection), since each waits for the server.
"""

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import ldap
import ldap.dn
import ldap.modlist
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from directory.constants import GENERAL_ATTRIBUTES
from directory.ldap import schema
from directory.ldap.connection import connected, describe, recording_failure, search
from directory.ldap.scan import MAX_PROBLEMS, normalize
from directory.models import LdapDirectory, Recipient, Tombstone

WINDOW = 64
# Errors about one entry: it is reported and the others go on. Anything else stops the publish.
ENTRY_ERRORS = (
    ldap.ALREADY_EXISTS,
    ldap.INVALID_SYNTAX,
    ldap.INVALID_DN_SYNTAX,
    ldap.OBJECT_CLASS_VIOLATION,
    ldap.CONSTRAINT_VIOLATION,
    ldap.UNDEFINED_TYPE,
    ldap.NO_SUCH_OBJECT,
    ldap.NAMING_VIOLATION,
    ldap.INSUFFICIENT_ACCESS,
    ldap.TYPE_OR_VALUE_EXISTS,
    ldap.NOT_ALLOWED_ON_NONLEAF,
)


@dataclass
class PublishResult:
    added: int = 0
    modified: int = 0
    renamed: int = 0
    deleted: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return self.added + self.modified + self.renamed + self.deleted


class Pipeline:
    """Asynchronous LDAP operations, at most WINDOW in flight; per-entry errors are collected."""

    def __init__(self, conn, result: PublishResult):
        self.conn, self.result = conn, result
        self.pending: deque = deque()

    def submit(self, what: str, counter: str, operation, *args) -> None:
        self.pending.append((operation(*args), what, counter))
        if len(self.pending) >= WINDOW:
            self.wait_one()

    def wait_one(self) -> None:
        msgid, what, counter = self.pending.popleft()
        try:
            self.conn.result(msgid)
        except ENTRY_ERRORS as exc:
            self.result.problems.append(f"{what}: {describe(exc)}")
        else:
            setattr(self.result, counter, getattr(self.result, counter) + 1)

    def drain(self) -> None:
        while self.pending:
            self.wait_one()


def publish(organization_id: int, force: bool = False) -> PublishResult:
    """Bring the contacts in LDAP in line with the mirror when it changed since the last time
    (or always with `force`). Raises DirectoryUnavailable if LDAP fails; what was written stays,
    and the next publish completes it."""
    return publish_with(_publish, organization_id, force)


def publish_with(
    write: Callable[[LdapDirectory], PublishResult], organization_id: int, force: bool
) -> PublishResult:
    """Run `write` (this module's writer, or Active Directory's) on the organization's directory,
    locked, when the contacts changed since the last publish, and record what it did."""
    with recording_failure(organization_id), transaction.atomic():
        directory = LdapDirectory.objects.select_for_update().get(organization_id=organization_id)
        latest = _latest_contact_usn(organization_id)
        if not force and latest <= directory.published_usn and not directory.last_error:
            return PublishResult()
        result = write(directory)
        directory.published_usn = latest
        directory.last_publish_at = timezone.now()
        directory.last_error = ""
        directory.publish_problems = result.problems[:MAX_PROBLEMS]
        directory.save(
            update_fields=[
                "published_usn",
                "last_publish_at",
                "last_error",
                "publish_problems",
            ]
        )
        return result


def _latest_contact_usn(organization_id: int) -> int:
    contacts = Recipient.objects.filter(
        organization_id=organization_id, global_key__isnull=False
    ).aggregate(usn=Max("usn"))["usn"]
    removed = Tombstone.objects.filter(organization_id=organization_id, imported=True).aggregate(
        usn=Max("usn")
    )["usn"]
    return max(contacts or 0, removed or 0)


def contact_dn(alias: str, parent_dn: str) -> str:
    return f"uid={ldap.dn.escape_dn_chars(alias)},{parent_dn}"


def _publish(directory: LdapDirectory) -> PublishResult:
    result = PublishResult()
    contacts = (
        Recipient.objects.filter(organization_id=directory.organization_id)
        .exclude(global_key=None)
        .order_by()
        .values_list(
            "global_key",
            "origin_organization",
            "target_address",
            "container__ldap_dn",
            "hidden_at",
            *GENERAL_ATTRIBUTES,
        )
    )
    hidden_unit = schema.hidden_unit_dn(directory.base_dn)
    with connected(directory) as conn:
        if contacts.filter(hidden_at__isnull=False).exists():
            ensure_unit(conn, hidden_unit, schema.HIDDEN_UNIT)
        written: dict[str, tuple[str, dict]] = {}
        pipeline = Pipeline(conn, result)
        for dn, attrs in search(
            conn, directory.base_dn, schema.CONTACT_FILTER, schema.CONTACT_ATTRIBUTES
        ):
            key = (attrs.get(schema.KEY_ATTRIBUTE) or [""])[0]
            if key in written:  # a stray copy: one entry per key
                pipeline.submit(f"{dn}", "deleted", conn.delete_ext, dn)
                continue
            written[key] = (dn, attrs)
        for key, origin, target, parent_dn, hidden_at, *values in contacts.iterator(
            chunk_size=5000
        ):
            general = dict(zip(GENERAL_ATTRIBUTES, values, strict=True))
            if hidden_at is not None:
                parent_dn = hidden_unit
            if not parent_dn:
                result.problems.append(
                    f"{general['display_name']} ({key}): its container is not an LDAP "
                    "organizational unit; choose one as the import container."
                )
                written.pop(key, None)
                continue
            entry = schema.contact_entry(general, target, key, origin, hidden_at)
            dn = contact_dn(general["alias"], parent_dn)
            have = written.pop(key, None)
            if have is None:
                modlist = ldap.modlist.addModlist(
                    {
                        "objectClass": [c.encode() for c in schema.CONTACT_CLASSES],
                        **{name: [value.encode()] for name, value in entry.items()},
                    }
                )
                pipeline.submit(f"{dn}", "added", conn.add_ext, dn, modlist)
                continue
            old_dn, attrs = have
            if normalize(old_dn) != normalize(dn):
                # Sequential: the modify below must see the entry at its new DN.
                pipeline.drain()
                try:
                    conn.rename_s(old_dn, dn.split(",", 1)[0], parent_dn, delold=1)
                    result.renamed += 1
                except ENTRY_ERRORS as exc:
                    result.problems.append(f"{old_dn} -> {dn}: {describe(exc)}")
                    continue
            changes = _modlist(attrs, entry)
            if changes:
                pipeline.submit(f"{dn}", "modified", conn.modify_ext, dn, changes)
        for dn, _attrs in written.values():  # ours, but no longer among the contacts
            pipeline.submit(f"{dn}", "deleted", conn.delete_ext, dn)
        pipeline.drain()
    return result


def ensure_unit(conn, dn: str, name: str) -> None:
    """The organizational unit at `dn`, added if it is not there yet."""
    try:
        conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["1.1"])
    except ldap.NO_SUCH_OBJECT:
        conn.add_s(dn, [("objectClass", [b"top", b"organizationalUnit"]), ("ou", [name.encode()])])


def _modlist(have: dict[str, list[str]], want: dict[str, str]) -> list:
    changes = []
    for name in schema.CONTACT_ATTRIBUTES:
        old, new = have.get(name, []), want.get(name)
        if new is None:
            if old:
                changes.append((ldap.MOD_DELETE, name, None))
        elif old != [new]:
            changes.append((ldap.MOD_REPLACE, name, [new.encode()]))
    return changes
