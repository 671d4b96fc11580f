"""Preview of a requestor's next cycle (docs/protocol.md, rule 11: every cycle can be previewed
without effect): what its export would send, each change with its reason, and what the replies
received but not applied yet would do to the contacts, and whether a guard would hold either.

The preview runs the real code inside a transaction that is always rolled back, so that it
shows exactly what a cycle would do and leaves every table as it was: the export is built by
requestor.export.build_export after the scope restatement (requestor.scope), and each waiting
reply goes through the inbox as a worker would take it (transport.inbox.process_message:
signature, order, the import guard, requestor.importer.apply_reply), observed before and after.
Outside the database it only reads: an LDAP directory is scanned into the mirror, but nothing
is written to it (the contacts' publication waits for a commit that never comes), and nothing
is sent.

Why a change is exported comes from comparing the scope the master holds this organization's
entries under (RequestorConfig.exported_scope) with the scope now, and from each recipient's
state. Which attributes an upsert changes, and whether the master's mass-delete guard would
hold the export, only the master knows: when it runs in this installation the preview asks it
through transport.peers, which the master app fills at start-up, since `requestor` never imports
`master` (the same way the inbox dispatches to either without importing them). With the master
elsewhere the preview says what it cannot know.
"""

import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from directory import backends
from directory.bulk import OneOf
from directory.constants import GENERAL_ATTRIBUTES, Kind
from directory.models import Container, Organization, Recipient
from requestor.constants import ImportOp, PreviewOp, PreviewReason
from requestor.cycle import CycleRunning, SyncError, follow_import_options, lock_config
from requestor.export import build_export
from requestor.models import Conflict, FilteredEntry, RequestorConfig, Run
from requestor.scope import UNKNOWN_SCOPE, Scope
from transport import peers, wire
from transport.constants import Direction, MessageKind, Op, Status
from transport.inbox import process_message
from transport.models import Hold, Message

log = logging.getLogger(__name__)

# Inbound messages of a requestor that the next cycle may still apply.
WAITING = (Status.RECEIVED, Status.DEFERRED, Status.HELD)
# Rounds of the inbox at most (a deferred part runs again after an earlier one was applied).
MAX_ROUNDS = 100
CONTACT_STATE = ["global_key", "origin_organization", "usn", *GENERAL_ATTRIBUTES]


@dataclass
class ExportChange:
    """One change of the next export, and why it is there. `causes` name what made it
    (container, kind, trust_level, hidden, suffix, smtp_domain, deleted_at_master); `at_master`
    says whether the master holds a live entry of it (None: the master runs elsewhere)."""

    op: str
    reason: str
    detail: str
    name: str
    address: str
    kind: str
    id: str
    usn: int | None
    attributes: list[str] = field(default_factory=list)
    causes: list[str] = field(default_factory=list)
    at_master: bool | None = None

    @property
    def reason_label(self) -> str:
        return PreviewReason(self.reason).label


@dataclass
class ImportChange:
    """What a waiting reply does to one contact, or to an entry it sets aside. `reason` is one
    of new, conflict_freed, changed, deleted, absent, conflict, domain, address, organization."""

    op: str
    reason: str
    detail: str
    name: str
    address: str
    origin: str
    key: str
    attributes: list[str] = field(default_factory=list)


@dataclass
class ReplyPreview:
    """A message waiting at the requestor, and what the next cycle would make of it: its
    outcome (a message status) and its changes. `if_approved`: what it would do once an
    administrator approves the held batch it belongs to or waits behind."""

    message: int
    sender: str
    batch: str | None
    part: int | None
    parts: int | None
    status: str
    outcome: str
    detail: str
    if_approved: bool = False
    guard_tripped: bool = False
    changes: list[ImportChange] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return _count(self.changes, ImportOp)


@dataclass
class Guard:
    """Whether a guard would hold the cycle: True, False, or None when it cannot be known."""

    side: str  # "export" (the master's mass-delete guard) or "import" (this requestor's)
    held: bool | None
    detail: str


