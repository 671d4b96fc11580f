"""Outgoing messages: queued in the sender's transaction, then delivered."""

import logging

from django.db import transaction
from django.db.models import F, Q, Subquery
from django.utils import timezone

from transport import dispatch, registry, signing
from transport.constants import AddressType, Direction, MessageKind, Status, address_type_of
from transport.models import Message
from transport.registry import is_local_address

log = logging.getLogger(__name__)


def summarize(document: dict) -> dict:
    """The header of a document, with the length of its list instead of the list."""
    summary = {key: value for key, value in document.items() if key not in ("changes", "entries")}
    for key in ("changes", "entries"):
        if key in document:
            summary["count"] = len(document[key])
    return summary


def usn_range(document: dict) -> tuple[int | None, int | None]:
    if document.get("type") == MessageKind.EXPORT:
        return document["usn_from"], document["usn_through"]
    if document.get("type") == MessageKind.REPLY:
        return document["after"], document["through"]
    return None, None


def queue(organization_id: int, sender: str, recipient: str, document: dict, payload: bytes):
    """Store an outbound message part; it leaves when the surrounding transaction commits."""
    usn_from, usn_through = usn_range(document)
    signature, key_fingerprint = signing.sign(organization_id, recipient, payload)
    message = Message.objects.create(
        direction=Direction.OUTBOUND,
        status=Status.QUEUED,
        kind=document["type"],
        organization_id=organization_id,
        sender=sender,
        recipient=recipient,
        address_type=address_type_of(recipient),
        batch=document["batch"],
        part=document["part"],
        parts=document["parts"],
        sequence=document["sequence"],
        usn_from=usn_from,
        usn_through=usn_through,
        size=len(payload),
        payload=payload,
        summary=summarize(document),
        signature=signature,
        key_fingerprint=key_fingerprint,
    )
    dispatch.message_queued(message.pk)
    return message


def receive(
    sender: str,
    recipient: str,
    payload: bytes,
    address_type: str,
    *,
    signature: str = "",
    key_fingerprint: str = "",
    message_id: str = "",
    **fields,
) -> Message:
    """Archive an inbound message before anything else looks at it; processing follows commit.
    `fields` are further Message fields (the mail's digest and header, for one)."""
    fields.setdefault("size", len(payload))
    message = _archive_inbound(
        sender,
        recipient,
        address_type,
        payload=payload,
        signature=signature,
        key_fingerprint=key_fingerprint,
        message_id=message_id,
        **fields,
    )
    dispatch.message_received(message.pk)
    return message


def _archive_inbound(sender: str, recipient: str, address_type: str, **fields) -> Message:
    return Message.objects.create(
        direction=Direction.INBOUND,
        status=Status.RECEIVED,
        sender=sender,
        recipient=recipient,
        address_type=address_type,
        **fields,
    )


def deliver_pending() -> int:
    """Deliver every queued message that is due; return how many were handled."""
    due = Message.objects.filter(direction=Direction.OUTBOUND, status=Status.QUEUED).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now())
    )
    return sum(deliver(pk) for pk in due.order_by("id").values_list("pk", flat=True))


def deliver(pk: int) -> bool:
    """Deliver one queued message: EX inside this installation, anything else by SMTP."""
    address_type = (
        Message.objects.filter(pk=pk, status=Status.QUEUED)
        .values_list("address_type", flat=True)
        .first()
    )
    if address_type is None:
        return False
    if address_type == AddressType.EX:
        return deliver_locally(pk)
    from transport.smtp import send_queued

    return send_queued(pk)


def deliver_locally(pk: int) -> bool:
    with transaction.atomic():
        claimed = Message.objects.filter(pk=pk, status=Status.QUEUED).update(
            status=Status.SENT, attempts=F("attempts") + 1, processed_at=timezone.now()
        )
        if not claimed:
            return False
        # The payload (megabytes) is copied inside the database, never through Python.
        message = Message.objects.defer("payload").get(pk=pk)
        if not is_local_address(message.recipient):
            message.status = Status.FAILED
            message.error = (
                f"No agent of this installation has the EX address {message.recipient}; "
                "use the agent's SMTP address for another installation."
            )
            message.save(update_fields=["status", "error"])
            log.warning("message %s: %s", pk, message.error)
            registry.delivery_failed(message)
            return True
        received = _archive_inbound(
            message.sender,
            message.recipient,
            AddressType.EX,
            size=message.size,
            signature=message.signature,
            key_fingerprint=message.key_fingerprint,
            # Known for a copy made here: a refusal can be traced to the message sent.
            kind=message.kind,
            batch=message.batch,
            part=message.part,
            parts=message.parts,
        )
        payload = Message.objects.filter(pk=pk).values("payload")[:1]
        Message.objects.filter(pk=received.pk).update(payload=Subquery(payload))
        dispatch.message_received(received.pk)
    return True
