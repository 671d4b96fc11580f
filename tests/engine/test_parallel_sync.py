"""sync_all on several worker processes (requestor.parallel): the same end state as one
process, every run accounted for once, and a worker that fails stops the sync saying why."""

import io
import os
import signal
import threading
from contextlib import contextmanager

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from directory import changes
from requestor import parallel
from requestor.cycle import SyncError, sync_all
from requestor.models import RequestorConfig, Run
from tests.engine.conftest import build_scenario
from tests.engine.helpers import assert_converged
from transport import inbox, registry


@pytest.fixture
def committed_scenario(transactional_db):
    """The workers are other processes: they see only what is committed."""
    return build_scenario(people_per_org=20)


def run_pks(rounds) -> list[int]:
    return [run.pk for sync_round in rounds for run in sync_round.runs]


@pytest.mark.postgres
def test_two_workers_converge_exactly_and_account_for_every_run(committed_scenario):
    rounds = sync_all(workers=2)

    assert rounds[-1].quiet
    assert not rounds[0].quiet
    assert_converged(committed_scenario)
    # Every run once; the last round holds each organization's last run.
    pks = run_pks(rounds)
    assert sorted(pks) == sorted(Run.objects.values_list("pk", flat=True))
    configs = set(RequestorConfig.objects.values_list("pk", flat=True))
    assert [run.config_id for run in rounds[-1].runs] == sorted(
        configs, key=lambda pk: RequestorConfig.objects.get(pk=pk).organization.name
    )
    for config_id in configs:
        mine = Run.objects.filter(config_id=config_id).order_by("pk")
        assert rounds[-1].runs[[r.config_id for r in rounds[-1].runs].index(config_id)] == (
            mine.last()
        )
    # Nothing is left: the next sync is one quiet round.
    again = sync_all(workers=2)
    assert len(again) == 1 and again[0].quiet


@pytest.mark.postgres
def test_changes_everywhere_at_once_arrive_with_two_workers(committed_scenario):
    sync_all(workers=2)
    org1, org2, org3 = (committed_scenario[name] for name in ("ORG1", "ORG2", "ORG3"))
    org1.add(display_name="New In One")
    person = org2.people[0]
    person.title = "Chief Engineer"
    changes.save_recipient(person)
    changes.delete_recipients([org3.people.pop(1)])

    rounds = sync_all(workers=2)

    assert rounds[-1].quiet
    assert_converged(committed_scenario)
    assert "New In One" in {c.display_name for c in org2.contacts()} | {
        c.display_name for c in org3.contacts()
    }


@pytest.mark.postgres
def test_max_rounds_bounds_each_organization(committed_scenario):
    rounds = sync_all(max_rounds=1, workers=2)

    assert len(rounds) == 1
    assert not rounds[0].quiet
    assert Run.objects.count() == 3
    assert len(set(run_pks(rounds))) == 3


@pytest.mark.postgres
def test_a_worker_that_fails_stops_the_sync_with_its_error(committed_scenario, monkeypatch):
    def broken(config_id, trigger):
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(parallel, "run_cycle_now", broken)  # inherited by the forked workers
    with pytest.raises(parallel.WorkersFailed, match="RuntimeError: the disk is full"):
        sync_all(workers=2)


@pytest.mark.postgres
def test_a_killed_worker_stops_the_others_and_a_new_sync_finishes(committed_scenario, monkeypatch):
    def killed(config_id, trigger):
        os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(parallel, "run_cycle_now", killed)
    with pytest.raises(
        parallel.WorkersFailed, match=r"A sync worker failed \(it ended with exit code -9\)"
    ):
        sync_all(workers=2)
    monkeypatch.undo()

    rounds = sync_all(workers=2)

    assert rounds[-1].quiet
    assert_converged(committed_scenario)


@pytest.mark.postgres
def test_the_command_syncs_on_several_workers(committed_scenario):
    out = io.StringIO()
    call_command("sync_all", "--workers", "2", stdout=out)

    assert "Converged after" in out.getvalue()
    assert_converged(committed_scenario)