@dataclass
class Preview:
    """What the next cycle of a requestor would do. Nothing of it has happened."""

    organization: str
    master_address: str
    master_local: bool
    full: bool = False
    usn_from: int = 0
    usn_through: int = 0
    parts: int = 0
    changes: list[ExportChange] = field(default_factory=list)
    replies: list[ReplyPreview] = field(default_factory=list)
    guards: list[Guard] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    generated_at: datetime = field(default_factory=timezone.now)

    @property
    def export_counts(self) -> dict[str, int]:
        return _count(self.changes, PreviewOp)

    @property
    def import_counts(self) -> dict[str, int]:
        """What the replies the next cycle applies would do (not those waiting for approval)."""
        return _count(
            [change for reply in self.replies if not reply.if_approved for change in reply.changes],
            ImportOp,
        )


def _count(changes: list, ops) -> dict[str, int]:
    counted = Counter(change.op for change in changes)
    return {op: counted.get(op, 0) for op in ops.values}


def preview_cycle(config_id: int) -> Preview:
    """What the next cycle of this requestor would export and import, worked out by the real
    code in a transaction that is rolled back: nothing changes. Raises SyncError when no
    preview can be made now (no such requestor, or a cycle of it is running).

    While it runs it holds the requestor's row as a cycle does, so that it never sees a cycle
    half-way: a cycle starting meanwhile is refused as if another cycle ran (a scheduled one is
    skipped, an Execute Now waits), and the preview is refused while a cycle runs."""
    with transaction.atomic():
        try:
            return _preview(config_id)
        finally:
            transaction.set_rollback(True)


def _preview(config_id: int) -> Preview:
    try:
        config = lock_config(config_id)
    except CycleRunning as exc:
        raise SyncError(f"{exc} Preview again when it is done.") from None
    if config is None:
        raise SyncError(f"There is no requestor configuration {config_id}.")
    master = peers.master_view(config.master_address, config.own_address)
    preview = Preview(config.organization.name, config.master_address, master is not None)
    _note_configuration(config, preview, master)
    _read_directory(config.organization, preview)
    previous = config.exported_scope  # what the master holds; build_export restates it
    if config.imported_under and config.imported_under != config.import_options():
        preview.notes.append(
            "The import options changed since the contacts were imported: this cycle asks the "
            "master for a full reply, and contacts it no longer lists are removed."
        )
    follow_import_options(config)
    export = build_export(config)
    first = export.parts[0][0]
    preview.full, preview.parts = export.full, len(export.parts)
    preview.usn_from, preview.usn_through = first["usn_from"], export.usn_through
    changes = [change for document, _payload in export.parts for change in document["changes"]]
    scope = Scope.from_definition(config.exported_scope)
    if not scope.kinds:
        preview.notes.append(
            "No container is exported (Export Config): the export carries no recipient."
        )
    preview.changes = _Explainer(config, previous, scope, master, export.full).explain(changes)
    preview.guards.append(_export_guard(config, master, preview.changes))
    preview.replies = _preview_replies(config)
    preview.guards.append(_import_guard(config, preview.replies))
    return preview


def _note_configuration(
    config: RequestorConfig, preview: Preview, master: peers.MasterView | None
) -> None:
    if not config.enabled:
        preview.notes.append(
            "The requestor is disabled: scheduled cycles skip it; Execute Now and sync_now "
            "still run it."
        )
    if master is None:
        preview.notes.append(
            f"The master ({config.master_address}) runs in another installation: which "
            "attributes a change carries, and whether its mass-delete guard holds the export, "
            "are known only there."
        )
    if config.full_reply_pending:
        preview.notes.append(
            "A full reply is asked for at every cycle until one has been applied whole."
        )


