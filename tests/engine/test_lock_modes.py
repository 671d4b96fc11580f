"""The row locks that serialize writers hold up only other writers of the same row.

An import holds its organization's row (the local USN counter) and its requestor's row to
commit, and the master holds its own row while it applies an export. They are taken FOR NO KEY
UPDATE: a row that names a locked one (an outbound message naming the organization, a queued
run naming the requestor) goes in meanwhile, as PostgreSQL's key-share check of a foreign key
allows. Taken FOR UPDATE, they kept the master's reply to another requestor, and an
administrator's Execute Now, waiting until the whole import had committed.
"""

import threading

import pytest
from django.contrib.auth.models import User
from django.db import connection

from requestor import actions, importer
from requestor.constants import RunStatus
from requestor.cycle import run_cycle, sync_all
from requestor.models import Run
from tests.engine.conftest import build_scenario
from tests.engine.helpers import cycle, in_thread
from transport.constants import Direction, MessageKind, Status
from transport.inbox import process_pending
from transport.models import Message
from transport.outbox import deliver_pending

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def importing(monkeypatch):
    """ORG1 (the master's organization, a requestor too) in the middle of importing a reply:
    its rows are locked as the import locks them, until the test lets it commit."""
    scenario = build_scenario()
    sync_all()
    scenario["ORG2"].add(display_name="Someone New")
    cycle(scenario["ORG2"])
    run_cycle(scenario["ORG1"].config.pk)
    deliver_pending()
    process_pending()  # the master answers ORG1's export
    deliver_pending()
    reply = Message.objects.get(direction=Direction.INBOUND, status=Status.RECEIVED)
    assert reply.kind == MessageKind.REPLY and reply.organization_id is None

    holding, release = threading.Event(), threading.Event()
    write = importer._write

    def write_then_hold(*args):
        write(*args)
        holding.set()
        release.wait(30)

    monkeypatch.setattr(importer, "_write", write_then_hold)
    thread = in_thread(process_pending)
    assert holding.wait(30), "ORG1's import never reached its writes"
    try:
        yield scenario, reply
    finally:
        release.set()
        thread.join(30)
    reply.refresh_from_db()
    assert reply.status == Status.PROCESSED, reply.error


def refuse_to_wait():
    """A statement of this session that waits for a lock fails after a second instead."""
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '1s'")


def test_the_master_answers_another_requestor_while_its_organization_imports(importing):
    scenario, reply = importing
    refuse_to_wait()
    run_cycle(scenario["ORG2"].config.pk)
    deliver_pending()
    export = Message.objects.get(
        direction=Direction.INBOUND, status=Status.RECEIVED, kind=MessageKind.EXPORT
    )

    process_pending()

    export.refresh_from_db()
    assert (export.status, export.error) == (Status.PROCESSED, "")
    answer = Message.objects.filter(
        direction=Direction.OUTBOUND, kind=MessageKind.REPLY, recipient=export.sender
    ).latest("pk")
    assert answer.organization_id == scenario["ORG1"].organization.pk
    reply.refresh_from_db()
    assert reply.status == Status.RECEIVED  # still being imported by the other session


def test_execute_now_queues_a_run_while_the_requestor_imports(importing, monkeypatch):
    scenario, reply = importing
    sent = []  # (what the broker would take: not the point here)
    monkeypatch.setattr(actions.dispatch, "send", lambda task, *args: sent.append(args))
    refuse_to_wait()
    config = scenario["ORG1"].config
    admin = User.objects.create_superuser("admin", "admin@org1.example", "pw")

    outcome = actions.execute_now(config, admin, queue=True)

    assert outcome.run.status == RunStatus.QUEUED
    assert Run.objects.filter(config=config, status=RunStatus.QUEUED).count() == 1
    assert [args[-1] for args in sent] == [outcome.run.pk]
    reply.refresh_from_db()
    assert reply.status == Status.RECEIVED
