"""Every change to an organization's recipients and containers goes through here.

A recipient that changes takes the next local USN of its organization, so the next export
carries it (docs/protocol.md, rule 4), and the organization's digest cells follow it, so the
next verification counts it (rule 10). A deleted recipient leaves a tombstone. The console, the
API, the admin, the LDAP scan, the import and the seeding commands all call these functions;
`Recipient.save()`, `delete()` and `QuerySet.update()` refuse to run anywhere else, so that no
path can change a recipient without the sync knowing.

Whether a change matters to an export (a recipient entering or leaving the export scope, the
scope itself changing) is the requestor's business: it compares the scope it last exported with
the current one at every export (requestor.scope).
"""

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import itemgetter

from django.db import transaction
from django.db.models import Q, QuerySet, Value
from django.db.models.functions import Concat, Substr
from django.utils import timezone

from directory.bulk import OneOf, copy_insert, update_objects
from directory.models import (
    Container,
    DigestCell,
    Organization,
    Recipient,
    Site,
    Tombstone,
    _writing,
    allocate_usns,
    new_guid,
)
from transport.digest import Tally, from_hex, member, to_hex

# What a recipient contributes to its organization's digests, and where.
CELL_FIELDS = (
    "container_id",
    "kind",
    "trust_level",
    "hidden_from_others",
    "hidden_at",
    "global_key",
    "guid",
    "usn",
    "master_usn",
)
# What a field missing from a row stands for (a new recipient's default).
CELL_DEFAULTS = {"trust_level": 0, "hidden_from_others": False}
DELETE_CHUNK = 5000


@contextmanager
def writing() -> Iterator[None]:
    """Let this block write recipients (the bulk paths keep USNs and cells themselves)."""
    token = _writing.set(True)
    try:
        yield
    finally:
        _writing.reset(token)


def member_of(global_key: str | None, guid, usn: int, master_usn: int | None) -> tuple[str, int]:
    """What a recipient counts as in the digests: an imported contact is the master's entry
    (global key, master USN), an own recipient its object (GUID, local USN)."""
    if global_key is not None:
        return global_key, master_usn or 0
    return str(guid), usn


def _values(row) -> tuple:
    if isinstance(row, Mapping):
        # (The mappings given here lack at most hidden_at, whose default is None: the LDAP scan's.)
        return tuple(row.get(f, CELL_DEFAULTS.get(f)) for f in CELL_FIELDS)  # pragma: no mutate
    return tuple(getattr(row, name) for name in CELL_FIELDS)


class CellDelta:
    """Changes to one organization's digest cells, written in one go by save()."""

    def __init__(self, organization_id: int):
        self.organization_id = organization_id
        self.changes: dict[tuple, Tally] = {}

    def apply(self, values: tuple, sign: int) -> None:
        """Count (sign +1) or stop counting (-1) a recipient given as its CELL_FIELDS values."""
        container_id, kind, trust_level, hidden, hidden_at, global_key, guid, usn, master_usn = (
            values
        )
        # Hidden: an own recipient kept from the other organizations, or a contact in its grace
        # period; neither is counted with what the master lists.
        hidden = bool(hidden) or hidden_at is not None
        key = (container_id, kind, trust_level, hidden, global_key is not None)
        tally = self.changes.get(key)
        if tally is None:
            tally = self.changes[key] = Tally()
        tally.toggle(member(*member_of(global_key, guid, usn, master_usn)), sign)

    def add(self, row) -> None:
        """Count a recipient (a model instance, or a mapping of CELL_FIELDS) as it is now."""
        self.apply(_values(row), +1)

    def remove(self, row) -> None:
        """Stop counting a recipient as it was."""
        self.apply(_values(row), -1)

    def save(self, *, locked: bool = False) -> None:
        """Write the changes. The organization's row serializes the writers of its cells (two
        must not both create the same new cell): it is locked here, unless the caller says it
        holds it already (`locked`: it allocated USNs in this transaction)."""
        changed = {key: t for key, t in self.changes.items() if t.value or t.count}
        self.changes = {}
        if not changed:
            return
        if not locked:
            organization = Organization.objects.select_for_update(no_key=True)
            list(organization.filter(pk=self.organization_id).values("pk"))
        cells = {
            (c.container_id, c.kind, c.trust_level, c.hidden, c.imported): c
            for c in DigestCell.objects.select_for_update(no_key=True).filter(
                organization_id=self.organization_id
            )
        }
        update, create = [], []
        for key, tally in changed.items():
            cell = cells.get(key)
            if cell is None:
                container_id, kind, trust_level, hidden, imported = key
                create.append(
                    DigestCell(
                        organization_id=self.organization_id,
                        container_id=container_id,
                        kind=kind,
                        trust_level=trust_level,
                        hidden=hidden,
                        imported=imported,
                        digest=tally.hex,
                        count=tally.count,
                    )
                )
            else:
                cell.digest = to_hex(from_hex(cell.digest) ^ tally.value)
                cell.count += tally.count
                update.append(cell)
        empty = [cell.pk for cell in update if cell.count == 0 and not from_hex(cell.digest)]
        DigestCell.objects.bulk_update(
            [c for c in update if c.pk not in empty], ["digest", "count"]
        )
        DigestCell.objects.filter(pk__in=empty).delete()
        DigestCell.objects.bulk_create(create)


