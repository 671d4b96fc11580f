"""A batch as one story: everything one export batch did, everywhere in this installation.

A mistaken change ("ORG3 hid eight people this morning") is traced to its cause in one place:
the origin organization's run and who started it, the master's guard and who approved the
batch, what the master stamped (its ledger rows, which point at the batch's messages), the
master's reply, and what each organization following that master imported of it. An import is
matched to the batch by (global key, master USN): the ImportedChange rows an organization wrote
for exactly the versions this batch made. A version changed again before an organization's
next cycle reaches it with its later USN only, and counts with the later batch.

A reply held by an organization's import guard has written nothing yet. It concerns this batch
when the master USNs one of its parts covers, (after, through], include one of the batch's:
exact for the changes it carries (a full reply covers every USN, so it concerns every batch
before it). Once approved, what it wrote counts like any other import.

`story()` answers for a reply batch too (the import guard holds a reply by its own batch id):
the export batches whose changes it carries, so that a held reply leads to its cause.

Who may see what, as in console.explain: `can_read(organization_id)` tells which organizations
the asking user may read; a part about another organization says only that it is not shown.

The number of queries is constant, whatever the number of entries and organizations: counts
come from aggregates, names from samples of at most SAMPLE rows per organization and change.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from django.db.models import Count, Exists, F, Max, Min, OuterRef, Q, Subquery
from django.db.models.expressions import Window
from django.db.models.fields.json import KT
from django.db.models.functions import Lower, RowNumber
from django.urls import reverse
from django.utils import timezone

from directory.models import Organization
from master.models import AllowedRequestor, LedgerEntry, MasterConfig
from requestor.models import ImportedChange, RequestorConfig, Run
from transport.constants import Direction, MessageKind, Op
from transport.models import Hold, Message
from transport.registry import at_address

# Names listed per organization and kind of change (the counts are always whole).
SAMPLE = 20
# Export batches listed for one reply.
CARRIED = 50
MESSAGE_FIELDS = (
    "pk",
    "direction",
    "status",
    "kind",
    "organization_id",
    "sender",
    "recipient",
    "batch",
    "part",
    "parts",
    "usn_from",
    "usn_through",
    "summary",
    "error",
    "size",
    "created_at",
    "processed_at",
)
# The order in which an organization's changes are told.
OPS = [op.value for op in ImportedChange.Op]


class BatchNotFound(LookupError):
    """No export or reply batch of that id is known in this installation."""


def parse_batch(value) -> uuid.UUID:
    """A batch id as typed, or ValueError saying what one looks like."""
    text = str(value or "").strip()
    try:
        if "\x00" in text or len(text) > 64:
            raise ValueError
        return uuid.UUID(text)
    except ValueError:
        raise ValueError(
            "Not a batch id: give the UUID of a batch, as shown on a run or a message."
        ) from None


@dataclass
class Named:
    """One entry a change concerned, as the story lists it."""

    name: str
    key: str
    usn: int | None = None
    address: str = ""
    detail: str = ""
    at: datetime | None = None


@dataclass
class Origin:
    """The organization that exported the batch, its run and the parts it sent."""

    name: str
    organization: Organization | None  # None: in another installation
    run: Run | None = None
    full: bool | None = None
    parts: list[Message] = field(default_factory=list)  # as sent
    replies: list[Message] = field(default_factory=list)  # the master's replies, as received
    shown: bool = True

    @property
    def organization_id(self) -> int | None:
        return self.organization.pk if self.organization else None

    @property
    def local(self) -> bool:
        return self.organization is not None


@dataclass
class Guard:
    """The master's mass-delete guard: its holds of the batch and the quarantine they set."""

    holds: list[Hold] = field(default_factory=list)
    requestor: AllowedRequestor | None = None
    shown: bool = True

    @property
    def quarantined(self) -> bool:
        """The requestor is quarantined while a hold of this batch waits (lifted when it is
        decided)."""
        return bool(
            self.requestor is not None
            and self.requestor.quarantined
            and any(hold.decision == Hold.Decision.PENDING for hold in self.holds)
        )


