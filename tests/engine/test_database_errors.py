"""A brief database error while a message is processed (the connection killed, a serialization
failure, a deadlock) is retried with backoff, never left failed for good: the run it answers
completes."""

import psycopg
import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from directory import changes
from master import processing
from requestor.constants import RunStatus
from requestor.cycle import run_cycle, sync_all
from tests.engine.conftest import build_scenario
from tests.engine.helpers import inbound, outbound
from transport import inbox
from transport.constants import MessageKind, Status
from transport.inbox import pump
from transport.models import Message
from transport.outbox import deliver_pending


def kill_my_connection() -> None:
    """What a database restart or an administrator's pg_terminate_backend does to a worker."""
    pid = connection.connection.info.backend_pid
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"] or 5432,
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        dbname=settings["NAME"],
        autocommit=True,
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


def make_due() -> None:
    Message.objects.filter(status=Status.RECEIVED).update(next_attempt_at=timezone.now())


def changed_export(scenario):
    org2 = scenario["ORG2"]
    person = org2.people[0]
    person.title = "Survives a killed connection"
    changes.save_recipient(person)
    return run_cycle(org2.config.pk)


@pytest.mark.postgres
def test_it_processes_again_a_message_whose_connection_was_killed(transactional_db, monkeypatch):
    scenario = build_scenario()
    sync_all()
    process_export = processing.process_export
    kills = []

    def killed_once(*args, **kwargs):
        if not kills:
            kills.append(connection.connection.info.backend_pid)
            kill_my_connection()
        return process_export(*args, **kwargs)

    monkeypatch.setattr(processing, "process_export", killed_once)
    run = changed_export(scenario)

    pump()

    export = inbound(kind=MessageKind.EXPORT).last()
    assert kills and export.status == Status.RECEIVED
    assert (export.attempts, export.next_attempt_at is not None) == (1, True)
    assert "A database error interrupted attempt 1" in export.error
    make_due()
    pump()
    export.refresh_from_db()
    run.refresh_from_db()
    assert export.status == Status.PROCESSED
    assert run.status == RunStatus.OK and run.exported == 1
    assert connection.connection.info.backend_pid != kills[0]


def test_it_retries_a_serialization_failure_with_growing_pauses(scenario, monkeypatch):
    sync_all()
    failing = OperationalError("could not serialize access due to concurrent update")

    def conflicted(*args, **kwargs):
        raise failing

    monkeypatch.setattr(processing, "process_export", conflicted)
    run = changed_export(scenario)
    pauses = []
    for _ in range(3):
        pump()
        export = inbound(kind=MessageKind.EXPORT).last()
        assert export.status == Status.RECEIVED
        assert "could not serialize access due to concurrent update" in export.error
        pauses.append(round((export.next_attempt_at - timezone.now()).total_seconds()))
        make_due()
    assert pauses == [inbox.RETRY_FIRST_SECONDS * n for n in (1, 2, 4)]

    monkeypatch.undo()
    pump()
    run.refresh_from_db()
    assert run.status == RunStatus.OK
    export.refresh_from_db()
    # Every attempt is counted, the one that went through too; nothing waits any more.
    assert (export.status, export.attempts, export.next_attempt_at, export.error) == (
        Status.PROCESSED,
        4,
        None,
        "",
    )


def test_it_gives_up_after_many_attempts_keeping_the_message(scenario, monkeypatch):
    sync_all()

    def broken(*args, **kwargs):
        raise OperationalError("deadlock detected")

    monkeypatch.setattr(processing, "process_export", broken)
    changed_export(scenario)
    for _ in range(inbox.MAX_ATTEMPTS):
        pump()
        make_due()

    export = inbound(kind=MessageKind.EXPORT).last()
    assert export.status == Status.FAILED
    assert export.error.startswith(f"Database errors at {inbox.MAX_ATTEMPTS} attempts")
    assert bytes(export.payload)


def exports_with_org2_failing(scenario, monkeypatch) -> None:
    """After a first sync, ORG2 and ORG3 each export a change; applying ORG2's meets a
    database error (a deadlock), ORG3's goes through."""
    sync_all()
    process_export = processing.process_export

    def org2_fails(master, requestor, document, *args, **kwargs):
        if requestor.organization_name == "ORG2":
            raise OperationalError("deadlock detected")
        return process_export(master, requestor, document, *args, **kwargs)

    monkeypatch.setattr(processing, "process_export", org2_fails)
    for name in ("ORG2", "ORG3"):
        person = scenario[name].people[0]
        person.title = f"Changed in {name}"
        changes.save_recipient(person)
        run_cycle(scenario[name].config.pk)


