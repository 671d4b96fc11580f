"""Two workers process two parts of one reply at once (transport.inbox.in_order): a part that
finds its predecessor not applied yet is deferred, and the predecessor hands it over when it is
applied, whichever commits first. Without the organization's turn, part 2 could decide to wait
and commit that just after part 1 looked for waiting parts: it would wait for the sweep."""

import threading
import uuid

import pytest
from django.db import connections, transaction

from requestor.cycle import run_cycle
from requestor.models import RequestorConfig
from tests.engine.conftest import MASTER_DN, build_scenario
from tests.engine.helpers import in_thread
from tests.transport.documents import NOW_MS
from tests.transport.test_inbox import master_reply, receive
from transport import inbox, registry
from transport.constants import Direction, Status
from transport.models import Message
from transport.outbox import deliver_pending

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

# How long part 2's worker waits, once it decided to defer, for part 1's worker to finish.
PAUSE_SECONDS = 3


def test_it_hands_over_a_part_deferred_while_its_predecessor_is_applied(monkeypatch):
    org2 = build_scenario()["ORG2"]
    epoch, batch = uuid.uuid4(), str(uuid.uuid4())
    RequestorConfig.objects.filter(pk=org2.config.pk).update(master_epoch=epoch)
    first = receive(MASTER_DN, org2.config.dn, master_reply(epoch, 0, 5, batch, 1))
    second = receive(MASTER_DN, org2.config.dn, master_reply(epoch, 5, 9, batch, 2))
    decided, first_done = threading.Event(), threading.Event()
    save = Message.save

    def pausing_save(message, *args, **kwargs):
        # Part 2's worker, between deciding to wait and committing that.
        if message.pk == second.pk and message.status == Status.DEFERRED:
            decided.set()
            first_done.wait(PAUSE_SECONDS)
        return save(message, *args, **kwargs)

    monkeypatch.setattr(Message, "save", pausing_save)

    def process(pk: int, done: threading.Event | None = None) -> None:
        try:
            inbox.process_message(pk)
        finally:
            connections.close_all()
            if done is not None:
                done.set()

    late = threading.Thread(target=process, args=(second.pk,))
    late.start()
    assert decided.wait(30), "part 2 was not deferred"
    early = threading.Thread(target=process, args=(first.pk, first_done))
    early.start()
    late.join(30)
    early.join(30)

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == Status.PROCESSED
    # Handed over again by part 1: received, to be processed now, not waiting for the sweep.
    assert second.status == Status.RECEIVED
    inbox.process_pending()
    second.refresh_from_db()
    assert second.status == Status.PROCESSED


def test_the_sweep_passes_over_an_organization_another_worker_is_applying():
    """A worker sweeping the inbox does not wait for the turn of an organization another one
    is applying messages for: it takes the next organization's, and leaves the first untouched
    for when the turn is free."""
    scenario = build_scenario()
    org2, org3 = scenario["ORG2"], scenario["ORG3"]
    messages = []
    for sequence, org in enumerate((org2, org3), start=NOW_MS):
        epoch = uuid.uuid4()
        RequestorConfig.objects.filter(pk=org.config.pk).update(master_epoch=epoch)
        payload = master_reply(epoch, 0, 5, str(uuid.uuid4()), 1, sequence)
        messages.append(receive(MASTER_DN, org.config.dn, payload))
    busy, free = messages
    taken, release = threading.Event(), threading.Event()

    def apply_for_org2() -> None:
        try:
            with transaction.atomic():
                inbox.in_order(registry.agent_at(org2.config.dn), org2.organization.pk)
                taken.set()
                release.wait(30)
        finally:
            connections.close_all()

    worker = threading.Thread(target=apply_for_org2)
    worker.start()
    try:
        assert taken.wait(30)
        assert inbox.process_message(busy.pk, wait=False) is inbox.TURN_TAKEN
        assert not inbox.TURN_TAKEN  # false, as every outcome that handled nothing
        assert inbox.process_pending() == 1
        busy.refresh_from_db()
        free.refresh_from_db()
        assert (busy.status, busy.attempts, busy.processed_at) == (Status.RECEIVED, 0, None)
        assert free.status == Status.PROCESSED
    finally:
        release.set()
        worker.join(30)
    assert inbox.process_pending() == 1
    busy.refresh_from_db()
    assert busy.status == Status.PROCESSED