@pytest.mark.postgres
def test_several_workers_refuse_to_run_inside_a_transaction(scenario):
    # The `scenario` fixture's test runs in a transaction the workers could not see.
    with pytest.raises(SyncError, match="inside a transaction"):
        sync_all(workers=2)
    assert not Run.objects.exists()


@pytest.mark.skipif(connection.vendor == "postgresql", reason="the embedded database")
def test_several_workers_need_postgresql(scenario):
    with pytest.raises(SyncError, match="needs PostgreSQL"):
        sync_all(workers=2)
    with pytest.raises(CommandError, match="needs PostgreSQL"):
        call_command("sync_all", "--workers", "2", stdout=io.StringIO())
    assert not Run.objects.exists()


def test_the_command_refuses_no_workers(scenario):
    with pytest.raises(CommandError, match="--workers must be 1 or more"):
        call_command("sync_all", "--workers", "0", stdout=io.StringIO())


@pytest.mark.postgres
def test_an_organization_that_asked_too_early_asks_again(committed_scenario):
    """ORG1 has nothing to send: its first run is quiet, but it may have asked before ORG2's
    change reached the master. It asks again until a quiet run of its own started after
    the last run that exchanged something had ended."""
    sync_all(workers=2)
    person = committed_scenario["ORG2"].people[0]
    person.title = "Head of Everything"
    changes.save_recipient(person)

    rounds = sync_all(workers=2)

    assert rounds[-1].quiet
    assert_converged(committed_scenario)
    for name in ("ORG1", "ORG3"):
        titles = committed_scenario[name].contacts().values_list("title", flat=True)
        assert "Head of Everything" in set(titles), name


@contextmanager
def held_elsewhere(take, release: threading.Event):
    """Another session holds what `take()` locks, until `release` is set."""
    held = threading.Event()

    def hold():
        try:
            with transaction.atomic():
                take()
                held.set()
                release.wait(timeout=60)
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(timeout=10)
    try:
        yield
    finally:
        release.set()
        thread.join()


def requestor_held(config_id: int, release: threading.Event):
    """Another session holds an organization's requestor (as a cycle or an import does)."""
    return held_elsewhere(
        lambda: RequestorConfig.objects.select_for_update().get(pk=config_id), release
    )


def turn_held(org, release: threading.Event):
    """Another session (a Celery worker, say) is applying the organization's replies: it holds
    the organization's turn (transport.inbox.in_order)."""
    return held_elsewhere(
        lambda: inbox.in_order(registry.agent_at(org.config.dn), org.organization.pk), release
    )


@pytest.mark.postgres
def test_a_cycle_that_finds_its_requestor_busy_runs_once_it_is_free(committed_scenario):
    org2 = committed_scenario["ORG2"].config.pk
    release = threading.Event()
    threading.Timer(1.5, release.set).start()

    with requestor_held(org2, release):
        rounds = sync_all(workers=2)

    assert rounds[-1].quiet
    assert_converged(committed_scenario)


@pytest.mark.postgres
def test_a_reply_whose_turn_another_session_holds_is_applied_once_it_is_free(committed_scenario):
    """The workers pass over an organization another worker is importing for; when no worker
    holds that turn, someone else does, and the sync waits for it rather than stop short."""
    release = threading.Event()
    threading.Timer(3.0, release.set).start()

    with turn_held(committed_scenario["ORG2"], release):
        rounds = sync_all(workers=2)

    assert rounds[-1].quiet and not rounds[-1].unfinished
    assert_converged(committed_scenario)


@pytest.mark.postgres
def test_a_requestor_held_all_along_leaves_the_sync_unfinished(committed_scenario, monkeypatch):
    monkeypatch.setattr(parallel, "BUSY_WAIT_SECONDS", 2.0)  # inherited by the workers
    org2 = committed_scenario["ORG2"].config.pk

    with requestor_held(org2, threading.Event()):
        rounds = sync_all(workers=2)

    assert not Run.objects.filter(config_id=org2).exists()
    assert not rounds[-1].quiet
    assert rounds[-1].unfinished