def _read_directory(organization: Organization, preview: Preview) -> None:
    """An LDAP directory is read into the mirror as the cycle would (only read: the cycle's
    writing of pending contacts to LDAP is left out). If LDAP fails, so would the cycle."""
    try:
        backends.read(organization)
    except backends.DirectoryUnavailable as exc:
        preview.notes.append(
            f"The next cycle would fail now: {exc} The preview shows the directory as it was "
            "last read."
        )


def _scope_from(definition: dict) -> Scope | None:
    if not definition or definition == UNKNOWN_SCOPE:
        return None
    return Scope.from_definition(definition)


def _kinds_label(kind: str) -> str:
    label = Kind(kind).label.lower()
    return f"{label}es" if label.endswith("x") else f"{label}s"


def _attribute_label(name: str) -> str:
    return str(Recipient._meta.get_field(name).verbose_name)


def _sentence(parts) -> str:
    text = "; ".join(parts)
    return f"{text[:1].upper()}{text[1:]}."


def _differing(sent: dict, held: dict) -> list[str]:
    return [name for name in GENERAL_ATTRIBUTES if sent.get(name, "") != held.get(name, "")]


class _Explainer:
    """Says why each change of an export is in it."""

    def __init__(
        self,
        config: RequestorConfig,
        previous: dict,
        scope: Scope,
        master: peers.MasterView | None,
        full: bool,
    ):
        self.config, self.scope, self.master, self.full = config, scope, master, full
        self.old = _scope_from(previous)
        self.organization = config.organization.name
        self.containers = dict(
            Container.objects.filter(organization_id=config.organization_id).values_list("pk", "dn")
        )
        runs = Run.objects.filter(config=config, acknowledged__isnull=False)
        # Recipients created after the latest export the master acknowledged was read have
        # never reached it (what the preview can tell without the master).
        self.acknowledged_at = (
            runs.order_by("-started_at").values_list("started_at", flat=True).first()
        )
        self.held: dict[uuid.UUID, peers.MasterEntry] = {}

    def explain(self, changes: list[dict]) -> list[ExportChange]:
        ids = {uuid.UUID(change["id"]) for change in changes}
        swept: list[uuid.UUID] = []
        if self.master is not None:
            self.held = self.master.entries(None if self.full else ids)
            if self.full:
                swept = [object_id for object_id in self.held if object_id not in ids]
        rows = {
            row["guid"]: row
            for row in Recipient.objects.filter(organization_id=self.config.organization_id)
            .exportable()
            .filter(OneOf("guid", ids | set(swept)))
            .values(
                "guid",
                "kind",
                "container_id",
                "trust_level",
                "hidden_from_others",
                "display_name",
                "primary_smtp",
                "created_at",
            )
        }
        explained = [self._change(change, rows.get(uuid.UUID(change["id"]))) for change in changes]
        explained += [self._swept(object_id, rows.get(object_id)) for object_id in swept]
        return explained

    # -- one change ---------------------------------------------------------------------------

    def _change(self, change: dict, row: dict | None) -> ExportChange:
        if change["op"] == Op.DELETE:
            return self._delete(change, row)
        attrs = change["attrs"]
        item = ExportChange(
            op=PreviewOp.CHANGE,
            reason=PreviewReason.CHANGED,
            detail="",
            name=attrs.get("display_name", ""),
            address=attrs.get("primary_smtp", ""),
            kind=change["kind"],
            id=change["id"],
            usn=change["usn"],
        )
        entry = self.held.get(uuid.UUID(change["id"]))
        if self.master is not None:
            item.at_master = entry is not None and not entry.deleted
            item.attributes = _differing(attrs, entry.attrs) if item.at_master else []
        if self.full:
            self._full(item, row)
        elif row is not None and self._entered(row):
            item.reason = PreviewReason.ENTERED_SCOPE
            causes = self._why_in(row)
            item.causes = [cause for cause, _ in causes]
            item.detail = _sentence(text for _, text in causes)
        elif self.old is not None and self.old.transforms != self.scope.transforms:
            item.reason = PreviewReason.TRANSFORMS
            causes = self._transforms()
            item.causes = [cause for cause, _ in causes]
            item.detail = _sentence(text for _, text in causes)
        elif self.master is not None:
            self._against_master(item, entry)
        elif self._is_new(row):
            item.reason = PreviewReason.NEW
            item.detail = "Created after the last export the master acknowledged."
        else:
            item.detail = "Which of its attributes change is known only at the master."
        if item.attributes and item.reason != PreviewReason.CHANGED:
            item.detail += f" At the master it changes: {self._attributes(item.attributes)}."
        item.op = self._op(item, row)
        return item

    def _op(self, item: ExportChange, row: dict | None) -> str:
        if item.at_master is not None:
            return PreviewOp.CHANGE if item.at_master else PreviewOp.ADD
        if item.reason in (PreviewReason.NEW, PreviewReason.ENTERED_SCOPE):
            return PreviewOp.ADD
        if item.reason == PreviewReason.FULL_EXPORT and self._is_new(row):
            return PreviewOp.ADD
        return PreviewOp.CHANGE

    def _full(self, item: ExportChange, row: dict | None) -> None:
        item.reason = PreviewReason.FULL_EXPORT
        if self._first_export:
            item.detail = "First export: every recipient in the scope is sent."
        else:
            item.detail = (
                "Full export (the requestor USN is 0: Export All Recipients was asked for, or a "
                "repair): every recipient in the scope is sent again, and the master drops the "
                "entries it does not list."
            )
        if item.at_master is False:
            item.detail += " The master holds no live entry of it: it is added."
        elif item.at_master and not item.attributes:
            item.detail += " The master holds it as it is: nothing changes there."

    @cached_property
    def _first_export(self) -> bool:
        return self.acknowledged_at is None and not Run.objects.filter(config=self.config).exists()

    def _against_master(self, item: ExportChange, entry: peers.MasterEntry | None) -> None:
        if entry is None:
            item.reason = PreviewReason.NEW
            item.detail = "The master holds no entry of it."
        elif entry.deleted:
            item.reason = PreviewReason.ENTERED_SCOPE
            item.causes = ["deleted_at_master"]
            item.detail = (
                "The master holds it as deleted: it had left the scope (moved out of an "
                "exported container, its trust level raised, or hidden) and is back."
            )
        elif item.attributes:
            item.detail = f"Attributes changed: {self._attributes(item.attributes)}."
        else:
            item.detail = (
                "No exported attribute differs from the master's entry (a local attribute or "
                "the trust level changed): the master keeps it as it is."
            )

    def _attributes(self, names: list[str]) -> str:
        return ", ".join(_attribute_label(name) for name in names)

    def _delete(self, change: dict, row: dict | None) -> ExportChange:
        object_id = uuid.UUID(change["id"])
        item = ExportChange(
            op=PreviewOp.DELETE,
            reason=PreviewReason.DELETED,
            detail=f"No longer in the directory of {self.organization}.",
            name="",
            address="",
            kind=change["kind"],
            id=change["id"],
            usn=change["usn"],
        )
        if row is not None:
            causes = self._why_out(row) or [("", "it changed again after the export was read")]
            item.reason = PreviewReason.LEFT_SCOPE
            item.causes = [cause for cause, _ in causes if cause]
            item.detail = _sentence(text for _, text in causes)
        self._name_deleted(item, object_id, row)
        return item

    def _swept(self, object_id: uuid.UUID, row: dict | None) -> ExportChange:
        """A live entry of the master that a full export does not list: the master drops it."""
        item = ExportChange(
            op=PreviewOp.DELETE,
            reason=PreviewReason.FULL_EXPORT,
            detail="",
            name="",
            address="",
            kind=row["kind"] if row else "",
            id=str(object_id),
            usn=None,
        )
        if row is None:
            why = f"it is no longer in the directory of {self.organization}"
        else:
            causes = self._why_out(row) or [("", "it changed after the export was read")]
            item.causes = [cause for cause, _ in causes if cause]
            why = "; ".join(text for _, text in causes)
        item.detail = f"Not in the full export, so the master drops its entry: {why}."
        self._name_deleted(item, object_id, row)
        return item

    def _name_deleted(self, item: ExportChange, object_id: uuid.UUID, row: dict | None) -> None:
        """The name and address the others know a deleted entry by: the master's, else the
        recipient's own as last exported."""
        entry = self.held.get(object_id)
        if self.master is not None:
            item.at_master = entry is not None and not entry.deleted
            if not item.at_master:
                item.detail += " The master holds no live entry of it: nothing changes there."
        if entry is not None and entry.attrs:
            item.name = entry.attrs.get("display_name", "")
            item.address = entry.attrs.get("primary_smtp", "")
        elif row is not None:
            transforms = (self.old or self.scope).transforms
            item.name = row["display_name"] + transforms[0]
            item.address = row["primary_smtp"]
            if transforms[1] and "@" in item.address:
                item.address = f"{item.address.rsplit('@', 1)[0]}@{transforms[1].lower()}"

    # -- scope ----------------------------------------------------------------------------------

    @staticmethod
    def _state(row: dict) -> tuple:
        return row["kind"], row["container_id"], row["trust_level"], row["hidden_from_others"]

    def _entered(self, row: dict) -> bool:
        """In the scope now, but not in the one the master holds the entries under."""
        return self.old is not None and not self.old.includes(*self._state(row))

    def _is_new(self, row: dict | None) -> bool:
        if self.acknowledged_at is None:
            return True
        return row is not None and row["created_at"] > self.acknowledged_at

    def _container(self, container_id: int) -> str:
        return self.containers.get(container_id, f"container {container_id}")

    def _why_out(self, row: dict) -> list[tuple[str, str]]:
        """Why an own recipient is out of the scope now, each cause with its words."""
        kind, container_id, trust_level, hidden = self._state(row)
        old, scope, dn = self.old, self.scope, self._container(container_id)
        causes = []
        if hidden:
            causes.append(("hidden", "it is hidden from other organizations"))
        if container_id not in scope.kinds:
            was = old is not None and container_id in old.kinds
            causes.append(
                ("container", f"its container {dn} is {'no longer' if was else 'not'} exported")
            )
        elif kind not in scope.kinds[container_id]:
            was = old is not None and kind in old.kinds.get(container_id, ())
            causes.append(
                (
                    "kind",
                    f"{_kinds_label(kind)} are {'no longer' if was else 'not'} exported from {dn}",
                )
            )
        if trust_level > scope.trust_level:
            if old is not None and trust_level <= old.trust_level:
                text = (
                    f"the trust level threshold was lowered to {scope.trust_level}, below its "
                    f"trust level {trust_level}"
                )
            else:
                text = f"its trust level {trust_level} is above the threshold {scope.trust_level}"
            causes.append(("trust_level", text))
        return causes

    def _why_in(self, row: dict) -> list[tuple[str, str]]:
        """What change of the scope brought an own recipient into it."""
        kind, container_id, trust_level, _hidden = self._state(row)
        old, dn = self.old, self._container(container_id)
        causes = []
        if container_id not in old.kinds:
            causes.append(("container", f"its container {dn} is exported now"))
        elif kind not in old.kinds[container_id]:
            causes.append(("kind", f"{_kinds_label(kind)} are exported from {dn} now"))
        if trust_level > old.trust_level:
            causes.append(
                (
                    "trust_level",
                    f"the trust level threshold was raised to {self.scope.trust_level} (its "
                    f"trust level is {trust_level})",
                )
            )
        return causes

    def _transforms(self) -> list[tuple[str, str]]:
        old, new = self.old, self.scope
        causes = []
        if old.append_display_name != new.append_display_name:
            causes.append(
                (
                    "suffix",
                    f"display-name suffix {old.append_display_name!r} → "
                    f"{new.append_display_name!r}",
                )
            )
        if old.modify_smtp_domain != new.modify_smtp_domain:
            causes.append(
                (
                    "smtp_domain",
                    f"SMTP domain rewrite {old.modify_smtp_domain or 'none'} → "
                    f"{new.modify_smtp_domain or 'none'}",
                )
            )
        return causes


