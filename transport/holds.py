"""Holding batches for an administrator (docs/protocol.md, rule 11): nothing destructive happens
unattended.

An agent's guard (the master's for an export, a requestor's for a reply) raises MessageHeld
from inside the savepoint that applies a part, so what the part would have written is rolled
back and the message stays in the archive as held, with a Hold that says what it would have
deleted. Every later message from the same sender to the same organization is held behind it,
in order. An administrator approves the hold (the held messages are then processed in arrival
order, the approved batch without its guard: exactly as it would have been applied) or rejects
it (the held messages are discarded; the agent is told, so it can ask for the batch again).
Other organizations never wait: a hold is per (organization, sender).
"""

import logging
from dataclasses import dataclass

from django.db import transaction
from django.db.models.functions import Lower
from django.utils import timezone

from transport.constants import Direction, Status
from transport.exceptions import MessageHeld
from transport.models import Hold, Message
from transport.registry import agent_at

log = logging.getLogger(__name__)

SAMPLE_SIZE = 10
HELD_PREFIX = "Held for an administrator: "


class HoldDecided(Exception):
    """The hold was decided already (by another administrator, or just now)."""


@dataclass(frozen=True)
class Threshold:
    """When a batch deletes too much: more than `limit` entries, or more than `percent` of the
    live entries once it deletes at least `floor` of them (removing one person of four is an
    ordinary day, not an accident)."""

    limit: int
    percent: int
    floor: int

    def trips(self, deletes: int, live: int) -> bool:
        if deletes > self.limit:
            return True
        if self.percent >= 100 or deletes < max(self.floor, 1):
            return False
        return deletes * 100 > self.percent * live

    def explain(self, deletes: int, live: int, what: str) -> str:
        share = f"{100.0 * deletes / live:.0f} %" if live else "all"
        return (
            f"It would delete {deletes} of {live} {what} ({share}); the guard holds more than "
            f"{self.limit}, or more than {self.percent} % from {self.floor} on."
        )


def judge(
    threshold: Threshold,
    deletes: int,
    live: int,
    *,
    what: str,
    peer: str,
    sample: list[str],
) -> None:
    """Raise MessageHeld when the deletes trip the threshold."""
    if threshold.trips(deletes, live):
        raise MessageHeld(
            HELD_PREFIX + threshold.explain(deletes, live, what),
            deletes=deletes,
            live=live,
            sample=sample[:SAMPLE_SIZE],
            peer=peer,
        )


def waived(organization_id: int, sender: str, batch) -> bool:
    """Whether an administrator approved this batch: its parts pass the guard."""
    return Hold.objects.filter(
        organization_id=organization_id,
        sender__iexact=sender,
        batch=batch,
        decision=Hold.Decision.APPROVED,
    ).exists()


def _held_from(organization_id: int, sender: str):
    return Message.objects.filter(
        direction=Direction.INBOUND,
        status=Status.HELD,
        organization_id=organization_id,
        sender__iexact=sender,
    )


def refuse_to_pass(message: Message) -> None:
    """A message never overtakes a held one from the same sender: it is held behind it."""
    earlier = (
        _held_from(message.organization_id, message.sender)
        .exclude(pk=message.pk)
        .order_by("id")
        .values_list("pk", flat=True)
        .first()
    )
    if earlier is not None:
        raise MessageHeld(
            f"Held behind message {earlier} from {message.sender}, which waits for an "
            "administrator: batches of one organization are applied in order."
        )


def record(message: Message, document, held: MessageHeld) -> Hold | None:
    """After a message was held: the Hold of a batch that tripped a guard, and the agent told."""
    hold = None
    if held.trips_guard and message.batch is not None:
        hold, _ = Hold.objects.get_or_create(
            organization_id=message.organization_id,
            kind=message.kind,
            sender=message.sender.lower(),
            batch=message.batch,
            defaults={
                "recipient": message.recipient,
                "peer": held.peer,
                "message": message,
                "reason": str(held),
                "deletes": held.deletes,
                "live": held.live,
                "sample": held.sample,
            },
        )
        log.warning("message %s held: %s", message.pk, held)
    agent = agent_at(message.recipient)
    if agent is not None and agent.held is not None:
        agent.held(message, document, held, hold)
    return hold