@dataclass
class Stamped:
    """What the master made of the batch: its ledger rows and its replies."""

    master: MasterConfig
    organization: Organization
    received: list[Message] = field(default_factory=list)
    upserts: int = 0
    deletes: int = 0
    usn_from: int | None = None
    usn_through: int | None = None
    at: datetime | None = None
    upserted: list[Named] = field(default_factory=list)
    deleted: list[Named] = field(default_factory=list)
    replies: list[Message] = field(default_factory=list)  # as sent
    shown: bool = True

    @property
    def organization_id(self) -> int:
        return self.organization.pk

    @property
    def count(self) -> int:
        return self.upserts + self.deletes


@dataclass
class Group:
    """The changes of one kind the batch made in one organization."""

    op: str
    count: int = 0
    runs: list[int] = field(default_factory=list)
    first_at: datetime | None = None
    last_at: datetime | None = None
    sample: list[Named] = field(default_factory=list)

    @property
    def label(self) -> str:
        return ImportedChange.Op(self.op).label

    @property
    def words(self) -> str:
        return self.op.replace("_", " ")


@dataclass
class Imported:
    """What one organization following the master imported of the batch."""

    organization: Organization
    config: RequestorConfig
    groups: list[Group] = field(default_factory=list)
    reply_holds: list[Hold] = field(default_factory=list)  # its guard's holds covering the batch
    waiting_behind: Hold | None = None  # a pending reply hold that the batch waits behind
    state: str = ""  # done, partly, waiting or nothing
    line: str = ""  # the story's line about it
    shown: bool = True

    @property
    def organization_id(self) -> int:
        return self.organization.pk

    @property
    def count(self) -> int:
        return sum(group.count for group in self.groups)


@dataclass
class Carried:
    """An export batch whose changes a reply carries."""

    batch: uuid.UUID | None
    origin: str
    count: int
    deletes: int
    usn_from: int
    usn_through: int


@dataclass
class Story:
    """The whole effect of one batch, part by part, and the same in a few lines."""

    batch: uuid.UUID
    kind: str  # export or reply
    origin: Origin | None = None
    guard: Guard | None = None
    master: Stamped | None = None
    master_name: str = ""  # known even when the master is in another installation
    imports: list[Imported] = field(default_factory=list)
    # A reply batch: its parts, the organization it answered, its hold, what it carries.
    reply_parts: list[Message] = field(default_factory=list)
    reply_to: Organization | None = None
    reply_holds: list[Hold] = field(default_factory=list)
    carried: list[Carried] = field(default_factory=list)
    more_carried: bool = False
    carried_shown: bool = True
    purged: bool = False  # its messages are no longer in the archive
    names: dict[int, str] = field(default_factory=dict)  # the organizations involved
    readable: set[int] = field(default_factory=set)
    lines: list[str] = field(default_factory=list)

    @property
    def involved(self) -> set[int]:
        return set(self.names)

    @property
    def day(self) -> date | None:
        """The day it happened: times on that day are told without their date."""
        moment = None
        if self.origin is not None and self.origin.run is not None:
            moment = self.origin.run.started_at
        elif self.master is not None and self.master.at is not None:
            moment = self.master.at
        elif self.reply_parts:
            moment = self.reply_parts[0].created_at
        return timezone.localtime(moment).date() if moment else None


def story(batch: uuid.UUID, can_read: Callable[[int], bool] | None = None) -> Story:
    """The story of an export batch (or of a reply batch), with the parts `can_read` allows."""
    can_read = can_read or (lambda organization_id: True)
    messages = list(
        Message.objects.filter(batch=batch, kind__in=[MessageKind.EXPORT, MessageKind.REPLY])
        .select_related("organization")
        .only(*MESSAGE_FIELDS, "organization__name")
        .order_by("created_at", "pk")
    )
    run = (
        Run.objects.filter(batch=batch)
        .select_related("config__organization", "requested_by")
        .first()
    )
    exports = [m for m in messages if m.kind == MessageKind.EXPORT]
    replies = [m for m in messages if m.kind == MessageKind.REPLY]
    if run is not None or exports:
        result = _export_story(batch, run, exports)
    elif replies:
        result = _reply_story(batch, replies)
    else:
        raise BatchNotFound(f"No batch {batch} is known in this installation.")
    _redact(result, can_read)
    result.lines = _lines(result) if result.kind == MessageKind.EXPORT else _reply_lines(result)
    return result


# --- An export batch ---------------------------------------------------------------------------