# -- guards -----------------------------------------------------------------------------------


def _export_guard(
    config: RequestorConfig, master: peers.MasterView | None, changes: list[ExportChange]
) -> Guard:
    if master is None:
        return Guard(
            "export",
            None,
            f"The master at {config.master_address} runs elsewhere: its mass-delete guard "
            "decides there whether this export is held.",
        )
    if master.blocked:
        return Guard("export", True, master.blocked)
    deletes = sum(1 for change in changes if change.op == PreviewOp.DELETE and change.at_master)
    threshold, what = master.threshold, f"entries of {config.organization.name} at the master"
    if threshold.trips(deletes, master.live):
        return Guard(
            "export",
            True,
            "The master's mass-delete guard would hold this export for an administrator. "
            + threshold.explain(deletes, master.live, what),
        )
    return Guard(
        "export",
        False,
        f"It deletes {deletes} of {master.live} {what}: the master's mass-delete guard holds "
        f"more than {threshold.limit}, or more than {threshold.percent} % from "
        f"{threshold.floor} on.",
    )


def _import_guard(config: RequestorConfig, replies: list[ReplyPreview]) -> Guard:
    thresholds = (
        f"more than {config.import_delete_limit} contacts, or more than "
        f"{config.import_delete_percent} % from {config.import_delete_floor} on"
    )
    applied = [reply for reply in replies if not reply.if_approved]
    for reply in applied:
        if reply.guard_tripped:
            return Guard(
                "import",
                True,
                f"The import guard would hold reply message {reply.message}: {reply.detail}",
            )
    for reply in applied:
        if reply.outcome == Status.HELD:
            return Guard(
                "import",
                True,
                f"Reply message {reply.message} waits for an administrator (Held batches): "
                f"{reply.detail}",
            )
    if applied:
        return Guard(
            "import",
            False,
            f"No waiting reply removes more than the import guard allows ({thresholds}).",
        )
    return Guard(
        "import",
        None,
        f"No reply waits to be applied; the import guard ({thresholds}) judges the master's "
        "reply to this cycle's export when it comes.",
    )