def save_recipient(recipient: Recipient, *, update_fields: Iterable[str] | None = None):
    """Create or change one recipient: it takes the next local USN of its organization."""
    with transaction.atomic(), writing():
        organization_id = recipient.container.organization_id
        old = None
        if recipient.pk:
            old = Recipient.objects.filter(pk=recipient.pk).values(*CELL_FIELDS).first()
        recipient.usn = allocate_usns(organization_id, own=recipient.global_key is None)
        if update_fields is not None:
            update_fields = {*update_fields, "usn", "changed_at"}
        recipient.save(update_fields=update_fields)
        delta = CellDelta(organization_id)
        if old is not None:
            delta.remove(old)
        delta.add(recipient)
        # Locked by allocate_usns above (unlocked, save() would only lock it again).
        delta.save(locked=True)  # pragma: no mutate
    return recipient


def delete_recipients(recipients: QuerySet | Iterable[Recipient]) -> int:
    """Delete recipients, leaving a tombstone with a fresh local USN for each; return how many."""
    with transaction.atomic(), writing():
        if not isinstance(recipients, QuerySet):
            recipients = Recipient.objects.filter(pk__in=[r.pk for r in recipients])
        rows = list(recipients.order_by().values("pk", "organization_id", *CELL_FIELDS))
        if not rows:
            return 0
        Tombstone.record(
            [
                (r["pk"], r["organization_id"], r["guid"], r["kind"], r["container_id"])
                for r in rows
            ],
            {r["pk"] for r in rows if r["global_key"] is not None},
        )
        deltas: dict[int, CellDelta] = {}
        for row in rows:
            deltas.setdefault(row["organization_id"], CellDelta(row["organization_id"]))
            deltas[row["organization_id"]].remove(row)
        # Tombstone.record allocated USNs of each organization: their rows are locked.
        for delta in deltas.values():
            delta.save(locked=True)  # pragma: no mutate
        pks = sorted(row["pk"] for row in rows)
        # Chunks of any size delete the same.
        for start in range(0, len(pks), DELETE_CHUNK):  # pragma: no mutate
            Recipient.objects.filter(OneOf("pk", pks[start : start + DELETE_CHUNK])).delete()
        return len(pks)


def hide_contacts(organization_id: int, contacts: Sequence[Recipient], master_usns=None) -> int:
    """Hide imported contacts for their grace period: out of the address book (and of the
    digests of what the master lists), giving up their address and alias, but kept, so that
    the same contact comes back if its entry does. Each takes a fresh local USN (an LDAP
    directory moves it at its next write); `master_usns` (by pk) records the delete's master
    USN where known. Return how many were hidden."""
    contacts = [c for c in contacts if c.global_key is not None and c.hidden_at is None]
    if not contacts:
        return 0
    with transaction.atomic(), writing():
        first = allocate_usns(organization_id, len(contacts), own=False)
        now = timezone.now()
        delta = CellDelta(organization_id)
        for offset, contact in enumerate(contacts):
            delta.remove(contact)
            contact.hidden_at, contact.usn, contact.changed_at = now, first + offset, now
            contact.master_usn = (master_usns or {}).get(contact.pk, contact.master_usn)
            delta.add(contact)
        update_objects(Recipient, contacts, ["hidden_at", "usn", "changed_at", "master_usn"])
        # Locked by allocate_usns above (unlocked, save() would only lock it again).
        delta.save(locked=True)  # pragma: no mutate
    return len(contacts)


def insert_recipients(
    organization_id: int, fields: Sequence[str], rows: Iterable[Sequence], *, copy: bool = True
) -> int:
    """New recipients of one organization as rows of `fields` values (which hold their `usn`,
    from allocate_usns), written in bulk: COPY on PostgreSQL, or bare bulk_create with
    `copy=False`. Return how many."""
    fields = list(fields)
    with_guid = "guid" not in fields
    if with_guid:
        fields.append("guid")
    # The CELL_FIELDS values of a row: the fields it lacks take their defaults, from `pad`.
    missing = [name for name in CELL_FIELDS if name not in fields]
    pad = tuple(CELL_DEFAULTS.get(name) for name in missing)
    pick = itemgetter(
        *(
            fields.index(name) if name in fields else len(fields) + missing.index(name)
            for name in CELL_FIELDS
        )
    )
    delta = CellDelta(organization_id)

    def counted(rows: Iterable[Sequence]) -> Iterator[tuple]:
        for row in rows:
            row = (*row, new_guid()) if with_guid else tuple(row)
            delta.apply(pick(row + pad), +1)
            yield row

    with transaction.atomic(), writing():
        if copy:
            count = copy_insert(Recipient, fields, counted(rows))
        else:
            made = [Recipient(**dict(zip(fields, row, strict=True))) for row in counted(rows)]
            count = len(Recipient.objects.bulk_create(made))
        delta.save()
    return count