def _export_story(batch: uuid.UUID, run: Run | None, exports: list[Message]) -> Story:
    result = Story(batch, MessageKind.EXPORT.value)
    sent = [m for m in exports if m.direction == Direction.OUTBOUND]
    received = [m for m in exports if m.direction == Direction.INBOUND]
    origin = result.origin = _origin(run, sent, received)
    # The master's ledger rows point at the batch's messages: once the archive purged them
    # (INTERORG_ARCHIVE_RETENTION_DAYS), only the run is left to tell.
    result.purged = not exports
    master, requestor = _master(sent, received)
    start = min((m.created_at for m in exports), default=run.started_at if run else None)
    replies = _replies(batch, start)
    if origin.local:
        origin.replies = [
            m
            for m in replies
            if m.direction == Direction.INBOUND and m.organization_id == origin.organization_id
        ]
    result.guard = Guard(
        list(
            Hold.objects.filter(kind=MessageKind.EXPORT, batch=batch)
            .select_related("decided_by", "organization")
            .order_by("held_at", "pk")
        ),
        requestor,
    )
    if master is None:
        result.master_name = _remote_master(origin)
    else:
        result.master_name = master.organization.name
        result.master = _stamped(batch, master, received, replies)
        result.imports = _imports(batch, result.master, origin)
    _involve(result)
    return result


def _origin(run: Run | None, sent: list[Message], received: list[Message]) -> Origin:
    organization = run.config.organization if run else (sent[0].organization if sent else None)
    if organization is not None:
        name = organization.name
    else:
        sender = received[0].summary.get("sender") if received else None
        name = sender.get("organization") if isinstance(sender, dict) else None
        name = str(name or "an organization of another installation")
    full = run.full_export if run is not None else None
    if full is None and (sent or received):
        full = bool((sent or received)[0].summary.get("full"))
    return Origin(name, organization, run, full, sent)


def _master(sent: list[Message], received: list[Message]):
    """The master of this installation the batch went to, and the origin's requestor there."""
    if received and received[0].organization_id is not None:
        organization_id, sender = received[0].organization_id, received[0].sender
        requestor = (
            AllowedRequestor.objects.filter(
                master__organization_id=organization_id, address__iexact=sender
            )
            .select_related("master__organization", "quarantined_by")
            .first()
        )
        if requestor is not None:
            return requestor.master, requestor
        where = Q(organization_id=organization_id)
    elif received or sent:
        # Sent and not received yet, or received and refused before a master took it.
        where = at_address((received or sent)[0].recipient)
    else:
        return None, None
    return MasterConfig.objects.select_related("organization").filter(where).first(), None


def _remote_master(origin: Origin) -> str:
    if origin.run is not None:
        return origin.run.config.master_address
    return origin.parts[0].recipient if origin.parts else ""


def _replies(batch: uuid.UUID, start: datetime | None) -> list[Message]:
    """Every copy of the master's replies to the batch (sent and received), notices too."""
    if start is None:
        return []
    # (A reply comes after its export: the creation time bounds the scan of the archive.)
    return list(
        Message.objects.filter(
            kind=MessageKind.REPLY, created_at__gte=start, summary__in_reply_to=str(batch)
        )
        .only(*MESSAGE_FIELDS)
        .order_by("created_at", "pk")
    )


def _ledger(batch: uuid.UUID, master: MasterConfig):
    """The master's ledger rows written from the batch's messages."""
    return LedgerEntry.objects.filter(
        master=master, message__batch=batch, message__kind=MessageKind.EXPORT
    )


def _stamped(batch, master: MasterConfig, received, replies) -> Stamped:
    stamped = Stamped(master, master.organization, received)
    stamped.replies = [
        m
        for m in replies
        if m.direction == Direction.OUTBOUND and m.organization_id == master.organization_id
    ]
    ledger = _ledger(batch, master)
    totals = ledger.aggregate(
        upserts=Count("pk", filter=Q(op=Op.UPSERT)),
        deletes=Count("pk", filter=Q(op=Op.DELETE)),
        usn_from=Min("usn"),
        usn_through=Max("usn"),
        at=Min("created_at"),
    )
    for name, value in totals.items():
        setattr(stamped, name, value)
    if stamped.upserts:
        rows = ledger.filter(op=Op.UPSERT).order_by("usn")[:SAMPLE]
        rows = rows.values_list("usn", "global_key", KT("attrs__display_name"))
        stamped.upserted = [Named(name or key, key, usn) for usn, key, name in rows]
    if stamped.deletes:
        # A tombstone carries no attributes: the name is the entry's version before it.
        before = LedgerEntry.objects.filter(
            master=master,
            global_key=OuterRef("global_key"),
            usn__lt=OuterRef("usn"),
            op=Op.UPSERT,
        ).order_by("-usn")
        rows = (
            ledger.filter(op=Op.DELETE)
            .annotate(name=Subquery(before.values(name=KT("attrs__display_name"))[:1]))
            .order_by("usn")[:SAMPLE]
        )
        stamped.deleted = [
            Named(name or key, key, usn)
            for usn, key, name in rows.values_list("usn", "global_key", "name")
        ]
    return stamped