# -- the replies waiting ---------------------------------------------------------------------


def _addressed_to(config: RequestorConfig):
    """Inbound messages to this requestor (their organization is only set once processed)."""
    return Message.objects.filter(direction=Direction.INBOUND).filter(
        Q(recipient__iexact=config.address) | Q(recipient__iexact=config.dn)
    )


def _preview_replies(config: RequestorConfig) -> list[ReplyPreview]:
    """The waiting messages through the inbox, in the order a worker takes them; then, if some
    wait for an administrator, what they would do once approved."""
    waiting = list(
        _addressed_to(config)
        .filter(status__in=WAITING)
        .order_by("id")
        .values("pk", "sender", "batch", "part", "parts", "status", "error")
    )
    if not waiting:
        return []
    observed: dict[int, ReplyPreview] = {}
    _run_inbox(config, observed, if_approved=False)
    replies = []
    for message in waiting:
        reply = observed.get(message["pk"])
        if reply is None:  # deferred or held, and still so
            reply = ReplyPreview(
                message["pk"],
                message["sender"],
                str(message["batch"]) if message["batch"] else None,
                message["part"],
                message["parts"],
                message["status"],
                message["status"],
                message["error"],
            )
        replies.append(reply)
    held = _addressed_to(config).filter(status=Status.HELD)
    if held.exists():
        # As an administrator's approval would: the held batches pass the guard, in order.
        Hold.objects.filter(
            organization_id=config.organization_id,
            kind=MessageKind.REPLY,
            decision=Hold.Decision.PENDING,
        ).update(decision=Hold.Decision.APPROVED)
        held.update(status=Status.RECEIVED, error="", next_attempt_at=None)
        approved: dict[int, ReplyPreview] = {}
        _run_inbox(config, approved, if_approved=True)
        replies += [approved[pk] for pk in sorted(approved)]
    return replies


