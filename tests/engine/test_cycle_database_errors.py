"""A brief database error in the middle of a requestor cycle (the connection killed, a deadlock,
a serialization failure) leaves nothing of the cycle behind but a run that says it is retrying;
the cycle runs again after a growing pause and completes that same run. The workers' task asks
Celery to retry it; the commands and the console without workers try again at once, a few times.
"""

import threading
from datetime import timedelta

import psycopg
import pytest
from django.core.management import call_command
from django.db import OperationalError, connection

from directory import changes
from master import housekeeping as master_housekeeping
from master import tasks as master_tasks
from requestor import cycle, tasks
from requestor import housekeeping as requestor_housekeeping
from requestor.constants import RunStatus, Trigger
from requestor.models import RequestorConfig, Run
from requestor.tasks import run_requestor_cycle
from tests.engine.conftest import build_scenario
from transport import faults
from transport.inbox import pump
from transport.models import Message


class Retried(Exception):
    def __init__(self, **kwargs):
        super().__init__(kwargs)
        self.kwargs = kwargs


@pytest.fixture
def retries(monkeypatch):
    """Record what a task asks of retry() instead of sending it again."""

    def fake_retry(**kwargs):
        raise Retried(**kwargs)

    monkeypatch.setattr(run_requestor_cycle, "retry", fake_retry)
    monkeypatch.setattr(master_tasks.purge_tombstones, "retry", fake_retry)


def admin_connection(**options) -> psycopg.Connection:
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname=db["NAME"],
        **options,
    )


def state(config_id: int) -> tuple:
    """What a cycle writes besides its run: the messages it queues and the requestor's row."""
    config = RequestorConfig.objects.get(pk=config_id)
    return (
        Message.objects.count(),
        config.sequence,
        config.last_export_batch,
        config.requestor_usn,
    )


def a_change(org) -> None:
    person = org.people[0]
    person.title = "Changed while the database had a fault"
    changes.save_recipient(person)


def fault_after_first_queued_part(monkeypatch, fault) -> list:
    """Run `fault` once, right after the cycle queued its first message (mid-transaction)."""
    queue = cycle.outbox.queue
    calls = []

    def queue_then_fault(*args, **kwargs):
        result = queue(*args, **kwargs)
        if not calls:
            calls.append(True)
            fault()
        return result

    monkeypatch.setattr(cycle.outbox, "queue", queue_then_fault)
    return calls


def assert_retrying(config_id: int, attempts: int, before: tuple) -> Run:
    run = Run.objects.get(config_id=config_id)
    assert (run.status, run.attempts, run.finished_at) == (RunStatus.RETRYING, attempts, None)
    assert f"A database error interrupted attempt {attempts}" in run.error
    assert "nothing was applied" in run.error
    assert state(config_id) == before, "the interrupted cycle left something behind"
    return run