def test_the_master_takes_turns_per_requestor():
    """Two requestors' exports to one master: a worker sweeping the inbox while another one
    applies a requestor's export passes over that requestor's next one, but takes the other
    requestor's (checks and decodes it, then waits for the master's row lock, which this test
    does not hold). The master applies exports one at a time under that lock anyway."""
    scenario = build_scenario()
    org2, org3 = scenario["ORG2"], scenario["ORG3"]
    for org in (org2, org3):
        run_cycle(org.config.pk)
    deliver_pending()
    exports = {
        message.sender: message
        for message in Message.objects.filter(
            direction=Direction.INBOUND, status=Status.RECEIVED, recipient=MASTER_DN
        )
    }
    busy, free = exports[org2.config.dn], exports[org3.config.dn]
    agent = registry.agent_at(MASTER_DN)
    taken, release = threading.Event(), threading.Event()

    def apply_for_org2() -> None:
        with transaction.atomic():
            # (The sender's address in another case is the same requestor's turn.)
            inbox.in_order(agent, agent.organization_at(MASTER_DN), sender=busy.sender.upper())
            taken.set()
            release.wait(30)

    worker = in_thread(apply_for_org2)
    try:
        assert taken.wait(30)
        assert inbox.process_message(busy.pk, wait=False) is inbox.TURN_TAKEN
        assert inbox.process_message(free.pk, wait=False) is True
        busy.refresh_from_db()
        free.refresh_from_db()
        assert (busy.status, busy.attempts) == (Status.RECEIVED, 0)
        assert (free.status, free.error) == (Status.PROCESSED, "")
    finally:
        release.set()
        worker.join(30)
    assert inbox.process_message(busy.pk, wait=False) is True
    busy.refresh_from_db()
    assert busy.status == Status.PROCESSED


def test_a_message_passed_over_is_not_held_from_its_own_task(monkeypatch):
    """The sweep looks at the organization's turn before it locks the message: the task that
    processes that message meanwhile (it waits for the turn) finds it free, rather than leaving
    it for the next sweep."""
    scenario = build_scenario()
    org2 = scenario["ORG2"]
    epoch = uuid.uuid4()
    RequestorConfig.objects.filter(pk=org2.config.pk).update(master_epoch=epoch)
    message = receive(MASTER_DN, org2.config.dn, master_reply(epoch, 0, 5, str(uuid.uuid4()), 1))
    held, looked, tried, release = (threading.Event() for _ in range(4))
    take = inbox.in_order

    def looking(agent, organization_id, wait=True, sender=""):
        taken = take(agent, organization_id, wait, sender)
        if not wait and not taken:
            looked.set()
            tried.wait(10)  # the task tries the message while the sweep is here
        return taken

    monkeypatch.setattr(inbox, "in_order", looking)

    def hold_turn():
        with transaction.atomic():
            take(registry.agent_at(org2.config.dn), org2.organization.pk)
            held.set()
            release.wait(30)

    holder = in_thread(hold_turn)
    assert held.wait(30)  # else the sweep may take the turn first and never pass over
    sweep = in_thread(inbox.process_pending)
    assert looked.wait(30)
    task = in_thread(inbox.process_message, message.pk)
    task.join(1)  # it waits for the turn (without the fix: it found the message locked)
    tried.set()
    sweep.join(30)
    release.set()
    for thread in (holder, task):
        thread.join(30)

    message.refresh_from_db()
    assert message.status == Status.PROCESSED


def test_one_message_processed_on_its_own_waits_for_its_organizations_turn():
    """The Celery task for one message (transport.tasks.process_message runs process_safely)
    waits while another worker holds the organization's turn, then applies the message: it is
    the sweep that passes over, not the task."""
    scenario = build_scenario()
    org2 = scenario["ORG2"]
    epoch = uuid.uuid4()
    RequestorConfig.objects.filter(pk=org2.config.pk).update(master_epoch=epoch)
    message = receive(MASTER_DN, org2.config.dn, master_reply(epoch, 0, 5, str(uuid.uuid4()), 1))
    taken, release = threading.Event(), threading.Event()

    def hold_turn():
        with transaction.atomic():
            inbox.in_order(registry.agent_at(org2.config.dn), org2.organization.pk)
            taken.set()
            release.wait(30)

    holder = in_thread(hold_turn)
    assert taken.wait(30)
    outcome = []
    task = in_thread(lambda: outcome.append(inbox.process_safely(message.pk)))
    task.join(2)
    try:
        assert task.is_alive()
        assert outcome == []
    finally:
        release.set()
        for thread in (holder, task):
            thread.join(30)

    assert outcome == [True]
    message.refresh_from_db()
    assert message.status == Status.PROCESSED