def _following(master: MasterConfig, origin: Origin) -> list[RequestorConfig]:
    """The requestors of this installation that send to this master, but the batch's origin
    (the master never sends an organization its own entries)."""
    configs = (
        RequestorConfig.objects.annotate(lowered=Lower("master_address"))
        .filter(lowered__in=[master.address.lower(), master.dn.lower()])
        .exclude(organization__name__iexact=origin.name)
        .select_related("organization")
        .order_by("organization__name")
    )
    return list(configs)


def _imports(batch, stamped: Stamped, origin: Origin) -> list[Imported]:
    imports = {
        config.organization_id: Imported(config.organization, config)
        for config in _following(stamped.master, origin)
    }
    if imports and stamped.count:
        _count_imports(batch, stamped, imports)
        _reply_holds(stamped, imports)
    for imported in imports.values():
        imported.state = _state(imported, stamped)
    return list(imports.values())


def _imported_changes(batch, stamped: Stamped, organization_ids: list[int]):
    """The ImportedChange rows of exactly the versions the batch made."""
    versions = _ledger(batch, stamped.master).filter(
        global_key=OuterRef("global_key"), usn=OuterRef("master_usn")
    )
    return ImportedChange.objects.filter(
        organization_id__in=organization_ids,
        master_usn__gte=stamped.usn_from,
        master_usn__lte=stamped.usn_through,
    ).filter(Exists(versions))


def _count_imports(batch, stamped: Stamped, imports: dict[int, Imported]) -> None:
    changes = _imported_changes(batch, stamped, list(imports))
    groups: dict[tuple[int, str], Group] = {}
    totals = (
        changes.values("organization_id", "op", "run_id")
        .annotate(count=Count("pk"), first_at=Min("at"), last_at=Max("at"))
        .order_by("organization_id", "op", "run_id")
    )
    for row in totals:
        group = groups.setdefault((row["organization_id"], row["op"]), Group(row["op"]))
        group.count += row["count"]
        if row["run_id"] is not None:
            group.runs.append(row["run_id"])
        group.first_at = min(filter(None, [group.first_at, row["first_at"]]))
        group.last_at = max(filter(None, [group.last_at, row["last_at"]]))
    sample = (
        changes.annotate(
            row=Window(
                RowNumber(),
                partition_by=[F("organization_id"), F("op")],
                order_by=[F("at").asc(), F("pk").asc()],
            )
        )
        .filter(row__lte=SAMPLE)
        .values_list(
            "organization_id",
            "op",
            "display_name",
            "global_key",
            "master_usn",
            "primary_smtp",
            "detail",
            "at",
        )
    )
    for organization_id, op, name, key, usn, address, detail, at in sample:
        groups[organization_id, op].sample.append(
            Named(name or address or key, key, usn, address, detail, at)
        )
    for (organization_id, _op), group in groups.items():
        group.sample.sort(key=lambda named: (named.at, named.usn or 0))
        imports[organization_id].groups.append(group)
    for imported in imports.values():
        imported.groups.sort(key=lambda group: OPS.index(group.op))


def _reply_holds(stamped: Stamped, imports: dict[int, Imported]) -> None:
    """The import guards' holds of replies covering the batch's USNs, and the pending one its
    changes wait behind in an organization that has not applied them yet."""
    covering = Message.objects.filter(
        direction=Direction.INBOUND,
        kind=MessageKind.REPLY,
        organization_id=OuterRef("organization_id"),
        batch=OuterRef("batch"),
        usn_from__lt=stamped.usn_through,
        usn_through__gte=stamped.usn_from,
    )
    holds = (
        Hold.objects.filter(kind=MessageKind.REPLY, organization_id__in=list(imports))
        .annotate(covers=Exists(covering))
        .filter(Q(covers=True) | Q(decision=Hold.Decision.PENDING))
        .select_related("decided_by")
        .order_by("held_at", "pk")
    )
    for hold in holds:
        imported = imports[hold.organization_id]
        if hold.covers:
            imported.reply_holds.append(hold)
        elif imported.waiting_behind is None:
            imported.waiting_behind = hold