def _run_inbox(config: RequestorConfig, observed: dict[int, ReplyPreview], if_approved: bool):
    """Process this requestor's received messages until none is left, as the inbox would (a
    deferred part comes back when an earlier one is applied)."""
    busy: set[int] = set()  # locked by a worker processing it right now
    for _ in range(MAX_ROUNDS):
        pks = list(
            _addressed_to(config)
            .filter(status=Status.RECEIVED)
            .exclude(pk__in=busy)
            .order_by("id")
            .values_list("pk", flat=True)
        )
        if not pks:
            return
        for pk in pks:
            reply = _observe(config, pk, if_approved)
            if reply is None:
                busy.add(pk)
            else:
                observed[pk] = reply


def _observe(config: RequestorConfig, pk: int, if_approved: bool) -> ReplyPreview | None:
    """Process one message and say what it did to the contacts; None if a worker holds it."""
    status_before = Message.objects.values_list("status", flat=True).get(pk=pk)
    document = _reply_document(pk)
    entries = {entry.key: entry for entry in document.entries} if document else {}
    everything = document is not None and document.full
    before = _contacts(config, set(entries), everything)
    aside_before = _set_aside(config)
    usn = Organization.objects.values_list("usn", flat=True).get(pk=config.organization_id)
    try:
        with transaction.atomic():
            if not process_message(pk):
                return None
    except Exception as exc:
        # As the inbox's process_safely: failed, nothing of it applied.
        log.exception("preview: message %s could not be processed", pk)
        Message.objects.filter(pk=pk).update(
            status=Status.FAILED,
            error=f"Internal error, nothing would be applied: {exc.__class__.__name__}: {exc}",
        )
    message = Message.objects.values(
        "sender", "batch", "part", "parts", "status", "error", "organization_id", "kind"
    ).get(pk=pk)
    reply = ReplyPreview(
        pk,
        message["sender"],
        str(message["batch"]) if message["batch"] else None,
        message["part"],
        message["parts"],
        Status.HELD if if_approved else status_before,
        message["status"],
        message["error"],
        if_approved=if_approved,
    )
    if message["status"] == Status.HELD and message["batch"] is not None:
        reply.guard_tripped = Hold.objects.filter(
            organization_id=message["organization_id"],
            kind=message["kind"],
            sender__iexact=message["sender"],
            batch=message["batch"],
            decision=Hold.Decision.PENDING,
        ).exists()
    if message["status"] == Status.PROCESSED:
        after = _contacts_after(config, set(before), usn, everything)
        reply.changes = _differences(before, after, aside_before, _set_aside(config), entries)
    return reply


