"""A permanently refused export fails its run at once, with the reason, and the organization
shows failing; the next cycle after the fix sends the changes again."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from console.status import State, organization_status
from directory import changes
from master import processing
from master.models import AllowedRequestor, MasterConfig
from master.quarantine import quarantine
from requestor.constants import RunStatus
from requestor.housekeeping import fail_stalled_runs
from requestor.models import Run
from tests.engine.helpers import (
    assert_converged,
    cycle,
    duplicate,
    inbound,
    outbound,
    queue_cycle,
    synced_fixtures,
)
from transport import inbox, wire
from transport.constants import Direction, MessageKind, Status
from transport.exceptions import MessageHeld, MessageRejected
from transport.inbox import pump
from transport.models import Message

synced_base, synced = synced_fixtures()


def test_it_fails_the_run_the_master_refuses_and_recovers_after_the_fix(synced):
    org2 = synced["ORG2"]
    person = org2.people[0]
    person.title = "Waiting for the fix"
    changes.save_recipient(person)
    AllowedRequestor.objects.filter(organization_name="ORG2").update(enabled=False)

    run = cycle(org2)

    assert run.status == RunStatus.FAILED
    assert "could not reach the master" in run.error
    assert "is disabled on this master" in run.error
    sent = outbound(kind=MessageKind.EXPORT, batch=run.batch).get()
    assert sent.status == Status.FAILED
    status = organization_status(org2.organization)
    assert (status.state, status.reason) == (State.FAILING, run.error)

    AllowedRequestor.objects.filter(organization_name="ORG2").update(enabled=True)
    again = cycle(org2)

    assert again.status == RunStatus.OK and again.exported == 1
    assert organization_status(org2.organization).state == State.OK
    for org in synced.others("ORG2"):
        cycle(org)
    assert_converged(synced)


def test_a_waiting_run_without_a_reply_turns_failing_then_is_superseded(synced):
    org2 = synced["ORG2"]
    lost = queue_cycle(org2)
    outbound(status=Status.QUEUED).delete()  # lost in the mail
    # Two hours pass without a reply.
    earlier = Run.objects.filter(config=org2.config)
    earlier.exclude(pk=lost.pk).update(started_at=timezone.now() - timedelta(hours=3))
    earlier.filter(pk=lost.pk).update(started_at=timezone.now() - timedelta(hours=2))

    status = organization_status(org2.organization)
    assert status.state == State.FAILING
    assert "No reply from the master" in status.reason

    done = cycle(org2)
    fail_stalled_runs()  # the housekeeping every few minutes
    lost.refresh_from_db()

    assert done.status == RunStatus.OK
    assert lost.status == RunStatus.SUPERSEDED
    assert f"run {done.pk} carried these changes again" in lost.error
    assert organization_status(org2.organization).state == State.OK


def test_a_replayed_copy_fails_no_run(synced):
    org2 = synced["ORG2"]
    run = queue_cycle(org2)
    pump()
    sent = outbound(kind=MessageKind.EXPORT, batch=run.batch).get()
    duplicate(inbound(kind=MessageKind.EXPORT, batch=run.batch).get())
    pump()
    run.refresh_from_db()
    sent.refresh_from_db()
    assert run.status == RunStatus.OK
    assert sent.status == Status.SENT


def test_a_refusal_fails_only_the_sent_copy_it_names(synced):
    """Only a refusal naming the same sender, recipient, batch and part fails a sent copy: a
    look-alike from another sender, to another agent, or of another batch or part, leaves every
    copy as it was."""
    sent = outbound(kind=MessageKind.EXPORT, sender__icontains="ORG2", status=Status.SENT).last()

    def refusal(**changed) -> Message:
        fields = {
            "sender": sent.sender,
            "recipient": sent.recipient,
            "batch": sent.batch,
            "part": sent.part,
            "error": "Refused for the test.",
        }
        return Message(direction=Direction.INBOUND, status=Status.REJECTED, **{**fields, **changed})

    for look_alike in (
        refusal(sender="/o=ORG9/ou=Site/cn=Recipients/cn=REQUESTOR"),
        refusal(recipient="/o=ORG9/ou=Site/cn=Recipients/cn=MASTER"),
        refusal(batch=uuid.uuid4()),
        refusal(part=sent.part + 1),
    ):
        inbox.refused_here(look_alike)
        sent.refresh_from_db()
        assert sent.status == Status.SENT
    assert outbound(status=Status.FAILED).count() == 0

    inbox.refused_here(refusal(sender=sent.sender.upper()))
    sent.refresh_from_db()
    failed = (Status.FAILED, f"Refused by {sent.recipient}: Refused for the test.")
    assert (sent.status, sent.error) == failed

    # A copy failed already stays as it failed first (another copy refused, as a replay).
    inbox.refused_here(refusal(error="A copy of a message already accepted."))
    sent.refresh_from_db()
    assert (sent.status, sent.error) == failed


def test_a_disabled_master_refuses_an_export_and_says_so(synced):
    org2 = synced["ORG2"]
    MasterConfig.objects.update(enabled=False)

    run = cycle(org2)

    assert run.status == RunStatus.FAILED
    assert f"The master at {org2.config.master_address} is disabled." in run.error


def test_no_master_is_locked_at_an_address_none_receives_at(synced):
    # (A master removed after its message was routed to it.)
    with pytest.raises(MessageRejected) as refused:
        processing.lock_master("/o=ORG1/cn=NOBODY")

    assert str(refused.value) == "No master receives mail at /o=ORG1/cn=NOBODY."


def test_a_master_names_why_it_refuses_a_sender(synced):
    master = MasterConfig.objects.get()
    requestor = AllowedRequestor.objects.get(organization_name="ORG2")
    sender = requestor.address.upper()  # addresses and names compare in any case

    def refusal(sender: str, organization: str) -> str:
        with pytest.raises(MessageRejected) as refused:
            processing.allowed_requestor(master, sender, organization)
        return str(refused.value)

    assert processing.allowed_requestor(master, sender, "org2") == requestor
    assert refusal("stranger@far.example", "ORG2") == (
        "stranger@far.example is not a requestor address of this master; an administrator "
        "must add it to the Requestor E-mail Addresses on the Master Configuration page."
    )
    assert refusal(sender, "ORG3") == (
        f"{sender} speaks for ORG2, but the export claims to come from ORG3."
    )
    AllowedRequestor.objects.filter(pk=requestor.pk).update(enabled=False)
    assert refusal(sender, "ORG2") == f"The requestor {sender} is disabled on this master."


def test_a_quarantined_requestors_export_is_held_with_the_reason(synced):
    # The inbox holds a quarantined sender's messages before they reach the master; the master
    # holds them itself too, for one quarantined in between.
    org2 = synced["ORG2"]
    run = queue_cycle(org2)
    message = outbound(kind=MessageKind.EXPORT, batch=run.batch).get()
    requestor = AllowedRequestor.objects.get(organization_name="ORG2")
    quarantine(requestor, "Refused messages")
    requestor.refresh_from_db()

    with pytest.raises(MessageHeld) as held:
        processing.handle_export(message, wire.decode(bytes(message.payload)))

    assert str(held.value) == (
        f"ORG2 is quarantined on this master since {requestor.quarantined_at:%Y-%m-%d %H:%M} "
        "UTC (Refused messages). Its messages are kept and applied in order when an "
        "administrator releases it."
    )
