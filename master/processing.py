"""The master service: apply a requestor's export, acknowledge it, and answer with newer entries.

Everything here runs inside the inbox's transaction for one message part, with the master's row
locked: master USNs are allocated and committed in order (docs/protocol.md, rule 4). Every
change also updates the digests of the live entries (transport.digest) that replies carry for
the requestors to check (rule 10), and the chain fingerprint of the ledger that tells a
restored master from the one the requestors followed.
"""

import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import TextField
from django.db.models.functions import Cast
from django.utils import timezone

from directory.bulk import OneOf, copy_insert, update_objects
from master.models import AllowedRequestor, GlobalEntry, LedgerEntry, MasterConfig, ReceivedBatch
from transport import holds, outbox, signing, wire
from transport.constants import PROTOCOL_VERSION, AddressType, MessageKind, Op
from transport.digest import Tally, member
from transport.exceptions import MessageHeld, MessageRejected
from transport.models import Message
from transport.registry import at_address

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
    "chain",
]
DAY_MS = 24 * 3600 * 1000
# What processing writes on the master and on the requestor: their state, never their settings
# (an administrator's change saved meanwhile stays; see interorg_site/state.py).
MASTER_STATE = ["usn", "epoch", "sequence", "history", "reply_digest", "reply_count"]
REQUESTOR_STATE = [
    "acked_usn",
    "pending_ranges",
    "reported_master_usn",
    "sent_master_usn",
    "last_sequence",
    "last_contact_at",
    "refusals",
    "full_export_wanted",
    "reply_digest",
    "reply_count",
    "export_digest",
    "export_count",
]


def lock_master(address: str) -> MasterConfig:
    """The master receiving at `address`, locked until commit: the USN counter lives on it."""
    master = MasterConfig.objects.select_for_update(no_key=True).filter(at_address(address)).first()
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


def refuse_older_than_tombstones(master: MasterConfig, document: wire.ExportDocument) -> None:
    """An export written before the master's oldest tombstones could bring back an object whose
    tombstone is gone: refused, whatever the replay window says (docs/protocol.md, rule 3)."""
    written_ms = document.sequence
    limit_ms = master.tombstone_lifetime_days * DAY_MS
    if written_ms < signing.now_ms() - limit_ms:
        raise MessageRejected(
            f"Stale: this export was written more than the master's tombstone lifetime "
            f"({master.tombstone_lifetime_days} days) ago, by its sequence {written_ms}; "
            "applying it could bring back deleted entries. The requestor's next cycle sends "
            "its changes again."
        )


def handle_export(message: Message, document: wire.ExportDocument) -> None:
    """Inbox entry point for an export part addressed to a master of this installation."""
    prepared = prepare_reply(message.recipient, message.sender, document)
    master = lock_master(message.recipient)
    message.organization_id = master.organization_id
    requestor = allowed_requestor(master, message.sender, document.sender.organization)
    if requestor.quarantined:
        raise MessageHeld(
            f"{requestor.organization_name} is quarantined on this master since "
            f"{requestor.quarantined_at:%Y-%m-%d %H:%M} UTC ({requestor.quarantine_reason}). Its "
            "messages are kept and applied in order when an administrator releases it."
        )
    refuse_older_than_tombstones(master, document)
    process_export(master, requestor, document, message, prepared)


def chain_onto(previous: str, usn: int, key: str, op: str, source_usn: int) -> str:
    """The ledger's fingerprint through one more entry."""
    data = f"{previous}\x1f{usn}\x1f{key}\x1f{op}\x1f{source_usn}".encode()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _is_live(deleted: bool, usn: int) -> bool:
    # An entry is stored live only once publish() gave it a master USN; one never published is
    # stored deleted (_NewEntry): `usn > 0` and `usn >= 0` agree on every state stored.
    return not deleted and usn > 0  # pragma: no mutate


# (deleted, source_usn, usn) of an entry this part creates: not live. With USN 0 no other
# deleted flag or source USN changes what _count does (neither side live: nothing to move).
_UNSEEN = (True, -1, 0)  # pragma: no mutate


