"""Quarantine of a requestor on the master, and what the master does around its held batches.

A quarantined requestor's exports are archived, held, and applied in order when it is
released; every other requestor goes on syncing. A requestor is quarantined when its export
trips the mass-delete guard (released by approving or rejecting that batch), when its messages
are refused too many times in a row (bad signatures, a wrong sender), or by an administrator.
The requestor hears of it: each held batch is answered with a notice (a reply that applies
nothing, with the reason), and a rejected one with a request for a full export.
"""

import uuid

from django.db import transaction
from django.utils import timezone

from master.models import AllowedRequestor, MasterConfig
from transport import holds, outbox, signing, wire
from transport.constants import PROTOCOL_VERSION, AddressType, Direction, MessageKind
from transport.models import Hold, Message


class QuarantineError(Exception):
    """A quarantine that cannot be released this way; the message says what to do."""


def _requestor(organization_id: int, sender: str) -> AllowedRequestor | None:
    return (
        AllowedRequestor.objects.select_related("master__organization")
        .filter(master__organization_id=organization_id, address__iexact=sender)
        .first()
    )


def holding(organization_id: int, sender: str) -> str | None:
    """Why the master holds what this sender sends now, or None."""
    requestor = _requestor(organization_id, sender)
    if requestor is None or not requestor.quarantined:
        return None
    return requestor.quarantine_reason or "quarantined"


def quarantine(requestor: AllowedRequestor, reason: str, user=None) -> bool:
    """Quarantine a requestor; False when it was already."""
    user = user if user is not None and user.is_authenticated else None
    now = timezone.now()
    quarantined = AllowedRequestor.objects.filter(
        pk=requestor.pk, quarantined_at__isnull=True
    ).update(quarantined_at=now, quarantine_reason=reason[:2000], quarantined_by=user)
    if quarantined:
        requestor.quarantined_at, requestor.quarantine_reason = now, reason[:2000]
        requestor.quarantined_by = user
    return bool(quarantined)


def release(requestor: AllowedRequestor) -> int:
    """Lift a quarantine and apply what waited, in order; return how many messages ran. A batch
    the guard holds is released by approving or rejecting it instead."""
    organization_id = requestor.master.organization_id
    if holds.pending(organization_id).filter(sender__iexact=requestor.address).exists():
        raise QuarantineError(
            f"A batch of {requestor.organization_name} is held for its deletes: approve or "
            "reject it on the Held batches page; that releases the quarantine."
        )
    with transaction.atomic():
        _lift(requestor)
        return holds.release(organization_id, requestor.address)


def _lift(requestor: AllowedRequestor) -> None:
    AllowedRequestor.objects.filter(pk=requestor.pk).update(
        quarantined_at=None, quarantine_reason="", quarantined_by=None, refusals=0
    )
    requestor.quarantined_at, requestor.quarantine_reason = None, ""
    requestor.quarantined_by, requestor.refusals = None, 0


def held(message: Message, document, exc, hold: Hold | None) -> None:
    """After the inbox held an export: a guard's hold quarantines the requestor, and the
    requestor is told, once per batch, that its export waits."""
    requestor = _requestor(message.organization_id, message.sender)
    if requestor is None:
        return
    if hold is not None:
        why = hold.reason.removeprefix(holds.HELD_PREFIX)
        quarantine(requestor, f"Mass delete held: {why}")
    if document is not None:
        send_notice(requestor, document.batch, str(exc), document.master_usn)


def decided(hold: Hold) -> None:
    """An administrator decided a held export: the quarantine the guard set is lifted; a
    rejected batch makes the master ask the requestor for a full export."""
    requestor = _requestor(hold.organization_id, hold.sender)
    if requestor is None:
        return
    _lift(requestor)
    if hold.decision == Hold.Decision.REJECTED:
        AllowedRequestor.objects.filter(pk=requestor.pk).update(full_export_wanted=True)
        requestor.full_export_wanted = True
        who = getattr(hold.decided_by, "username", "") or "an administrator"
        send_notice(
            requestor,
            hold.batch,
            f"Rejected by {who} at the master: {hold.reason} Nothing of it was applied; the "
            "next cycle sends a full export.",
            requestor.reported_master_usn,
            export_all=True,
        )


def refused(message: Message) -> None:
    """A message from a requestor was refused (a bad signature, a wrong sender...): after too
    many in a row, the requestor is quarantined."""
    requestor = _requestor(message.organization_id, message.sender) if message.sender else None
    if requestor is None:
        return
    AllowedRequestor.objects.filter(pk=requestor.pk).update(refusals=requestor.refusals + 1)
    refusals = requestor.refusals + 1
    limit = requestor.master.quarantine_after_refusals
    if limit and refusals >= limit and not requestor.quarantined:
        quarantine(
            requestor,
            f"{refusals} messages refused in a row; the last: {message.error}",
        )


def send_notice(
    requestor: AllowedRequestor,
    batch,
    reason: str,
    master_usn: int,
    export_all: bool = False,
) -> None:
    """A reply to `batch` that applies nothing and says why; once per batch and kind."""
    master = MasterConfig.objects.select_for_update(no_key=True).select_related("organization")
    master = master.get(pk=requestor.master_id)
    answered = Message.objects.filter(
        direction=Direction.OUTBOUND,
        kind=MessageKind.REPLY,
        organization_id=master.organization_id,
        recipient__iexact=requestor.address,
        summary__in_reply_to=str(batch),
        summary__held__isnull=False,
        summary__export_all=export_all,
    )
    if answered.exists():
        return
    sender = master.dn if requestor.address_type == AddressType.EX else master.address
    master.sequence = signing.next_sequence(master.sequence)
    usn = min(master_usn, master.usn)
    document = {
        "protocol": PROTOCOL_VERSION,
        "type": MessageKind.REPLY.value,
        "sender": {"organization": master.organization.name, "address": sender},
        "batch": str(uuid.uuid4()),
        "part": 1,
        "parts": 1,
        "sequence": master.sequence,
        "full": False,
        "in_reply_to": str(batch),
        "epoch": str(master.epoch),
        "ack": requestor.acked_usn,
        "after": usn,
        "through": usn,
        "held": " ".join(reason.split())[:2000],
        "export_all": export_all,
        "entries": [],
    }
    outbox.queue(master.organization_id, sender, requestor.address, document, wire.encode(document))
    MasterConfig.objects.filter(pk=master.pk).update(sequence=master.sequence)