def test_an_error_on_one_message_leaves_the_others_alone(scenario, monkeypatch):
    """The retry bookkeeping touches the failing message only: another organization's export
    received beside it is processed as usual, and a message already processed is never put
    back to waiting."""
    exports_with_org2_failing(scenario, monkeypatch)
    pump()

    failing = inbound(kind=MessageKind.EXPORT, sender__icontains="ORG2").last()
    other = inbound(kind=MessageKind.EXPORT, sender__icontains="ORG3").last()
    assert (failing.status, failing.attempts) == (Status.RECEIVED, 1)
    processed = (Status.PROCESSED, 1, None, "")
    assert (other.status, other.attempts, other.next_attempt_at, other.error) == processed

    for attempts in (1, inbox.MAX_ATTEMPTS - 1):  # trying again, or giving up
        Message.objects.filter(pk=other.pk).update(attempts=attempts)
        inbox._retry_later(other.pk, OperationalError("late"))
        other.refresh_from_db()
        assert (other.status, other.next_attempt_at, other.error) == (Status.PROCESSED, None, "")

    # Giving up, while the next export of ORG3 waits to be processed.
    Message.objects.filter(pk=failing.pk).update(attempts=inbox.MAX_ATTEMPTS - 1)
    run_cycle(scenario["ORG3"].config.pk)
    deliver_pending()
    waiting = inbound(kind=MessageKind.EXPORT, sender__icontains="ORG3").last()
    assert waiting.pk != other.pk and waiting.status == Status.RECEIVED
    inbox._retry_later(failing.pk, OperationalError("deadlock detected"))
    failing.refresh_from_db()
    waiting.refresh_from_db()
    assert failing.status == Status.FAILED and failing.processed_at is not None
    assert failing.attempts == inbox.MAX_ATTEMPTS
    assert (waiting.status, waiting.error, waiting.processed_at) == (Status.RECEIVED, "", None)


def test_it_says_when_a_message_waiting_after_an_error_is_due(scenario, monkeypatch):
    """retry_at, which the Celery task schedules its next attempt by: the waiting message's
    time; nothing for a message processed, or for a sent copy."""
    sync_all()

    def broken(*args, **kwargs):
        raise OperationalError("deadlock detected")

    monkeypatch.setattr(processing, "process_export", broken)
    run = changed_export(scenario)
    pump()
    waiting = inbound(kind=MessageKind.EXPORT, batch=run.batch).get()
    sent = outbound(kind=MessageKind.EXPORT, batch=run.batch).get()
    Message.objects.filter(pk=sent.pk).update(next_attempt_at=waiting.next_attempt_at)
    done = inbound(kind=MessageKind.EXPORT, status=Status.PROCESSED).first()
    Message.objects.filter(pk=done.pk).update(next_attempt_at=waiting.next_attempt_at)

    assert waiting.next_attempt_at is not None
    assert inbox.retry_at(waiting.pk) == waiting.next_attempt_at
    assert (inbox.retry_at(sent.pk), inbox.retry_at(done.pk)) == (None, None)

    # What the error says is kept on one line, and short: a hostile or huge error stays bounded.
    inbox._retry_later(waiting.pk, OperationalError("server\n  closed " + "x" * 400))
    waiting.refresh_from_db()
    assert waiting.error.endswith(" OperationalError: server closed " + "x" * 286)


def test_an_error_never_undoes_what_another_worker_did_with_the_message(scenario, monkeypatch):
    """A worker that fails on a message another worker has processed meanwhile (a task and a
    sweep racing) leaves the message as the other one left it, whatever the error."""
    sync_all()
    done = inbound(kind=MessageKind.EXPORT, status=Status.PROCESSED).first()
    before = Message.objects.filter(pk=done.pk).values().get()

    for error in (OperationalError("deadlock detected"), RuntimeError("a bug")):

        def fails(pk, wait=True, error=error):
            raise error

        monkeypatch.setattr(inbox, "process_message", fails)
        assert inbox.process_safely(done.pk) is True
        assert Message.objects.filter(pk=done.pk).values().get() == before


def test_a_message_put_to_wait_by_an_error_counts_as_handled_by_the_sweep(scenario, monkeypatch):
    """A sweep counts each message it dealt with, one it scheduled to try again after a
    database error too: a sweep of one (a worker of `sync_all --workers`) tries that message and
    returns, leaving the next one to the next sweep."""
    exports_with_org2_failing(scenario, monkeypatch)
    deliver_pending()
    failing = inbound(kind=MessageKind.EXPORT, sender__icontains="ORG2").last()
    other = inbound(kind=MessageKind.EXPORT, sender__icontains="ORG3").last()
    assert failing.pk < other.pk

    assert inbox.process_pending(1) == 1
    failing.refresh_from_db()
    other.refresh_from_db()
    assert (failing.status, failing.attempts) == (Status.RECEIVED, 1)
    assert (other.status, other.attempts) == (Status.RECEIVED, 0)

    assert inbox.process_pending() == 1  # the other; the failed one waits for its pause
    other.refresh_from_db()
    assert other.status == Status.PROCESSED