@dataclass
class _Changes:
    """What one export part does to the master database, and to its digests."""

    master: MasterConfig
    requestor: AllowedRequestor
    message: Message | None
    create: list["_NewEntry"] = field(default_factory=list)
    update: list[GlobalEntry] = field(default_factory=list)
    ledger: list[tuple] = field(default_factory=list)
    # Names of the live entries this part deleted (the mass-delete guard shows some).
    deleted: list[str] = field(default_factory=list)
    # (deleted, source_usn, usn) of each stored entry when this part first touched it.
    before: dict[uuid.UUID, tuple[bool, int, int]] = field(default_factory=dict)
    now: datetime = field(default_factory=timezone.now)

    def track(self, entry: GlobalEntry) -> None:
        """Remember a stored entry as it was, before this part changes it."""
        self.before.setdefault(entry.object_id, (entry.deleted, entry.source_usn, entry.usn))

    def delete(self, entry: "GlobalEntry | _NewEntry") -> None:
        """Delete a live entry: a tombstone takes the next master USN."""
        attrs = entry.attrs
        # Its name in the guard's sample: the display name, else the address, else the key.
        self.deleted.append(
            attrs.get("display_name") or attrs.get("primary_smtp") or entry.global_key
        )
        entry.deleted, entry.attrs = True, {}
        self.publish(entry, Op.DELETE.value)

    def publish(self, entry: "GlobalEntry | _NewEntry", op: str) -> None:
        self.master.usn += 1
        entry.usn = self.master.usn
        entry.changed_at = self.now
        self.master.history = chain_onto(
            self.master.history, entry.usn, entry.global_key, op, entry.source_usn
        )
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
                self.master.history,
            )
        )

    def _count(self) -> None:
        """Move the digests from what the touched entries were to what they are now."""
        exports = Tally.of(self.requestor.export_digest, self.requestor.export_count)
        mine = Tally.of(self.requestor.reply_digest, self.requestor.reply_count)
        everyone = Tally.of(self.master.reply_digest, self.master.reply_count)
        for entry in [*self.create, *self.update]:
            deleted, source_usn, usn = self.before.pop(entry.object_id, _UNSEEN)
            now_live = _is_live(entry.deleted, entry.usn)
            was_live = _is_live(deleted, usn)
            if (was_live, source_usn, usn) == (now_live, entry.source_usn, entry.usn):
                continue
            object_id = str(entry.object_id)
            if was_live:
                exports.remove(object_id, source_usn)
                held = member(entry.global_key, usn)
                mine.toggle(held, -1)
                everyone.toggle(held, -1)
            if now_live:
                exports.add(object_id, entry.source_usn)
                held = member(entry.global_key, entry.usn)
                mine.toggle(held, +1)
                everyone.toggle(held, +1)
        self.requestor.export_digest, self.requestor.export_count = exports.hex, exports.count
        self.requestor.reply_digest, self.requestor.reply_count = mine.hex, mine.count
        self.master.reply_digest, self.master.reply_count = everyone.hex, everyone.count

    def save(self) -> int:
        """Write what changed; return how many entries were published (ledger rows). New
        entries and the ledger are written as plain rows (COPY on PostgreSQL), changed entries
        in one statement (see directory.bulk)."""
        self._count()
        rows = ([getattr(entry, name) for name in NEW_ENTRY_FIELDS] for entry in self.create)
        copy_insert(GlobalEntry, NEW_ENTRY_FIELDS, rows)
        update_objects(GlobalEntry, self.update, [*ENTRY_FIELDS, "changed_at"])
        published = copy_insert(LedgerEntry, LEDGER_FIELDS, self.ledger)
        self.create, self.update, self.ledger = [], [], []
        return published


def process_export(
    master: MasterConfig,
    requestor: AllowedRequestor,
    document: wire.ExportDocument,
    message: Message | None = None,
    prepared: "PreparedReply | None" = None,
) -> None:
    changes = _Changes(master, requestor, message)
    live = requestor.export_count
    superseded = document.full and _superseded(requestor, document)
    apply_changes(changes, document, claim=not superseded)
    published = changes.save()
    acknowledge(requestor, document.usn_from, document.usn_through)
    requestor.reported_master_usn = document.master_usn
    requestor.last_sequence = max(requestor.last_sequence, document.sequence)
    requestor.last_contact_at = timezone.now()
    requestor.refusals = 0
    batch = record_part(requestor, document, live)
    batch.changed += published
    answering = batch.complete and not batch.replied
    if answering and batch.full and not superseded:
        sweep_absent(changes, batch.batch, document.usn_through)
        batch.changed += changes.save()
    guard(master, requestor, batch, changes, message)
    if answering:
        if requestor.full_export_wanted and batch.full:
            requestor.full_export_wanted = False
        send_reply(master, requestor, batch, prepared)
        batch.replied = True
    batch.save()
    requestor.save(update_fields=REQUESTOR_STATE)
    master.save(update_fields=MASTER_STATE)


