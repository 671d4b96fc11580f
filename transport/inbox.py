"""Incoming messages: decoded, checked and handed to the agent that owns the recipient address."""

import logging
import zlib
from datetime import timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from interorg_site.collector import collector_paused
from transport import archive, dispatch, holds, signing, wire
from transport.constants import Direction, MessageKind, Status
from transport.exceptions import (
    MessageDeferred,
    MessageHeld,
    MessageRejected,
    MessageReplayed,
    MessageUnverified,
)
from transport.models import Message
from transport.outbox import deliver_pending
from transport.registry import agent_at, delivery_failed, not_allowed, organization_at

log = logging.getLogger(__name__)

# What processing sets on an archived message (_describe, the agents' organization, the outcome).
PROCESSED_FIELDS = [
    "status",
    "error",
    "attempts",
    "next_attempt_at",
    "processed_at",
    "organization",
    "summary",
    "kind",
    "batch",
    "part",
    "parts",
    "sequence",
    "usn_from",
    "usn_through",
]


# A database error that another attempt may not meet (a connection killed, a serialization
# failure, a deadlock): the message is processed again after a growing pause.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)
RETRY_FIRST_SECONDS = 5
RETRY_MAX_SECONDS = 300
MAX_ATTEMPTS = 10


class _TurnTaken(Exception):
    """Another session is applying the organization's messages of this kind (see in_order)."""