def pending(organization_id: int | None = None):
    holds = Hold.objects.filter(decision=Hold.Decision.PENDING)
    if organization_id is not None:
        holds = holds.filter(organization_id=organization_id)
    return holds


def _decide(hold_pk: int, decision: str, user) -> Hold:
    hold = Hold.objects.select_for_update().filter(pk=hold_pk).first()
    if hold is None or hold.decision != Hold.Decision.PENDING:
        raise HoldDecided("This batch was decided already; reload the page to see how.")
    hold.decision = decision
    hold.decided_by = user if user is not None and user.is_authenticated else None
    hold.decided_at = timezone.now()
    hold.save(update_fields=["decision", "decided_by", "decided_at"])
    return hold


def approve(hold_pk: int, user=None) -> Hold:
    """Apply the held batch exactly as it would have been, then what waited behind it, in
    order. A later batch that trips the guard again is held again, with what follows it."""
    with transaction.atomic():
        hold = _decide(hold_pk, Hold.Decision.APPROVED, user)
        _tell(hold)
        release(hold.organization_id, hold.sender)
    return hold


def reject(hold_pk: int, user=None) -> Hold:
    """Discard the held batch and everything held behind it (they carry the same changes: the
    sender sends them again, or the agent asks for everything again)."""
    with transaction.atomic():
        hold = _decide(hold_pk, Hold.Decision.REJECTED, user)
        who = getattr(hold.decided_by, "username", "") or "an administrator"
        when = timezone.localtime(hold.decided_at).strftime("%Y-%m-%d %H:%M")
        held = _held_from(hold.organization_id, hold.sender)
        held.filter(batch=hold.batch).update(
            status=Status.REJECTED,
            error=f"Rejected by {who} at {when}: {hold.reason}",
            processed_at=hold.decided_at,
        )
        held.update(
            status=Status.REJECTED,
            error=f"Discarded with batch {hold.batch}, rejected by {who} at {when}.",
            processed_at=hold.decided_at,
        )
        _tell(hold)
    return hold


def _tell(hold: Hold) -> None:
    agent = agent_at(hold.recipient)
    if agent is not None and agent.decided is not None:
        agent.decided(hold)


def release(organization_id: int, sender: str) -> int:
    """Process the messages held from `sender` in arrival order, now; return how many. Runs in
    one transaction, so no other worker sees them until they are all done."""
    from transport.inbox import process_message

    with transaction.atomic():
        pks = list(_held_from(organization_id, sender).order_by("id").values_list("pk", flat=True))
        Message.objects.filter(pk__in=pks).update(
            status=Status.RECEIVED, error="", next_attempt_at=None
        )
        for pk in pks:
            process_message(pk)
    return len(pks)


def release_stragglers() -> int:
    """Held messages with nothing left to wait for (a message held behind another in the moment
    that one was released, or a quarantine lifted in the admin): processed in order."""
    released = 0
    held = Message.objects.filter(direction=Direction.INBOUND, status=Status.HELD)
    for organization_id, sender in set(held.values_list("organization_id", Lower("sender"))):
        if pending(organization_id).filter(sender__iexact=sender).exists():
            continue
        first = _held_from(organization_id, sender).order_by("id").first()
        agent = agent_at(first.recipient) if first else None
        if (
            agent is not None
            and agent.holding is not None
            and agent.holding(organization_id, sender)
        ):
            continue
        released += release(organization_id, sender)
    return released


def held_messages(organization_id: int, sender: str):
    """The messages held from a sender, oldest first."""
    return _held_from(organization_id, sender).order_by("id")


def waiting(hold: Hold) -> int:
    """How many messages wait behind a pending hold: those held from its sender, its own batch's
    included (the Held batches page and the API show this count); none once it is decided."""
    if hold.decision != Hold.Decision.PENDING:
        return 0
    return held_messages(hold.organization_id, hold.sender).count()