def _superseded(requestor: AllowedRequestor, document: wire.ExportDocument) -> bool:
    """Whether a newer full export of this requestor has arrived already (its parts are
    numbered after this one's): this one then claims nothing and sweeps nothing."""
    newer = ReceivedBatch.objects.filter(
        requestor=requestor, full=True, sequence__gt=_first_sequence(document)
    )
    # (Its own batch is recorded at its first part's sequence, never newer: excluded anyway.)
    return newer.exclude(batch=document.batch).exists()  # pragma: no mutate


def _first_sequence(document: wire.ExportDocument) -> int:
    """The sequence of a batch's first part: the parts of a batch are numbered in a row."""
    return document.sequence - document.part + 1


def apply_changes(changes: _Changes, document: wire.ExportDocument, claim: bool) -> None:
    """Apply each change newer than what the master holds for that object (rule 3). A full
    export, unless a newer one superseded it, claims the objects it lists for its sweep."""
    requestor = changes.requestor
    ids = OneOf("object_id", {change.id for change in document.changes})
    existing: dict[uuid.UUID, GlobalEntry | _NewEntry] = {
        entry.object_id: entry for entry in GlobalEntry.objects.filter(ids, requestor=requestor)
    }
    for entry in existing.values():
        changes.track(entry)
    touched: dict[uuid.UUID, GlobalEntry | _NewEntry] = {}
    for change in sorted(document.changes, key=lambda c: c.usn):
        entry = existing.get(change.id)
        if entry is None:
            entry = existing[change.id] = _new_entry(changes, change)
            changes.create.append(entry)
        # A full export lists the object only if it is not older than what the master holds.
        listed = document.full and claim and entry.full_batch != document.batch
        if listed and change.usn >= entry.source_usn:
            entry.full_batch = document.batch
            touched[change.id] = entry
        if change.usn <= entry.source_usn:
            continue
        entry.source_usn = change.usn
        touched[change.id] = entry
        if change.op == Op.DELETE:
            if not entry.deleted:
                changes.delete(entry)
        elif entry.deleted or entry.kind != change.kind or entry.attrs != change.attrs:
            entry.deleted, entry.kind, entry.attrs = False, change.kind, dict(change.attrs)
            changes.publish(entry, Op.UPSERT.value)
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


# Ranges received ahead of a gap are kept until it fills; more than this many means the gap is
# not filling (its export was lost): the oldest are dropped, and the requestor, whose requestor
# USN only ever follows the ack, sends what they covered again.
MAX_PENDING_RANGES = 100


def acknowledge(requestor: AllowedRequestor, usn_from: int, usn_through: int) -> None:
    """Advance the ack over contiguous ranges; keep ranges that arrived ahead of a gap, merged
    where they touch."""
    acked = requestor.acked_usn
    waiting: list[list[int]] = []
    for low, high in sorted([*requestor.pending_ranges, [usn_from, usn_through]]):
        if low <= acked:
            acked = max(acked, high)
        elif waiting and low <= waiting[-1][1]:
            waiting[-1][1] = max(waiting[-1][1], high)
        else:
            waiting.append([low, high])
    requestor.acked_usn = acked
    requestor.pending_ranges = waiting[-MAX_PENDING_RANGES:]


def guard(
    master: MasterConfig,
    requestor: AllowedRequestor,
    batch: ReceivedBatch,
    changes: _Changes,
    message: Message | None,
) -> None:
    """The mass-delete guard: a batch whose deletes (its full export's sweep included), over
    the parts applied so far, trip the requestor's threshold is held for an administrator
    (transport.holds) — this part's writes are rolled back with the savepoint it runs in —
    unless an administrator approved it."""
    batch.deleted += len(changes.deleted)
    threshold = holds.Threshold(
        requestor.delete_limit, requestor.delete_percent, requestor.delete_floor
    )
    if not changes.deleted or not threshold.trips(batch.deleted, batch.live_at_start):
        return
    if message is not None and holds.waived(master.organization_id, message.sender, batch.batch):
        return
    holds.judge(
        threshold,
        batch.deleted,
        batch.live_at_start,
        what=f"entries of {requestor.organization_name} at the master",
        peer=requestor.organization_name,
        sample=changes.deleted,
    )