class _Passed:
    """What process_message returns for a message it passed over for its organization's turn."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "TURN_TAKEN"  # pragma: no mutate (for a person reading a debugger or a log)


TURN_TAKEN = _Passed()


def _due(now) -> Q:
    return Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)


def process_pending(limit: int | None = None, passed_over: list[int] | None = None) -> int:
    """Process every received message that is due (or the first `limit` of them), oldest
    first; return how many were handled.

    A message another worker holds is its to finish, and one whose organization another worker
    is applying messages for (the next part of the same reply, say) is left for later: rather
    than wait for that turn, this one goes on to the next organization's messages. Those are
    added to `passed_over`, when given."""
    handled = 0
    skipped: set[int] = set()
    while True:
        batch = list(
            Message.objects.filter(direction=Direction.INBOUND, status=Status.RECEIVED)
            .filter(_due(timezone.now()))
            .exclude(pk__in=skipped)
            .order_by("id")
            .values_list("pk", flat=True)[:200]
        )
        if not batch:
            return handled
        for pk in batch:
            outcome = process_safely(pk, wait=False)
            if outcome is TURN_TAKEN and passed_over is not None:
                passed_over.append(pk)
            if outcome is True:
                handled += 1
                if handled == limit:
                    return handled
            else:
                skipped.add(pk)


def process_safely(pk: int, wait: bool = True) -> bool | object:
    """Process one message. A brief database error leaves it received, to be processed again
    after a pause (retry_at() says when); any other unexpected error rolls it back and marks
    it failed, keeping it."""
    try:
        return process_message(pk, wait=wait)
    except TRANSIENT_ERRORS as exc:
        _retry_later(pk, exc)
        return True
    except Exception as exc:
        log.exception("message %s could not be processed", pk)
        Message.objects.filter(pk=pk, status=Status.RECEIVED).update(
            status=Status.FAILED,
            error=f"Internal error, nothing was applied: {exc.__class__.__name__}: {exc}",
            processed_at=timezone.now(),
        )
        return True


def _retry_later(pk: int, exc: Exception) -> None:
    # The connection may be gone with the error: the next query opens a new one.
    if connection.connection is not None and not connection.is_usable():
        connection.close()
    attempts = (Message.objects.filter(pk=pk).values_list("attempts", flat=True).first() or 0) + 1
    what = f"{exc.__class__.__name__}: {' '.join(str(exc).split())[:300]}"
    if attempts >= MAX_ATTEMPTS:
        log.error("message %s: database error at attempt %s, giving up: %s", pk, attempts, what)
        Message.objects.filter(pk=pk, status=Status.RECEIVED).update(
            status=Status.FAILED,
            attempts=attempts,
            error=f"Database errors at {attempts} attempts, nothing was applied: {what}",
            processed_at=timezone.now(),
        )
        return
    delay = min(RETRY_FIRST_SECONDS * 2 ** (attempts - 1), RETRY_MAX_SECONDS)
    log.warning("message %s: database error, trying again in %s s: %s", pk, delay, what)
    Message.objects.filter(pk=pk, status=Status.RECEIVED).update(
        attempts=attempts,
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        error=f"A database error interrupted attempt {attempts}; nothing was applied, and it "
        f"is tried again in {delay} s. {what}",
    )


def retry_at(pk: int):
    """When a received message is due to be processed again (None: now, or not waiting)."""
    return (
        Message.objects.filter(pk=pk, status=Status.RECEIVED)  # (inbound: a sent copy never is)
        .values_list("next_attempt_at", flat=True)
        .first()
    )


@collector_paused()
def process_message(pk: int, wait: bool = True) -> bool | object:
    """Process the message if it is still received; False if it is not, or another session
    holds it, and (with `wait` False) TURN_TAKEN, which is false too, if another session holds
    the organization's turn at its agent's messages: then nothing was written."""
    try:
        return _process(pk, wait)
    except _TurnTaken:
        return TURN_TAKEN


def _process(pk: int, wait: bool) -> bool:
    with transaction.atomic():
        if not wait:
            _take_turn_first(pk)
        message = (
            Message.objects.select_for_update(skip_locked=True)
            .filter(pk=pk, status=Status.RECEIVED)
            .first()
        )
        if message is None:
            return False
        message.attempts += 1
        message.processed_at = timezone.now()
        message.next_attempt_at = None
        refused = False
        held = None
        body_fields = []
        try:
            _dispatch(message)
        except MessageHeld as exc:
            message.status, message.error = Status.HELD, str(exc)
            held = exc
        except MessageRejected as exc:
            message.status, message.error = Status.REJECTED, str(exc)
            log.warning("message %s rejected: %s", pk, exc)
            refused = not isinstance(exc, MessageReplayed)
            if isinstance(exc, MessageUnverified):
                body_fields = archive.drop_body(message)
        except MessageDeferred as exc:
            message.status, message.error = Status.DEFERRED, str(exc)
        else:
            # What an earlier attempt said (waiting for a part, a database error) is over.
            message.status, message.error = Status.PROCESSED, ""
        # Not the payload (megabytes, and unchanged), unless it was dropped.
        message.save(update_fields=PROCESSED_FIELDS + body_fields)
        if held is not None:
            holds.record(message, getattr(held, "document", None), held)
        if refused:
            refused_here(message)
            _tell_refused(message)
    return True


def _take_turn_first(pk: int) -> None:
    """Take the turn of the message's organization before the message itself, or raise
    _TurnTaken having held nothing: a message passed over for its turn is never locked by this
    session, even for a moment, so the task processing it (which waits for the turn) is not
    turned away meanwhile, which would leave it for the next sweep."""
    addresses = (
        # (_process leaves a message no longer received anyway: this spares taking its turn.)
        Message.objects.filter(pk=pk, status=Status.RECEIVED)  # pragma: no mutate
        .values_list("recipient", "sender")
        .first()
    )
    recipient, sender = addresses or (None, None)
    agent = agent_at(recipient) if recipient is not None else None
    if agent is None or not agent.in_order:
        return
    if not in_order(agent, agent.organization_at(recipient), wait=False, sender=sender):
        raise _TurnTaken


def _tell_refused(message: Message) -> None:
    """The receiving agent counts refusals (a master quarantines a requestor whose messages are
    refused again and again)."""
    agent = agent_at(message.recipient)
    if agent is not None and agent.refused is not None:
        agent.refused(message)


def _dispatch(message: Message) -> None:
    """Check who sent it before reading it, then what it is, then whether it was seen before."""
    agent = agent_at(message.recipient)
    if agent is None:
        raise MessageRejected(
            f"No agent of this installation receives mail at {message.recipient}."
        )
    message.organization_id = agent.organization_at(message.recipient)
    if agent.in_order:
        # (A sweep took it already, or passed the message over: _take_turn_first.)
        in_order(agent, message.organization_id, sender=message.sender)
    _verify_sender(agent, message)
    try:
        document = wire.decode(bytes(message.payload))
    except wire.WireError as exc:
        raise MessageRejected(str(exc)) from None
    _describe(message, document)
    if document.type != agent.document_type:
        raise MessageRejected(
            f"The agent at {message.recipient} takes {agent.document_type} messages, "
            f"not {document.type}."
        )
    if document.sender.address.lower() != message.sender.lower():
        raise MessageRejected(
            f"The document says it is from {document.sender.address}, "
            f"but the message came from {message.sender}."
        )
    _refuse_replays(message)
    try:
        holds.refuse_to_pass(message)
        # A savepoint: a handler that rejects, defers or holds leaves no trace of its writes.
        with transaction.atomic():
            agent.handle(message, document)
    except MessageHeld as exc:
        exc.document = document
        raise


def in_order(agent, organization_id: int, wait: bool = True, sender: str = "") -> bool:
    """Take the organization's turn at the agent's messages, until commit: on PostgreSQL an
    advisory lock (SQLite runs one writing transaction at a time anyway). Without `wait`, only
    if no other session holds it: False then. For an agent whose turns are per sender, the
    turn of the organization's messages from `sender`.

    Without it, a reply part that finds its predecessor not applied yet could commit as
    deferred just after the predecessor's transaction looked for deferred parts to hand over
    (retry_deferred): it would wait for the next sweep, a minute. The handler's own row lock
    does not prevent that: the savepoint a deferral rolls back releases it.

    The master's turns are per requestor: its exports are applied one at a time under its row
    lock anyway, and meanwhile another worker checks the signature of the next requestor's
    export and decodes it, rather than passing it over (docs/scaling.md, "The master's turn
    per requestor")."""
    if connection.vendor != "postgresql" or organization_id is None:
        return True  # (an address no organization receives at is refused)
    kind = zlib.crc32(agent.document_type.encode()) & 0x7FFFFFFF
    turn = organization_id
    if agent.turn_per_sender:
        # (Two senders sharing a number only take turns: nothing is lost but time.)
        turn = zlib.crc32(f"{organization_id}\x1f{sender.lower()}".encode()) & 0x7FFFFFFF
    with connection.cursor() as cursor:
        if wait:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [kind, turn])
            return True
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [kind, turn])
        return cursor.fetchone()[0]