def _state(imported: Imported, stamped: Stamped) -> str:
    """done: it applied every USN of the batch; partly: some; waiting: none yet; nothing: the
    master stamped nothing of the batch."""
    applied = imported.config.master_usn
    if not stamped.count:
        return "nothing"
    if applied >= stamped.usn_through:
        return "done"
    return "partly" if imported.groups or applied >= stamped.usn_from else "waiting"


# --- The story in a few lines ------------------------------------------------------------------


def _when(moment: datetime | None, day: date | None = None) -> str:
    if moment is None:
        return "—"
    local = timezone.localtime(moment)
    return local.strftime("%H:%M" if local.date() == day else "%Y-%m-%d %H:%M")


def _who(hold: Hold) -> str:
    return hold.decided_by.get_username() if hold.decided_by else "an administrator"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _not_shown(name: str, role: str = "") -> str:
    return f"{name}{role}: not shown (you cannot read {name})"


def _lines(result: Story) -> list[str]:
    """Origin, guard, master, then one line per organization: "ORG3: 8 hidden at 12:04 by
    run 311; 0 added"."""
    day = result.day
    origin, guard, master = result.origin, result.guard, result.master
    lines = [_origin_line(origin, day) if origin.shown else _not_shown(origin.name)]
    if result.purged:
        lines.append(
            "Its messages are no longer in the archive (INTERORG_ARCHIVE_RETENTION_DAYS): what "
            "the master stamped of it, and what the others imported, is not known any more"
        )
        return lines
    if master is None:
        lines.append(
            f"Master {result.master_name or '(unknown)'}: in another installation; what it "
            "stamped, and what the other organizations imported of it, is not visible here"
        )
        return lines
    if not master.shown:
        master_line = _not_shown(master.organization.name, " (master)")
        return [*lines, master_line, *_import_lines(result, day)]
    lines.extend(_guard_lines(guard, master, day))
    if not master.received:
        lines.append(f"{master.organization.name} (master): the batch has not arrived yet")
    elif master.count:
        lines.append(
            f"{master.organization.name} (master): stamped {_plural(master.upserts, 'upsert')} "
            f"and {_plural(master.deletes, 'delete')}, USNs {master.usn_from}–"
            f"{master.usn_through}, at {_when(master.at, day)}"
        )
    else:
        lines.append(f"{master.organization.name} (master): stamped nothing of this batch")
    return [*lines, *_import_lines(result, day)]


def _origin_line(origin: Origin, day) -> str:
    run = origin.run
    if run is None:
        where = "" if origin.local else " (in another installation)"
        return f"{origin.name}{where}: exported this batch"
    by = f" by {run.requested_by.get_username()}" if run.requested_by else ""
    full = ", a full export" if run.full_export else ""
    return (
        f"{origin.name}: run {run.pk} ({run.get_trigger_display()}{by}) at "
        f"{_when(run.started_at, day)} exported {_plural(run.exported, 'change')}{full}; "
        f"{run.get_status_display().lower()}"
    )


def _guard_lines(guard: Guard, master: Stamped, day) -> list[str]:
    name = master.organization.name
    if not guard.holds:
        if not master.received:
            return []
        requestor = guard.requestor
        if requestor is None:
            return [f"{name} (guard): passed"]
        return [
            f"{name} (guard): passed ({_plural(master.deletes, 'delete')}; it holds more than "
            f"{requestor.delete_limit}, or more than {requestor.delete_percent} % from "
            f"{requestor.delete_floor} on)"
        ]
    lines = []
    for hold in guard.holds:
        line = (
            f"{name} (guard): held at {_when(hold.held_at, day)} "
            f"({hold.deletes} deletes of {hold.live})"
        )
        if hold.decision == Hold.Decision.PENDING:
            line += "; waiting for an administrator"
            if guard.quarantined:
                line += f"; {guard.requestor.organization_name} is quarantined meanwhile"
        else:
            line += (
                f"; {hold.get_decision_display().lower()} by {_who(hold)} at "
                f"{_when(hold.decided_at, day)}"
            )
        lines.append(line)
    return lines