@pytest.mark.postgres
def test_a_killed_connection_mid_cycle_is_retried_and_completes_the_same_run(
    transactional_db, monkeypatch, retries
):
    scenario = build_scenario()
    org2 = scenario["ORG2"]
    a_change(org2)
    before = state(org2.config.pk)
    killed = []

    def kill_my_connection():
        pid = connection.connection.info.backend_pid
        with admin_connection(autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        killed.append(pid)

    fault_after_first_queued_part(monkeypatch, kill_my_connection)

    with pytest.raises(Retried) as retried:
        run_requestor_cycle(org2.config.pk, Trigger.MANUAL)

    assert killed
    assert retried.value.kwargs["countdown"] == faults.RETRY_FIRST_SECONDS
    run = assert_retrying(org2.config.pk, 1, before)
    assert run.trigger == Trigger.MANUAL

    # Celery runs the task again after the pause: the same run, now sent and then completed.
    assert run_requestor_cycle(org2.config.pk, Trigger.MANUAL) == run.pk
    pump()
    run.refresh_from_db()
    assert (run.status, run.attempts) == (RunStatus.OK, 2)
    assert run.exported == len(org2.people)  # its first export: every recipient
    assert connection.connection.info.backend_pid != killed[0]
    assert Run.objects.count() == 1


@pytest.mark.postgres
def test_a_real_deadlock_mid_cycle_is_retried(transactional_db, monkeypatch, retries):
    """Another session holds the row of the organization's import container and waits for the
    requestor's row, which the cycle holds; the cycle then asks for the container's row:
    PostgreSQL finds the deadlock and aborts the cycle (the session that checks first: its
    deadlock_timeout is the shorter)."""
    scenario = build_scenario()
    org2 = scenario["ORG2"]
    a_change(org2)
    before = state(org2.config.pk)
    other = admin_connection()
    other.execute("SET deadlock_timeout = '60s'")
    other.execute(
        "SELECT 1 FROM directory_container WHERE id = %s FOR UPDATE",
        [org2.config.import_container_id],
    )
    waits = []

    def other_waits_for_the_requestor():
        try:
            other.execute(
                "SELECT 1 FROM requestor_requestorconfig WHERE id = %s FOR UPDATE",
                [org2.config.pk],
            )
            waits.append("got it")
        finally:
            other.rollback()

    def deadlock():
        waiter = threading.Thread(target=other_waits_for_the_requestor)
        waiter.start()
        with admin_connection(autocommit=True) as watcher:
            for _ in range(600):  # until the other session waits for the lock
                row = watcher.execute(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                    [other.info.backend_pid],
                ).fetchone()
                if row and row[0] == "Lock":
                    break
                threading.Event().wait(0.05)
        waits.append(waiter)
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL deadlock_timeout = '10ms'")
            cursor.execute(
                "SELECT 1 FROM directory_container WHERE id = %s FOR UPDATE",
                [org2.config.import_container_id],
            )

    fault_after_first_queued_part(monkeypatch, deadlock)
    try:
        with pytest.raises(Retried):
            run_requestor_cycle(org2.config.pk, Trigger.SCHEDULE)
        waits[0].join(30)
    finally:
        other.close()

    assert "got it" in waits
    run = assert_retrying(org2.config.pk, 1, before)
    assert "deadlock detected" in run.error

    assert run_requestor_cycle(org2.config.pk, Trigger.SCHEDULE) == run.pk
    run.refresh_from_db()
    assert (run.status, run.attempts) == (RunStatus.WAITING, 2)


def failing(monkeypatch, message: str, times: int | None = None) -> None:
    """The cycle meets a database error after queueing its first part (`times` times)."""
    count = []

    def fault():
        if times is None or len(count) < times:
            count.append(1)
            raise OperationalError(message)

    queue = cycle.outbox.queue

    def queue_then_fault(*args, **kwargs):
        result = queue(*args, **kwargs)
        fault()
        return result

    monkeypatch.setattr(cycle.outbox, "queue", queue_then_fault)


def test_the_pauses_grow_and_the_task_gives_up_keeping_a_failed_run(scenario, monkeypatch, retries):
    org2 = scenario["ORG2"]
    before = state(org2.config.pk)
    failing(monkeypatch, "could not serialize access due to concurrent update")
    pauses = []
    for attempt in range(1, faults.MAX_ATTEMPTS):
        with pytest.raises(Retried) as retried:
            run_requestor_cycle(org2.config.pk, Trigger.SCHEDULE)
        pauses.append(retried.value.kwargs["countdown"])
        assert_retrying(org2.config.pk, attempt, before)

    assert pauses[:4] == [faults.RETRY_FIRST_SECONDS * n for n in (1, 2, 4, 8)]
    assert max(pauses) == faults.RETRY_MAX_SECONDS
    final = run_requestor_cycle(org2.config.pk, Trigger.SCHEDULE)  # raises no Retried
    run = Run.objects.get()
    assert final == run.pk
    assert (run.status, run.attempts) == (RunStatus.FAILED, faults.MAX_ATTEMPTS)
    assert run.error.startswith(f"Database errors at {faults.MAX_ATTEMPTS} attempts")
    assert run.finished_at is not None
    assert state(org2.config.pk) == before


def test_any_later_cycle_completes_a_retrying_run(scenario, monkeypatch, retries):
    """The run waiting for its retry is taken over by whichever cycle comes first (a scheduled
    one, Execute Now, a command), so it never stays retrying."""
    org2 = scenario["ORG2"]
    failing(monkeypatch, "deadlock detected", times=1)
    with pytest.raises(Retried):
        run_requestor_cycle(org2.config.pk, Trigger.SCHEDULE)

    call_command("sync_now", "ORG2")

    run = Run.objects.get()
    assert (run.status, run.attempts, run.trigger) == (RunStatus.OK, 2, Trigger.SCHEDULE)


def test_the_command_tries_again_at_once(scenario, monkeypatch, capsys):
    failing(monkeypatch, "could not serialize access due to concurrent update", times=2)

    call_command("sync_now", "ORG2")

    run = Run.objects.get()
    assert (run.status, run.attempts, run.error) == (RunStatus.OK, 3, "")
    assert "ORG2" in capsys.readouterr().out


def test_the_command_gives_up_after_a_few_attempts(scenario, monkeypatch):
    failing(monkeypatch, "deadlock detected")
    before = state(scenario["ORG2"].config.pk)

    with pytest.raises(Exception, match="Database errors at 3 attempts"):
        call_command("sync_now", "ORG2")

    run = Run.objects.get()
    assert (run.status, run.attempts) == (RunStatus.FAILED, cycle.INLINE_ATTEMPTS)
    assert state(scenario["ORG2"].config.pk) == before


def test_the_task_retries_when_not_even_the_run_can_be_recorded(scenario, monkeypatch, retries):
    """The database is away for longer: the task itself is retried with the same pauses."""

    def database_away(*args, **kwargs):
        raise OperationalError("connection to server at 127.0.0.1, port 5432 failed")

    monkeypatch.setattr(tasks, "run_cycle", database_away)

    with pytest.raises(Retried) as retried:
        run_requestor_cycle(scenario["ORG2"].config.pk, Trigger.SCHEDULE)

    assert retried.value.kwargs["countdown"] == faults.RETRY_FIRST_SECONDS


def test_housekeeping_tasks_retry_a_database_error(db, monkeypatch, retries):
    def database_away(*args, **kwargs):
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(master_housekeeping, "purge_tombstones", database_away)

    with pytest.raises(Retried) as retried:
        master_tasks.purge_tombstones()

    assert isinstance(retried.value.kwargs["exc"], OperationalError)
    assert 0 <= retried.value.kwargs["countdown"] <= faults.RETRY_FIRST_SECONDS


def test_a_retry_that_never_came_is_failed_by_the_stalled_runs_check(
    scenario, monkeypatch, retries
):
    """The retry's task was lost (a broker restarted without persistence) and no other cycle
    came: the housekeeping closes the run, saying so."""
    failing(monkeypatch, "deadlock detected", times=1)
    with pytest.raises(Retried):
        run_requestor_cycle(scenario["ORG2"].config.pk, Trigger.SCHEDULE)
    run = Run.objects.get()
    Run.objects.filter(pk=run.pk).update(started_at=run.started_at - timedelta(hours=3))

    assert requestor_housekeeping.fail_stalled_runs(minutes=60) == 1

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.finished_at is not None
    assert run.error.startswith("Interrupted by a database error and not tried again")