def touch(organization_id: int, recipients: QuerySet) -> int:
    """Give these own recipients of the organization fresh local USNs, so that the next export
    states them again as they are now; return how many."""
    with transaction.atomic(), writing():
        # In their order (any order would restate them all above the current USN).
        rows = list(
            recipients.filter(organization_id=organization_id, global_key__isnull=True)
            .order_by("usn", "pk")  # pragma: no mutate
            .values("pk", *CELL_FIELDS)
        )
        if not rows:
            return 0
        first = allocate_usns(organization_id, len(rows))
        now = timezone.now()
        delta = CellDelta(organization_id)
        changed = []
        for offset, row in enumerate(rows):
            delta.remove(row)
            row["usn"] = first + offset
            delta.add(row)
            changed.append(Recipient(pk=row["pk"], usn=row["usn"], changed_at=now))
        update_objects(Recipient, changed, ["usn", "changed_at"])
        # Locked by allocate_usns above (unlocked, save() would only lock it again).
        delta.save(locked=True)  # pragma: no mutate
        return len(rows)


KEEP = object()


def move_container(
    container: Container, *, name: str | None = None, parent=KEEP, site: Site | None = None
) -> Container:
    """Rename a container or move it (to another parent in its site, or to the top of another
    site of its organization); the DNs of everything inside it follow in one statement.

    Which recipients this takes into or out of an export scope is found by the requestor's next
    export, whatever path moved the container."""
    with transaction.atomic(), writing():
        if name is not None:
            container.name = name
        if parent is not KEEP:
            container.parent = parent
        if site is not None:
            container.site = site
        if container.parent_id and container.parent.site_id != container.site_id:
            container.site = container.parent.site
        container.clean()
        old_dn = Container.objects.filter(pk=container.pk).values_list("dn", flat=True).first()
        container.save()
        if old_dn != container.dn and old_dn:  # (None: a new container, nothing inside)
            # Everything inside follows, to the container's site too.
            _rewrite_dns(
                Q(dn__startswith=old_dn + "/"), old_dn, container.dn, site_id=container.site_id
            )
    return container


def rename_site(site: Site, name: str) -> Site:
    """Rename a site; the DNs of its containers follow in one statement."""
    with transaction.atomic(), writing():
        old_dn = Site.objects.get(pk=site.pk).dn
        site.name = name
        site.save()
        if old_dn != site.dn:
            _rewrite_dns(Q(site=site), old_dn, site.dn)
    return site


def _rewrite_dns(where: Q, old_prefix: str, new_prefix: str, **also) -> None:
    Container.objects.filter(where).update(
        dn=Concat(Value(new_prefix), Substr("dn", len(old_prefix) + 1)), **also
    )


def rebuild_cells(organization_id: int, *, imported: bool | None = None) -> None:
    """Count the organization's digest cells again from its recipients (a full read: for a
    repair, a full cross-check, or a database that predates the cells); only those of its
    imported contacts (`imported=True`) or of its own recipients (False) if asked."""
    delta = CellDelta(organization_id)
    rows = Recipient.objects.filter(organization_id=organization_id).order_by()
    old = DigestCell.objects.filter(organization_id=organization_id)
    if imported is not None:
        rows = rows.filter(global_key__isnull=not imported)
        old = old.filter(imported=imported)
    # The chunk size changes the speed only.
    for values in rows.values_list(*CELL_FIELDS).iterator(chunk_size=5000):  # pragma: no mutate
        delta.apply(values, +1)
    with transaction.atomic():
        old.delete()
        delta.save()


def cells(organization_id: int) -> list[DigestCell]:
    """The organization's digest cells as they stand."""
    return list(DigestCell.objects.filter(organization_id=organization_id))


def contacts_tally(organization_id: int, known: list[DigestCell] | None = None) -> Tally:
    """What the organization's imported contacts in its address book add up to: (global key,
    master USN) each (from `known` cells when the caller read them already). Contacts hidden
    for their grace period are known, but not counted: the master no longer lists them."""
    tally = Tally()
    for cell in cells(organization_id) if known is None else known:
        if cell.imported and not cell.hidden:
            tally.merge(Tally.of(cell.digest, cell.count))
    return tally
