"""Outgoing messages: queued in the sender's transaction, then delivered."""

import logging

from django.db import transaction
from django.db.models import F
from django.utils import timezone

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
    return Message.objects.create(
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
    )


def receive(sender: str, recipient: str, payload: bytes, address_type: str) -> Message:
    """Archive an inbound message before anything else looks at it."""
    return Message.objects.create(
        direction=Direction.INBOUND,
        status=Status.RECEIVED,
        sender=sender,
        recipient=recipient,
        address_type=address_type,
        size=len(payload),
        payload=payload,
    )


def deliver_pending() -> int:
    """Deliver queued messages addressed by EX inside this installation; return how many moved."""
    delivered = 0
    queued = Message.objects.filter(
        direction=Direction.OUTBOUND, status=Status.QUEUED, address_type=AddressType.EX
    ).order_by("id")
    for pk in queued.values_list("pk", flat=True):
        delivered += deliver_locally(pk)
    return delivered


def deliver_locally(pk: int) -> bool:
    with transaction.atomic():
        claimed = Message.objects.filter(pk=pk, status=Status.QUEUED).update(
            status=Status.SENT, attempts=F("attempts") + 1, processed_at=timezone.now()
        )
        if not claimed:
            return False
        message = Message.objects.get(pk=pk)
        if not is_local_address(message.recipient):
            message.status = Status.FAILED
            message.error = (
                f"No agent of this installation has the EX address {message.recipient}; "
                "use the agent's SMTP address for another installation."
            )
            message.save(update_fields=["status", "error"])
            log.warning("message %s: %s", pk, message.error)
            return True
        receive(message.sender, message.recipient, bytes(message.payload), AddressType.EX)
    return True