def _verify_sender(agent, message: Message) -> None:
    keys = agent.trusted_keys(message.recipient, message.sender)
    if keys is None:
        raise MessageUnverified(not_allowed(message.sender, message.recipient))
    if not message.signature:
        raise MessageUnverified("The message is not signed; every InterOrg message must be.")
    if not keys:
        # Allowed, and no key configured: a sender inside this installation is known anyway.
        sender_organization = organization_at(message.sender)
        if sender_organization is not None:
            keys = signing.local_public_keys(sender_organization)
    if not keys:
        raise MessageUnverified(
            f"No public key is configured for {message.sender}; paste the key that "
            "`manage.py keys show` prints in the sender's organization."
        )
    try:
        signing.verify(
            message.recipient,
            bytes(message.payload),
            message.signature,
            message.key_fingerprint,
            keys,
        )
    except signing.SignatureError as exc:
        raise MessageUnverified(str(exc)) from None


def _refuse_replays(message: Message) -> None:
    """A message already accepted from this sender (same sequence, or same batch and part) is a
    replay; one far older than the newest accepted, or than the clock its sequence follows, is
    stale. The archive keeps accepted messages at least as long as the replay window plus a
    mail queue's lifetime (transport.housekeeping), so any message young enough to be accepted
    finds the earlier copy it replays."""
    window = settings.INTERORG_REPLAY_WINDOW_SECONDS * 1000
    if message.sequence < signing.now_ms() - window:
        raise MessageReplayed(
            f"Stale: message {message.sequence} from {message.sender} was written more than the "
            f"replay window ({settings.INTERORG_REPLAY_WINDOW_SECONDS} s) ago, by the clock its "
            "sequence follows (if the sender's clock is behind, set it right)."
        )
    accepted = Message.objects.filter(
        direction=Direction.INBOUND,
        status__in=[Status.PROCESSED, Status.DEFERRED],
        sender__iexact=message.sender,
    ).exclude(pk=message.pk)  # pragma: no mutate (it is RECEIVED here: never among these)
    earlier = (
        accepted.filter(Q(sequence=message.sequence) | Q(batch=message.batch, part=message.part))
        .values_list("pk", flat=True)  # pragma: no mutate (without a field: the pk too)
        .first()
    )
    if earlier is not None:
        raise MessageReplayed(
            f"Replay: message {message.sequence} from {message.sender} was already accepted "
            f"(archived as message {earlier}); nothing to do."
        )
    newest = accepted.aggregate(newest=Max("sequence"))["newest"]
    if newest is not None and message.sequence < newest - window:
        raise MessageReplayed(
            f"Stale: message {message.sequence} from {message.sender} is older than the replay "
            f"window ({settings.INTERORG_REPLAY_WINDOW_SECONDS} s) behind the newest accepted, "
            f"{newest}."
        )