def record_part(
    requestor: AllowedRequestor, document: wire.ExportDocument, live: int
) -> ReceivedBatch:
    batch, _ = ReceivedBatch.objects.get_or_create(
        requestor=requestor,
        batch=document.batch,
        defaults={
            "parts": document.parts,
            "full": document.full,
            "master_usn": document.master_usn,
            "master_epoch": document.master_epoch,
            "master_fingerprint": document.master_fingerprint or "",
            "sequence": _first_sequence(document),
            "live_at_start": live,
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
        changes.track(entry)
        entry.source_usn = max(entry.source_usn, usn_through)
        changes.delete(entry)
        changes.update.append(entry)


def restored_behind(master: MasterConfig, batch: ReceivedBatch) -> str | None:
    """Whether the requestor's report shows that this master's history is not the one it
    followed: it has seen USNs this master never issued, or this master issued its USN a second
    time after a restore from a backup. The reason, "" when the history is the same, or None
    when the report cannot be checked (its ledger entry was compacted away)."""
    if batch.master_epoch != master.epoch or batch.master_usn == 0:
        return ""
    if batch.master_usn > master.usn:
        return f"it has applied master USN {batch.master_usn}, but this master is at {master.usn}"
    if not batch.master_fingerprint:
        return ""
    if batch.master_usn == master.usn:
        chain = master.history
    else:
        chain = (
            LedgerEntry.objects.filter(master=master, usn=batch.master_usn)
            .values_list("chain", flat=True)
            .first()
        )
    if not chain:
        return None
    if chain != batch.master_fingerprint:
        return f"the ledger entry at master USN {batch.master_usn} is not the one it applied"
    return ""


def reply_is_full(master: MasterConfig, batch: ReceivedBatch) -> bool:
    """A full reply when the requestor starts over, fell behind purged tombstones, or the
    master's history changed under it (rule 6)."""
    reason = restored_behind(master, batch)
    if reason:
        # The master was restored from a backup: every requestor must start over against a new
        # epoch. (A requestor still on an older epoch gets a full reply anyway; its USN says
        # nothing about this epoch, and it must not rotate the epoch again under the requestors
        # already following the new one.)
        log.warning("%s: %s; starting a new epoch", batch.requestor, reason)
        start_new_epoch(master)
        return True
    return (
        reason is None
        or batch.master_usn == 0
        or batch.master_epoch != master.epoch
        or batch.master_usn < master.purged_through_usn
    )


def start_new_epoch(master: MasterConfig) -> None:
    """Requestors must start over: each gets a full reply at its next cycle."""
    master.epoch = uuid.uuid4()


@dataclass
class PreparedReply:
    """The entries of a reply read before the master's row is locked: the other requestors'
    entries with a USN in (after, through], as the committed master stood at `through`.

    Reading and encoding them is most of a reply's cost (a full reply of 20,000 entries: about
    two thirds of its 0.3 s); done under the lock, every other export waits for it. Under the
    lock, send_reply reads only what committed since `through` and puts it in place of the
    versions it replaces; whether the reply is full, and from where, is decided there as
    before, and a guess that proves wrong is read again whole."""

    requestor_id: int
    epoch: uuid.UUID
    full: bool
    after: int
    through: int
    items: list[dict]
    texts: list[bytes]


def prepare_reply(address: str, sender: str, document: wire.ExportDocument) -> PreparedReply | None:
    """The reply the export part would be answered with, read without any lock, or None when
    the part is not the last of its batch (or no master or requestor matches: refused later)."""
    if document.part != document.parts:
        return None
    master = (
        MasterConfig.objects.filter(at_address(address))
        .values("pk", "usn", "epoch", "purged_through_usn")
        .first()
    )
    if master is None:
        return None
    requestor_id = (
        AllowedRequestor.objects.filter(master_id=master["pk"], address__iexact=sender)
        .values_list("pk", flat=True)
        .first()
    )
    if requestor_id is None:
        return None
    full = (
        document.master_usn == 0
        or document.master_epoch != master["epoch"]
        or document.master_usn < master["purged_through_usn"]
    )
    after = 0 if full else document.master_usn
    items, texts = _reply_entries(master["pk"], requestor_id, after, master["usn"], full)
    return PreparedReply(requestor_id, master["epoch"], full, after, master["usn"], items, texts)


def _reply_entries(
    master_id: int, requestor_id: int, after: int, through: int, live_only: bool
) -> tuple[list[dict], list[bytes]]:
    """The reply's items (what render reads) and their JSON, in USN order."""
    entries = (
        GlobalEntry.objects.filter(master_id=master_id, usn__gt=after, usn__lte=through)
        .exclude(requestor_id=requestor_id)
        .order_by("usn")
    )
    if live_only:
        entries = entries.filter(deleted=False)
    # The attributes are copied into the payload as the database's JSON text: decoding and
    # encoding them again would cost more than everything else about an entry.
    items, texts = [], []
    for key, origin, deleted, kind, usn, attrs in entries.values_list(
        "global_key", "origin", "deleted", "kind", "usn", Cast("attrs", TextField())
    ):
        op = Op.DELETE.value if deleted else Op.UPSERT.value
        item = {"key": key, "origin": origin, "op": op, "kind": kind, "usn": usn}
        items.append(item)
        texts.append(b"".join([wire.json_bytes(item)[:-1], b',"attrs":', attrs.encode(), b"}"]))
    return items, texts


def _entries_for_reply(
    master: MasterConfig,
    requestor: AllowedRequestor,
    full: bool,
    after: int,
    prepared: PreparedReply | None,
) -> tuple[list[dict], list[bytes]]:
    """The reply's entries: those prepared before the lock, brought up to the master's USN
    now, if they were prepared for this very reply; else read now."""
    through = master.usn
    wanted = (requestor.pk, master.epoch, full, after)
    if prepared is None or (
        (prepared.requestor_id, prepared.epoch, prepared.full, prepared.after) != wanted
        or prepared.through > through
    ):
        return _reply_entries(master.pk, requestor.pk, after, through, full)
    # Deleted entries too: a tombstone since replaces the live version prepared.
    newer, newer_texts = _reply_entries(
        master.pk, requestor.pk, prepared.through, through, live_only=False
    )
    if not newer:
        return prepared.items, prepared.texts
    replaced = {item["key"] for item in newer}
    kept = [i for i, item in enumerate(prepared.items) if item["key"] not in replaced]
    items = [prepared.items[i] for i in kept]
    texts = [prepared.texts[i] for i in kept]
    # (_reply_entries gives as many texts as items: `strict` changes nothing.)
    for item, text in zip(newer, newer_texts, strict=True):  # pragma: no mutate
        if not (full and item["op"] == Op.DELETE.value):
            items.append(item)
            texts.append(text)
    return items, texts


def send_reply(
    master: MasterConfig,
    requestor: AllowedRequestor,
    batch: ReceivedBatch,
    prepared: PreparedReply | None = None,
) -> None:
    """Queue the reply to a complete export batch, split by the master's attachment size. The
    last part carries the digests the requestor checks its copy against."""
    full = reply_is_full(master, batch)
    export_all = requestor.full_export_wanted
    after = 0 if full else batch.master_usn
    through = master.usn
    items, texts = _entries_for_reply(master, requestor, full, after, prepared)
    sender = master.dn if requestor.address_type == AddressType.EX else master.address
    reply_batch = str(uuid.uuid4())
    # Sequences follow the clock as well as the counter: a master restored from a backup still
    # numbers its replies above everything it sent before, or requestors refuse them as replays.
    first_sequence = signing.next_sequence(master.sequence)
    holdings = Tally.of(master.reply_digest, master.reply_count).without(
        Tally.of(requestor.reply_digest, requestor.reply_count)
    )
    verification = {
        "holdings": holdings.as_dict(),
        "exports": {"digest": requestor.export_digest, "count": requestor.export_count},
        "changed": batch.changed,
    }

    def render(chunks: list[list[dict]], index: int) -> dict:
        chunk_after = after if index == 0 else chunks[index - 1][-1]["usn"]
        last = index == len(chunks) - 1
        return {
            "protocol": PROTOCOL_VERSION,
            "type": MessageKind.REPLY,
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
            # Known for the last part's `through`, the master's USN now.
            "fingerprint": master.history if last and through else None,
            "verification": verification if last else None,
            **({"export_all": True} if export_all else {}),
            "entries": chunks[index],
        }

    parts = wire.split(items, master.max_attachment_size, render, texts)
    for document, payload in parts:
        outbox.queue(master.organization_id, sender, requestor.address, document, payload)
    master.sequence = first_sequence + len(parts) - 1
    requestor.sent_master_usn = through
