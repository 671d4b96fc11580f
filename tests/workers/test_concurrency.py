"""Several workers on PostgreSQL: concurrent cycles converge, and a killed worker loses nothing."""

import os
import signal
from pathlib import Path

import psycopg
import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection

from console.constants import ConsoleRole
from console.models import OrganizationRole
from directory import changes
from directory.models import Organization, Recipient
from master.models import GlobalEntry, LedgerEntry
from requestor.constants import RunStatus, Trigger
from requestor.cycle import run_cycle
from requestor.models import RequestorConfig, Run
from requestor.tasks import run_requestor_cycle
from tests.workers.conftest import (
    add_orgs,
    assert_nothing_lost_or_duplicated,
    contacts,
    expected_contacts,
    schedule_round,
    sync_until_converged,
    wait_for,
)
from transport.inbox import pump
from transport.models import Message

pytestmark = pytest.mark.postgres


def change_every_org(scenario) -> None:
    """Renames, deletes and additions in every organization at once."""
    for org in scenario.orgs.values():
        people = list(Recipient.objects.exportable().filter(organization=org.organization))
        people[0].display_name += " Renamed"
        changes.save_recipient(people[0])
        changes.delete_recipients([people[1]])
        org.add()
        org.add()


def test_two_workers_sync_five_requestors_at_once(redis_broker, celery_processes, three_orgs):
    scenario = add_orgs(three_orgs, 4, 5, people=8)
    processes = celery_processes(redis_broker)
    processes.worker("a", concurrency=2)
    processes.worker("b", concurrency=2)

    # Every cycle queued twice at once: the second copy of a cycle is refused or runs after.
    schedule_round(scenario, copies=2)
    sync_until_converged(scenario, processes)
    change_every_org(scenario)
    schedule_round(scenario, copies=2)
    sync_until_converged(scenario, processes)

    assert_nothing_lost_or_duplicated(scenario)
    for name in ("a", "b"):
        assert "succeeded" in processes.log(name), f"worker {name} did no work"


def snapshot() -> dict:
    """Everything a requestor cycle writes, as committed."""
    return {
        "messages": Message.objects.count(),
        "runs": Run.objects.count(),
        "ledger": LedgerEntry.objects.count(),
        "entries": GlobalEntry.objects.count(),
        "recipients": Recipient.objects.count(),
        "org_usns": list(Organization.objects.order_by("pk").values_list("usn", flat=True)),
        "configs": list(
            RequestorConfig.objects.order_by("pk").values_list(
                "sequence", "requestor_usn", "master_usn", "last_export_batch"
            )
        ),
    }


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def backends_waiting_to_insert_a_run() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO \"requestor_run\"%%'"
        )
        return [pid for (pid,) in cursor.fetchall()]


def backend_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone() is not None


def test_a_worker_killed_mid_cycle_leaves_nothing_and_the_next_run_completes_it(
    fs_broker, celery_processes, three_orgs
):
    # ORG1 and ORG3 have reached the master; ORG2's first cycle will bring their people.
    for name in ("ORG1", "ORG3"):
        run_cycle(three_orgs[name].config.pk)
    pump()
    org2 = three_orgs["ORG2"]
    operator = User.objects.create_user("operator")
    operator.user_permissions.add(Permission.objects.get(codename="execute_now"))
    OrganizationRole.objects.create(
        user=operator, organization=org2.organization, role=ConsoleRole.OPERATOR
    )
    operator = User.objects.get(pk=operator.pk)
    processes = celery_processes(fs_broker)
    worker = processes.worker(concurrency=1)
    before = snapshot()

    # Another session holds the runs table: ORG2's cycle does all its writes (USN, export
    # messages, sequence) and then waits to record its run, inside its transaction. The task is
    # sent as the schedule sends it, with no run recorded beforehand (Execute Now records a
    # queued run first, which this lock would hold up in this very process).
    blocker = psycopg.connect(dbname=connection.settings_dict["NAME"], **_credentials())
    try:
        blocker.execute("LOCK TABLE requestor_run IN SHARE MODE")
        run_requestor_cycle.delay(org2.config.pk, Trigger.MANUAL.value, operator.pk)
        [backend] = wait_for(backends_waiting_to_insert_a_run, 20, "the cycle to block")
        [child] = children(worker.pid)
        os.kill(child, signal.SIGKILL)
        wait_for(lambda: not backend_alive(backend), 10, "the killed worker's session to end")

        assert snapshot() == before, "the killed cycle left something behind"
    finally:
        blocker.rollback()
        blocker.close()

    # The worker requeues the task of its lost process (acks_late, reject_on_worker_lost) and a
    # new process runs it again, this time to the end.
    run = wait_for(
        lambda: Run.objects.filter(config=org2.config, status=RunStatus.OK).first(), 30, "the run"
    )
    assert (run.trigger, run.requested_by) == (Trigger.MANUAL, operator)
    assert Run.objects.filter(config=org2.config).count() == 1
    assert contacts(org2) == sorted(expected_contacts(three_orgs, org2))
    assert "WorkerLostError" in processes.log("w1") or "SIGKILL" in processes.log("w1")

    # And the whole scenario still converges, nothing lost or twice.
    sync_until_converged(three_orgs, processes)
    assert_nothing_lost_or_duplicated(three_orgs)


def _credentials() -> dict:
    db = connection.settings_dict
    return {
        "host": db["HOST"] or "127.0.0.1",
        "port": db["PORT"] or 5432,
        "user": db["USER"] or "postgres",
        "password": db["PASSWORD"] or None,
        "autocommit": False,
    }
