"""The master service: apply a requestor's export, acknowledge it, and answer with newer entries.

Everything here runs inside the inbox's transaction for one message part, with the master's row
locked: master USNs are allocated and committed in order (docs/protocol.md, rule 3).
"""

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from directory.bulk import OneOf, copy_insert, update_objects
from master.models import AllowedRequestor, GlobalEntry, LedgerEntry, MasterConfig, ReceivedBatch
from transport import outbox, signing, wire
from transport.constants import AddressType
from transport.exceptions import MessageRejected
from transport.models import Message

log = logging.getLogger(__name__)

# What processing changes on a global entry (changed_at aside), the columns of a new entry,
# and those of a ledger row.
ENTRY_FIELDS = ["kind", "attrs", "deleted", "source_usn", "usn", "full_batch"]
NEW_ENTRY_FIELDS = ["master_id", "requestor_id", "object_id", "global_key", "origin", *ENTRY_FIELDS]
LEDGER_FIELDS = [
    "master_id",
    "usn",
    "global_key",
    "origin",
    "op",
    "source_usn",
    "attrs",
    "message_id",
]


def _by_address(address: str) -> Q:
    return Q(address__iexact=address) | Q(dn__iexact=address)


def is_master_address(address: str) -> bool:
    return MasterConfig.objects.filter(_by_address(address)).exists()


def lock_master(address: str) -> MasterConfig:
    """The master receiving at `address`, locked until commit: the USN counter lives on it."""
    master = MasterConfig.objects.select_for_update().filter(_by_address(address)).first()
    if master is None:
        raise MessageRejected(f"No master receives mail at {address}.")
    if not master.enabled:
        raise MessageRejected(f"The master at {address} is disabled.")
    return master


def allowed_requestor(master: MasterConfig, sender: str, organization: str) -> AllowedRequestor:
    requestor = master.requestors.filter(address__iexact=sender).first()
    if requestor is None:
        raise MessageRejected(
            f"{sender} is not a requestor address of this master; an administrator must add it "
            "to the Requestor E-mail Addresses on the Master Configuration page."
        )
    if not requestor.enabled:
        raise MessageRejected(f"The requestor {sender} is disabled on this master.")
    if requestor.organization_name.lower() != organization.lower():
        raise MessageRejected(
            f"{sender} speaks for {requestor.organization_name}, "
            f"but the export claims to come from {organization}."
        )
    return requestor


def handle_export(message: Message, document: wire.ExportDocument) -> None:
    """Inbox entry point for an export part addressed to a master of this installation."""
    master = lock_master(message.recipient)
    message.organization_id = master.organization_id
    requestor = allowed_requestor(master, message.sender, document.sender.organization)
    process_export(master, requestor, document, message)


@dataclass
class _Changes:
    """What one export part does to the master database."""

    master: MasterConfig
    requestor: AllowedRequestor
    message: Message | None
    create: list["_NewEntry"] = field(default_factory=list)
    update: list[GlobalEntry] = field(default_factory=list)
    ledger: list[tuple] = field(default_factory=list)
    now: datetime = field(default_factory=timezone.now)

    def publish(self, entry: "GlobalEntry | _NewEntry", op: str) -> None:
        self.master.usn += 1
        entry.usn = self.master.usn
        entry.changed_at = self.now
        self.ledger.append(
            (
                self.master.pk,
                entry.usn,
                entry.global_key,
                entry.origin,
                op,
                entry.source_usn,
                entry.attrs,
                self.message.pk if self.message else None,
            )
        )

    def save(self) -> None:
        """New entries and the ledger are written as plain rows (COPY on PostgreSQL), changed
        entries in one statement (see directory.bulk)."""
        rows = ([getattr(entry, name) for name in NEW_ENTRY_FIELDS] for entry in self.create)
        copy_insert(GlobalEntry, NEW_ENTRY_FIELDS, rows)
        update_objects(GlobalEntry, self.update, [*ENTRY_FIELDS, "changed_at"])
        copy_insert(LedgerEntry, LEDGER_FIELDS, self.ledger)
        self.create, self.update, self.ledger = [], [], []


