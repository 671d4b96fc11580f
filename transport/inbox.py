"""Incoming messages: decoded, checked and handed to the agent that owns the recipient address."""

import logging

from django.db import transaction
from django.utils import timezone

from transport import wire
from transport.constants import Direction, Status
from transport.exceptions import MessageDeferred, MessageRejected
from transport.models import Message
from transport.outbox import deliver_pending
from transport.registry import agent_for

log = logging.getLogger(__name__)


def process_pending() -> int:
    """Process every received message, oldest first; return how many were handled."""
    handled = 0
    # Messages another worker holds locked are its to finish: don't spin on them.
    skipped: set[int] = set()
    while True:
        batch = list(
            Message.objects.filter(direction=Direction.INBOUND, status=Status.RECEIVED)
            .exclude(pk__in=skipped)
            .order_by("id")
            .values_list("pk", flat=True)[:200]
        )
        if not batch:
            return handled
        for pk in batch:
            if process_safely(pk):
                handled += 1
            else:
                skipped.add(pk)


def process_safely(pk: int) -> bool:
    """Process one message; an unexpected error rolls it back and marks it failed, keeping it."""
    try:
        return process_message(pk)
    except Exception as exc:
        log.exception("message %s could not be processed", pk)
        Message.objects.filter(pk=pk, status=Status.RECEIVED).update(
            status=Status.FAILED,
            error=f"Internal error, nothing was applied: {exc.__class__.__name__}: {exc}",
            processed_at=timezone.now(),
        )
        return True


def process_message(pk: int) -> bool:
    with transaction.atomic():
        message = (
            Message.objects.select_for_update(skip_locked=True)
            .filter(pk=pk, status=Status.RECEIVED)
            .first()
        )
        if message is None:
            return False
        message.attempts += 1
        message.processed_at = timezone.now()
        try:
            _dispatch(message)
        except MessageRejected as exc:
            message.status, message.error = Status.REJECTED, str(exc)
            log.warning("message %s rejected: %s", pk, exc)
        except MessageDeferred as exc:
            message.status, message.error = Status.DEFERRED, str(exc)
        else:
            message.status = Status.PROCESSED
        message.save()
    return True


def _dispatch(message: Message) -> None:
    try:
        document = wire.decode(bytes(message.payload))
    except wire.WireError as exc:
        raise MessageRejected(str(exc)) from None
    _describe(message, document)
    if document.sender.address.lower() != message.sender.lower():
        raise MessageRejected(
            f"The document says it is from {document.sender.address}, "
            f"but the message came from {message.sender}."
        )
    agent = agent_for(document.type)
    if agent is None or not agent.owns_address(message.recipient):
        raise MessageRejected(f"No {document.type} agent receives mail at {message.recipient}.")
    duplicate = _earlier_copy(message)
    if duplicate is not None:
        message.error = f"Duplicate of message {duplicate}; nothing to do."
        return
    # A savepoint: a handler that rejects or defers leaves no trace of its writes.
    with transaction.atomic():
        agent.handle(message, document)


def _describe(message: Message, document: wire.Document) -> None:
    header = document.model_dump(mode="json", exclude={"changes", "entries"})
    items = document.changes if document.type == "export" else document.entries
    header["count"] = len(items)
    message.summary = header
    message.kind = document.type
    message.batch, message.part, message.parts = document.batch, document.part, document.parts
    message.sequence = document.sequence
    if document.type == "export":
        message.usn_from, message.usn_through = document.usn_from, document.usn_through
    else:
        message.usn_from, message.usn_through = document.after, document.through


def _earlier_copy(message: Message) -> int | None:
    return (
        Message.objects.filter(
            direction=Direction.INBOUND,
            status=Status.PROCESSED,
            sender__iexact=message.sender,
            batch=message.batch,
            part=message.part,
        )
        .exclude(pk=message.pk)
        .values_list("pk", flat=True)
        .first()
    )


def retry_deferred(organization_id: int) -> int:
    """Give deferred messages of an organization another go after an earlier part was applied."""
    return Message.objects.filter(
        direction=Direction.INBOUND, status=Status.DEFERRED, organization_id=organization_id
    ).update(status=Status.RECEIVED)


def pump(max_rounds: int = 1000) -> int:
    """Deliver local messages and process received ones until nothing moves."""
    moved_total = 0
    for _ in range(max_rounds):
        moved = deliver_pending() + process_pending()
        if not moved:
            break
        moved_total += moved
    return moved_total