def _reply_document(pk: int) -> wire.ReplyDocument | None:
    """The message's reply document, to know which contacts it concerns (None if it is not
    one: the inbox then refuses it, and it concerns none)."""
    payload = Message.objects.values_list("payload", flat=True).get(pk=pk)
    try:
        document = wire.decode(bytes(payload))
    except wire.WireError:
        return None
    return document if document.type == MessageKind.REPLY else None


def _contact_rows(config: RequestorConfig):
    """The contacts in the address book: one hidden for its grace period is removed from it,
    one restored is added again."""
    return Recipient.objects.filter(
        organization_id=config.organization_id, global_key__isnull=False, hidden_at__isnull=True
    )


def _contacts(config: RequestorConfig, keys: set[str], everything: bool) -> dict[str, dict]:
    """The contacts of these keys (all of them for a full reply), as they are now."""
    rows = _contact_rows(config)
    if not everything:
        if not keys:
            return {}
        rows = rows.filter(OneOf("global_key", keys))
    return {row["global_key"]: row for row in rows.values(*CONTACT_STATE)}


def _contacts_after(
    config: RequestorConfig, keys: set[str], usn: int, everything: bool
) -> dict[str, dict]:
    """After a message: the contacts of these keys that are left, and every contact it wrote."""
    rows = _contact_rows(config)
    if not everything:
        written = Q(usn__gt=usn)
        rows = rows.filter(written | OneOf("global_key", keys) if keys else written)
    return {row["global_key"]: row for row in rows.values(*CONTACT_STATE)}