def process_export(
    master: MasterConfig,
    requestor: AllowedRequestor,
    document: wire.ExportDocument,
    message: Message | None = None,
) -> None:
    changes = _Changes(master, requestor, message)
    apply_changes(changes, document)
    changes.save()
    acknowledge(requestor, document.usn_from, document.usn_through)
    requestor.reported_master_usn = document.master_usn
    requestor.last_sequence = max(requestor.last_sequence, document.sequence)
    requestor.last_contact_at = timezone.now()
    batch = record_part(requestor, document)
    if batch.complete and not batch.replied:
        if batch.full:
            sweep_absent(changes, batch.batch, document.usn_through)
            changes.save()
        send_reply(master, requestor, batch)
        batch.replied = True
    batch.save()
    requestor.save()
    master.save(update_fields=["usn", "epoch", "sequence"])


def apply_changes(changes: _Changes, document: wire.ExportDocument) -> None:
    """Apply each change newer than what the master holds for that object (rule 2)."""
    requestor = changes.requestor
    ids = OneOf("object_id", {change.id for change in document.changes})
    existing: dict[uuid.UUID, GlobalEntry | _NewEntry] = {
        entry.object_id: entry for entry in GlobalEntry.objects.filter(ids, requestor=requestor)
    }
    touched: dict[uuid.UUID, GlobalEntry | _NewEntry] = {}
    for change in sorted(document.changes, key=lambda c: c.usn):
        entry = existing.get(change.id)
        if entry is None:
            entry = existing[change.id] = _new_entry(changes, change)
            changes.create.append(entry)
        # A full export lists the object only if it is not older than what the master holds:
        # a late part of an older full export must not claim objects for its sweep.
        if document.full and entry.full_batch != document.batch and change.usn >= entry.source_usn:
            entry.full_batch = document.batch
            touched[change.id] = entry
        if change.usn <= entry.source_usn:
            continue
        entry.source_usn = change.usn
        touched[change.id] = entry
        if change.op == "delete":
            if not entry.deleted:
                entry.deleted, entry.attrs = True, {}
                changes.publish(entry, LedgerEntry.Op.DELETE)
        elif entry.deleted or entry.kind != change.kind or entry.attrs != change.attrs:
            entry.deleted, entry.kind, entry.attrs = False, change.kind, dict(change.attrs)
            changes.publish(entry, LedgerEntry.Op.UPSERT)
    new = {id(entry) for entry in changes.create}
    changes.update.extend(entry for entry in touched.values() if id(entry) not in new)


@dataclass
class _NewEntry:
    """A global entry the master has never stored. It is only ever inserted, as a row (see
    _Changes.save): a model instance per object would cost more than writing it."""

    master_id: int
    requestor_id: int
    object_id: uuid.UUID
    global_key: str
    origin: str
    kind: str
    attrs: dict = field(default_factory=dict)
    deleted: bool = True
    source_usn: int = -1
    usn: int = 0
    full_batch: uuid.UUID | None = None
    changed_at: datetime | None = None


def _new_entry(changes: _Changes, change: wire.Change) -> _NewEntry:
    """An entry the master has never published: a delete of it is remembered, not sent."""
    name = changes.requestor.organization_name
    return _NewEntry(
        master_id=changes.master.pk,
        requestor_id=changes.requestor.pk,
        object_id=change.id,
        global_key=f"{name}:{change.id}",
        origin=name,
        kind=change.kind,
    )


def acknowledge(requestor: AllowedRequestor, usn_from: int, usn_through: int) -> None:
    """Advance the ack over contiguous ranges; keep ranges that arrived ahead of a gap."""
    acked = requestor.acked_usn
    waiting = []
    for low, high in sorted([*requestor.pending_ranges, [usn_from, usn_through]]):
        if low <= acked:
            acked = max(acked, high)
        else:
            waiting.append([low, high])
    requestor.acked_usn = acked
    requestor.pending_ranges = waiting[-100:]


def record_part(requestor: AllowedRequestor, document: wire.ExportDocument) -> ReceivedBatch:
    batch, _ = ReceivedBatch.objects.get_or_create(
        requestor=requestor,
        batch=document.batch,
        defaults={
            "parts": document.parts,
            "full": document.full,
            "master_usn": document.master_usn,
            "master_epoch": document.master_epoch,
        },
    )
    if document.part not in batch.received_parts:
        batch.received_parts = sorted([*batch.received_parts, document.part])
    return batch


