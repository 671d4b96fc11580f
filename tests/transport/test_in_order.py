"""Two workers process two parts of one reply at once (transport.inbox.in_order): a part that
finds its predecessor not applied yet is deferred, and the predecessor hands it over when it is
applied, whichever commits first. Without the organization's turn, part 2 could decide to wait
and commit that just after part 1 looked for waiting parts: it would wait for the sweep."""

import threading
import uuid

import pytest
from django.db import connections

from requestor.models import RequestorConfig
from tests.engine.conftest import MASTER_DN, build_scenario
from tests.transport.test_inbox import master_reply, receive
from transport import inbox
from transport.constants import Status
from transport.models import Message

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