def _import_lines(result: Story, day) -> list[str]:
    for imported in result.imports:
        imported.line = (
            _import_line(imported, result.master, day)
            if imported.shown
            else _not_shown(imported.organization.name)
        )
    return [imported.line for imported in result.imports]


def _import_line(imported: Imported, stamped: Stamped, day) -> str:
    name = imported.organization.name
    applied = imported.config.master_usn
    if imported.state == "nothing":
        return f"{name}: nothing to import (the master stamped nothing of this batch)"
    parts = []
    for group in imported.groups:
        runs = ", ".join(str(pk) for pk in group.runs)
        by = f" by run{'s' if len(group.runs) > 1 else ''} {runs}" if group.runs else ""
        parts.append(f"{group.count} {group.words} at {_when(group.first_at, day)}{by}")
    if imported.state == "waiting":
        parts.append(
            f"nothing yet: it applied master USNs through {applied}; the batch's are "
            f"{stamped.usn_from}–{stamped.usn_through}"
        )
    elif not parts:
        parts.append(
            "nothing at this batch's USNs (an entry changed again before its next cycle came "
            "with its later USN)"
        )
    elif not any(group.op == ImportedChange.Op.ADDED for group in imported.groups):
        parts.append("0 added")
    if imported.state == "partly":
        parts.append(f"the rest waits (it applied master USNs through {applied})")
    for hold in imported.reply_holds:
        text = f"a reply held by its import guard at {_when(hold.held_at, day)}"
        if hold.decision == Hold.Decision.PENDING:
            text += ", waiting for an administrator"
        else:
            text += (
                f", {hold.get_decision_display().lower()} by {_who(hold)} at "
                f"{_when(hold.decided_at, day)}"
            )
        parts.append(text)
    if imported.waiting_behind is not None and imported.state in ("waiting", "partly"):
        held_at = _when(imported.waiting_behind.held_at, day)
        parts.append(f"waits behind a reply held by its import guard since {held_at}")
    return f"{name}: " + "; ".join(parts)


# --- A reply batch -----------------------------------------------------------------------------


def _reply_story(batch: uuid.UUID, parts: list[Message]) -> Story:
    """A reply of the master: the organization it answered, the import guard's hold of it, and
    the export batches whose changes it carries (known when the master is here)."""
    result = Story(batch, MessageKind.REPLY.value)
    received = [m for m in parts if m.direction == Direction.INBOUND]
    sent = [m for m in parts if m.direction == Direction.OUTBOUND]
    result.reply_parts = received or sent
    if received:
        result.reply_to = received[0].organization
    masters = MasterConfig.objects.select_related("organization")
    if sent:
        master = masters.filter(organization_id=sent[0].organization_id).first()
    else:
        master = masters.filter(at_address(parts[0].sender)).first()
    result.master_name = master.organization.name if master else parts[0].sender
    if result.reply_to is not None:
        result.reply_holds = list(
            Hold.objects.filter(
                kind=MessageKind.REPLY, organization=result.reply_to, batch=batch
            ).select_related("decided_by")
        )
    if master is not None:
        result.master = Stamped(master, master.organization, replies=sent)
        _carried(result, master, parts)
    _involve(result)
    return result


def _carried(result: Story, master: MasterConfig, parts: list[Message]) -> None:
    ranges = [(m.usn_from, m.usn_through) for m in parts if m.usn_from is not None]
    if not ranges:
        return
    after, through = min(r[0] for r in ranges), max(r[1] for r in ranges)
    ledger = LedgerEntry.objects.filter(master=master, usn__gt=after, usn__lte=through)
    if result.reply_to is not None:
        # A reply never carries the answered organization's own entries.
        ledger = ledger.exclude(origin__iexact=result.reply_to.name)
    rows = (
        ledger.values("message__batch", "origin")
        .annotate(
            count=Count("pk"),
            deletes=Count("pk", filter=Q(op=Op.DELETE)),
            usn_from=Min("usn"),
            usn_through=Max("usn"),
        )
        .order_by("usn_from")[: CARRIED + 1]
    )
    result.carried = [
        Carried(
            row["message__batch"],
            row["origin"],
            row["count"],
            row["deletes"],
            row["usn_from"],
            row["usn_through"],
        )
        for row in rows
    ]
    result.more_carried = len(result.carried) > CARRIED
    del result.carried[CARRIED:]