@dataclass(frozen=True)
class _SetAside:
    reason: str  # "conflict", or a FilteredEntry.Reason
    master_usn: int
    address: str
    origin: str
    name: str
    detail: str


def _set_aside(config: RequestorConfig) -> dict[str, _SetAside]:
    """The entries this requestor knows but does not import, by key."""
    rows = {}
    for key, usn, reason, address, origin in FilteredEntry.objects.filter(
        config=config
    ).values_list("global_key", "master_usn", "reason", "address", "origin"):
        label = FilteredEntry.Reason(reason).label
        rows[key] = _SetAside(reason, usn, address, origin, "", f"Set aside: {label}.")
    for key, usn, address, origin, name, why in Conflict.objects.filter(config=config).values_list(
        "global_key", "master_usn", "address", "origin", "display_name", "reason"
    ):
        rows[key] = _SetAside("conflict", usn, address, origin, name, f"Conflict: {why}")
    return rows


def _differences(
    before: dict[str, dict],
    after: dict[str, dict],
    aside_before: dict[str, _SetAside],
    aside_after: dict[str, _SetAside],
    entries: dict[str, wire.Entry],
) -> list[ImportChange]:
    changes = []
    for key, row in after.items():
        old = before.get(key)
        if old is not None and old["usn"] == row["usn"]:
            continue
        change = ImportChange(
            ImportOp.ADD,
            "new",
            f"New contact from {row['origin_organization']}.",
            row["display_name"],
            row["primary_smtp"],
            row["origin_organization"],
            key,
        )
        if old is None and key in aside_before:
            change.reason = "conflict_freed"
            change.detail = "Imported now that the address it conflicted with is free."
        elif old is not None:
            change.op, change.reason = ImportOp.UPDATE, "changed"
            change.attributes = [name for name in GENERAL_ATTRIBUTES if old[name] != row[name]]
            change.detail = (
                "Attributes changed: "
                + ", ".join(_attribute_label(n) for n in change.attributes)
                + "."
                if change.attributes
                else "Written again as the master holds it; no attribute differs."
            )
        changes.append(change)
    for key, row in before.items():
        if key in after:
            continue
        reason, detail = _why_removed(key, aside_after, entries)
        changes.append(
            ImportChange(
                ImportOp.REMOVE,
                reason,
                detail,
                row["display_name"],
                row["primary_smtp"],
                row["origin_organization"],
                key,
            )
        )
    for key, aside in aside_after.items():
        if aside_before.get(key) == aside or (key in before and key not in after):
            continue
        entry = entries.get(key)
        name = aside.name or (entry.attrs.get("display_name", "") if entry else "")
        changes.append(
            ImportChange(
                ImportOp.SET_ASIDE,
                aside.reason,
                aside.detail,
                name,
                aside.address,
                aside.origin,
                key,
            )
        )
    return changes


def _why_removed(
    key: str, aside: dict[str, _SetAside], entries: dict[str, wire.Entry]
) -> tuple[str, str]:
    if key in aside:
        return aside[key].reason, f"Removed. {aside[key].detail}"
    entry = entries.get(key)
    if entry is not None and entry.op == Op.DELETE:
        return "deleted", (
            f"Deleted at the master: {entry.origin} deleted it, or it left {entry.origin}'s "
            "export scope."
        )
    return "absent", "Not in the master's full reply: the master no longer holds it."