def sweep_absent(changes: _Changes, batch: uuid.UUID, usn_through: int) -> None:
    """A complete full export lists everything the requestor exports: drop what it did not list.

    The swept entries take the export's USN as their source USN, so a late part of an older
    export cannot bring them back. An entry changed after the export's snapshot (a newer export
    got there first) is not judged by it.
    """
    stale = GlobalEntry.objects.filter(
        requestor=changes.requestor, deleted=False, source_usn__lte=usn_through
    ).exclude(full_batch=batch)
    for entry in stale:
        entry.deleted, entry.attrs = True, {}
        entry.source_usn = max(entry.source_usn, usn_through)
        changes.publish(entry, LedgerEntry.Op.DELETE)
        changes.update.append(entry)


def reply_is_full(master: MasterConfig, batch: ReceivedBatch) -> bool:
    """A full reply when the requestor starts over, fell behind purged tombstones, or the
    master's history changed under it (rule 5)."""
    if batch.master_epoch == master.epoch and batch.master_usn > master.usn:
        # The requestor has seen USNs this master never issued: the master was restored from a
        # backup. Every requestor must start over against a new epoch. (A requestor still on an
        # older epoch gets a full reply anyway; its USN says nothing about this epoch, and it
        # must not rotate the epoch again under the requestors already following the new one.)
        log.warning(
            "%s reports master USN %s but the master is at %s: starting a new epoch",
            batch.requestor,
            batch.master_usn,
            master.usn,
        )
        master.epoch = uuid.uuid4()
        return True
    return (
        batch.master_usn == 0
        or batch.master_epoch != master.epoch
        or batch.master_usn < master.purged_through_usn
    )


def send_reply(master: MasterConfig, requestor: AllowedRequestor, batch: ReceivedBatch) -> None:
    """Queue the reply to a complete export batch, split by the master's attachment size."""
    full = reply_is_full(master, batch)
    after = 0 if full else batch.master_usn
    through = master.usn
    entries = (
        GlobalEntry.objects.filter(master=master, usn__gt=after, usn__lte=through)
        .exclude(requestor=requestor)
        .order_by("usn")
    )
    if full:
        entries = entries.filter(deleted=False)
    # The attributes are copied into the payload as the database's JSON text: decoding and
    # encoding them again would cost more than everything else about an entry.
    items, texts = [], []
    for key, origin, deleted, kind, usn, attrs in entries.values_list(
        "global_key", "origin", "deleted", "kind", "usn", Cast("attrs", TextField())
    ):
        op = "delete" if deleted else "upsert"
        item = {"key": key, "origin": origin, "op": op, "kind": kind, "usn": usn}
        items.append(item)
        texts.append(b"".join([wire.json_bytes(item)[:-1], b',"attrs":', attrs.encode(), b"}"]))
    sender = master.dn if requestor.address_type == AddressType.EX else master.address
    reply_batch = str(uuid.uuid4())
    # Sequences follow the clock as well as the counter: a master restored from a backup still
    # numbers its replies above everything it sent before, or requestors refuse them as replays.
    first_sequence = signing.next_sequence(master.sequence)

    def render(chunks: list[list[dict]], index: int) -> dict:
        chunk_after = after if index == 0 else chunks[index - 1][-1]["usn"]
        last = index == len(chunks) - 1
        return {
            "protocol": 1,
            "type": "reply",
            "sender": {"organization": master.organization.name, "address": sender},
            "batch": reply_batch,
            "part": index + 1,
            "parts": len(chunks),
            "sequence": first_sequence + index,
            "full": full,
            "in_reply_to": str(batch.batch),
            "epoch": str(master.epoch),
            "ack": requestor.acked_usn,
            "after": chunk_after,
            "through": through if last else chunks[index][-1]["usn"],
            "entries": chunks[index],
        }

    parts = wire.split(items, master.max_attachment_size, render, texts)
    for document, payload in parts:
        outbox.queue(master.organization_id, sender, requestor.address, document, payload)
    master.sequence = first_sequence + len(parts) - 1