def _reply_lines(result: Story) -> list[str]:
    day = result.day
    to = result.reply_to.name if result.reply_to else "a requestor of another installation"
    first = result.reply_parts[0] if result.reply_parts else None
    span = f", covering master USNs {first.usn_range}" if first and first.usn_range else ""
    lines = [f"Reply of the master {result.master_name} to {to}{span}"]
    if result.reply_to is not None and result.reply_to.pk not in result.readable:
        lines.append(_not_shown(to))
    for hold in result.reply_holds:
        line = f"{to} (import guard): held at {_when(hold.held_at, day)} "
        line += f"(it would remove {hold.deletes} of {hold.live} contacts)"
        if hold.decision == Hold.Decision.PENDING:
            line += "; waiting for an administrator"
        else:
            line += (
                f"; {hold.get_decision_display().lower()} by {_who(hold)} at "
                f"{_when(hold.decided_at, day)}"
            )
        lines.append(line)
    if result.master is None:
        lines.append(
            "The master is in another installation: which batches it carries is not known here"
        )
    elif not result.carried_shown:
        lines.append(_not_shown(result.master.organization.name, " (master)"))
    for carried in result.carried:
        lines.append(
            f"Carries {_plural(carried.count, 'change')} ({carried.deletes} deletes) of "
            f"{carried.origin}'s batch {carried.batch or '(none: made at the master)'}"
        )
    if result.more_carried:
        lines.append(f"… and changes of more batches (the first {CARRIED} are listed)")
    return lines


# --- Who may see what --------------------------------------------------------------------------


def _involve(result: Story) -> None:
    """The organizations of this installation the story concerns."""
    found: list[Organization] = []
    if result.origin is not None and result.origin.organization is not None:
        found.append(result.origin.organization)
    if result.master is not None:
        found.append(result.master.organization)
    found.extend(imported.organization for imported in result.imports)
    if result.reply_to is not None:
        found.append(result.reply_to)
    result.names = {organization.pk: organization.name for organization in found}


def _redact(result: Story, can_read: Callable[[int], bool]) -> None:
    """Parts about an organization the user cannot read are not shown: their flag says so,
    and what they hold is dropped."""
    result.readable = {pk for pk in result.names if can_read(pk)}
    origin, master = result.origin, result.master
    if origin is not None and origin.local and origin.organization_id not in result.readable:
        origin.shown, origin.run, origin.parts, origin.replies = False, None, [], []
    if master is not None and master.organization_id not in result.readable:
        master.shown = False
        master.received, master.replies, master.upserted, master.deleted = [], [], [], []
        if result.guard is not None:
            result.guard = Guard(shown=False)
    # What a reply carries (whose changes, how many) is what the organization it answered
    # received anyway.
    answered = result.reply_to is not None and result.reply_to.pk in result.readable
    if master is not None and not master.shown and not answered:
        result.carried, result.more_carried, result.carried_shown = [], False, False
    for imported in result.imports:
        if imported.organization_id not in result.readable:
            imported.shown, imported.groups, imported.reply_holds = False, [], []
            imported.waiting_behind = None
    if result.reply_to is not None and result.reply_to.pk not in result.readable:
        result.reply_parts, result.reply_holds = [], []


# --- As data -----------------------------------------------------------------------------------


def as_dict(result: Story) -> dict:
    """The story as JSON-ready data (the API's answer); parts not shown hold nothing."""
    names = result.names
    return {
        "batch": str(result.batch),
        "kind": result.kind,
        "lines": list(result.lines),
        "origin": _origin_dict(result.origin, names) if result.origin else None,
        "guard": _guard_dict(result.guard, names) if result.guard else None,
        "master_name": result.master_name,
        "master": _master_dict(result.master, names) if result.master else None,
        "organizations": [_import_dict(imported, names) for imported in result.imports],
        "reply": _reply_dict(result, names) if result.kind == MessageKind.REPLY else None,
    }