def refused_here(refused: Message) -> None:
    """A message an agent of this installation sent to another one here was refused: its sent
    copy failed for good, and the sending agent is told (its run fails with the reason now,
    rather than waiting for a reply that will never come). A message from elsewhere is only
    refused: its sender finds out when no reply comes."""
    if refused.batch is None:
        return
    sent = Message.objects.filter(
        direction=Direction.OUTBOUND,  # pragma: no mutate (only outbound copies are ever sent)
        status=Status.SENT,
        sender__iexact=refused.sender,
        recipient__iexact=refused.recipient,
        batch=refused.batch,
        part=refused.part,
    ).first()
    if sent is None:
        return
    sent.status = Status.FAILED
    sent.error = f"Refused by {refused.recipient}: {refused.error}"
    sent.save(update_fields=["status", "error"])  # pragma: no mutate (all fields: the same)
    delivery_failed(sent)


def _describe(message: Message, document: wire.Document) -> None:
    header = document.model_dump(mode="json", exclude={"changes", "entries"})
    items = document.changes if document.type == MessageKind.EXPORT else document.entries
    header["count"] = len(items)
    message.summary = header
    message.kind = document.type
    message.batch, message.part, message.parts = document.batch, document.part, document.parts
    message.sequence = document.sequence
    if document.type == MessageKind.EXPORT:
        message.usn_from, message.usn_through = document.usn_from, document.usn_through
    else:
        message.usn_from, message.usn_through = document.after, document.through


def retry_deferred(organization_id: int) -> int:
    """Give deferred messages of an organization another go after an earlier part was applied."""
    deferred = Message.objects.filter(
        direction=Direction.INBOUND,  # pragma: no mutate (only received messages are deferred)
        status=Status.DEFERRED,
        organization_id=organization_id,
    )
    # (values_list(flat=True) without a field gives the pk too: no mutants of this line.)
    pks = list(deferred.values_list("pk", flat=True))  # pragma: no mutate
    Message.objects.filter(pk__in=pks, status=Status.DEFERRED).update(status=Status.RECEIVED)
    for pk in pks:
        dispatch.message_received(pk)
    return len(pks)


def pump(max_rounds: int = 1000) -> int:  # pragma: no mutate (a bound no test comes near)
    """Deliver local messages and process received ones until nothing moves."""
    moved_total = 0
    for _ in range(max_rounds):
        moved = deliver_pending() + process_pending()
        if not moved:
            break
        moved_total += moved
    return moved_total