def _message_dict(message: Message, names: dict[int, str]) -> dict:
    organization = names.get(message.organization_id, "")
    return {
        "id": message.pk,
        "organization": organization,
        "direction": message.direction,
        "status": message.status,
        "kind": message.kind,
        "sender": message.sender,
        "recipient": message.recipient,
        "part": message.part,
        "parts": message.parts,
        "usn_from": message.usn_from,
        "usn_through": message.usn_through,
        "count": message.summary.get("count") if isinstance(message.summary, dict) else None,
        "created_at": message.created_at,
        "error": message.error,
        "href": reverse("console:message", kwargs={"org": organization, "pk": message.pk})
        if organization
        else "",
    }


def _named_dict(named: Named) -> dict:
    return {
        "name": named.name,
        "key": named.key,
        "usn": named.usn,
        "address": named.address,
        "detail": named.detail,
        "at": named.at,
    }


def _hold_dict(hold: Hold, names: dict[int, str]) -> dict:
    return {
        "id": hold.pk,
        "organization": names.get(hold.organization_id, ""),
        "kind": hold.kind,
        "batch": str(hold.batch),
        "held_at": hold.held_at,
        "reason": hold.reason,
        "deletes": hold.deletes,
        "live": hold.live,
        "decision": hold.decision,
        "decided_by": hold.decided_by.get_username() if hold.decided_by else None,
        "decided_at": hold.decided_at,
    }


def _origin_dict(origin: Origin, names) -> dict:
    run = origin.run
    return {
        "organization": origin.name,
        "local": origin.local,
        "shown": origin.shown,
        "full_export": origin.full if origin.shown else None,
        "run": None
        if run is None
        else {
            "id": run.pk,
            "trigger": run.trigger,
            "requested_by": run.requested_by.get_username() if run.requested_by else None,
            "status": run.status,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "parts_sent": run.parts_sent,
            "exported": run.exported,
            "imported": run.imported,
            "updated": run.updated,
            "deleted": run.deleted,
            "conflicts": run.conflicts,
            "error": run.error,
        },
        "parts": [_message_dict(m, names) for m in origin.parts],
        "replies": [_message_dict(m, names) for m in origin.replies],
    }


def _guard_dict(guard: Guard, names) -> dict:
    requestor = guard.requestor if guard.shown else None
    return {
        "shown": guard.shown,
        "holds": [_hold_dict(hold, names) for hold in guard.holds],
        "quarantined": guard.quarantined,
        "quarantine_reason": requestor.quarantine_reason if guard.quarantined else "",
    }


def _master_dict(stamped: Stamped, names) -> dict:
    shown = stamped.shown
    return {
        "organization": stamped.organization.name,
        "shown": shown,
        "upserts": stamped.upserts if shown else None,
        "deletes": stamped.deletes if shown else None,
        "usn_from": stamped.usn_from if shown else None,
        "usn_through": stamped.usn_through if shown else None,
        "at": stamped.at if shown else None,
        "upserted": [_named_dict(named) for named in stamped.upserted],
        "deleted": [_named_dict(named) for named in stamped.deleted],
        "received": [_message_dict(m, names) for m in stamped.received],
        "replies": [_message_dict(m, names) for m in stamped.replies],
    }


def _import_dict(imported: Imported, names) -> dict:
    shown = imported.shown
    return {
        "organization": imported.organization.name,
        "shown": shown,
        "state": imported.state if shown else None,
        "line": imported.line,
        "master_usn": imported.config.master_usn if shown else None,
        "changes": [
            {
                "op": group.op,
                "label": group.label,
                "count": group.count,
                "runs": list(group.runs),
                "first_at": group.first_at,
                "last_at": group.last_at,
                "entries": [_named_dict(named) for named in group.sample],
            }
            for group in imported.groups
        ],
        "reply_holds": [_hold_dict(hold, names) for hold in imported.reply_holds],
        "waiting_behind": _hold_dict(imported.waiting_behind, names)
        if imported.waiting_behind
        else None,
    }


def _reply_dict(result: Story, names) -> dict:
    return {
        "to": result.reply_to.name if result.reply_to else None,
        "parts": [_message_dict(m, names) for m in result.reply_parts],
        "holds": [_hold_dict(hold, names) for hold in result.reply_holds],
        "carries": [
            {
                "batch": str(carried.batch) if carried.batch else None,
                "origin": carried.origin,
                "count": carried.count,
                "deletes": carried.deletes,
                "usn_from": carried.usn_from,
                "usn_through": carried.usn_through,
            }
            for carried in result.carried
        ],
        "more": result.more_carried,
    }
