"""Workers on several machines: each worker host is a network namespace of its own (its own
loopback, address, hostname and var/ folder) that reaches PostgreSQL and Redis over a LAN only
(tests.workers.netns). This process is the database, broker and console host: it builds the hub,
sends every requestor's cycle as beat would, and checks what the workers did.

Shown here: the hub converges exactly with its cycles spread over the hosts; and a host lost in
the middle of a storm of changes, its cycles halfway through their transactions, loses nothing:
the other host converges exactly and no run is left behind. A host whose processes die has its
connections closed by its kernel, and PostgreSQL rolls back at once; a host cut off (power, a
cable) leaves sessions that hold their row locks until idle_in_transaction_session_timeout ends
them (without it, until TCP gives up on the host: hours, with the organization's edits waiting).
"""

import contextlib
import json
import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import redis
from django.conf import settings
from django.db import connection

from bench.hub import build_hub, holdings_problems, schedule_entries
from bench.hub import send_round as beat_sends
from directory import changes
from directory.constants import Kind
from directory.models import Recipient
from interorg_site import encryption
from interorg_site.celery import app as celery_app
from interorg_site.env import current_database_url
from interorg_site.settings import broker_transport_options
from master.models import LedgerEntry
from requestor.constants import PENDING_RUN_STATUSES, RunStatus
from requestor.models import RequestorConfig, Run
from tests.workers import netns
from tests.workers.conftest import CELERY, PENDING, ROOT, Broker, rounds_until, wait_for
from transport.constants import Status
from transport.models import Message
from transport.tasks import sweep_messages

UNAVAILABLE = netns.unavailable()
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or ""),
]

# Redis database 14: tests/workers/conftest.py's fixtures use 15, the benchmark 12.
REDIS_DB = 14
ORGANIZATIONS = 6
RECIPIENTS = 20
HOSTS = 2
CONCURRENCY = 2
TIMEOUT = 240
IDLE_IN_TRANSACTION_TIMEOUT = 5
PENDING_RUNS = [*PENDING_RUN_STATUSES, RunStatus.WAITING]
TASK_LINE = re.compile(r"Task ([\w.]+)\[([0-9a-f-]+)\] (received|succeeded)")
CYCLE_LINE = re.compile(r"requestor cycle of config \d+: run \d+ ")


# --- the deployment -----------------------------------------------------------------------------


@pytest.fixture
def redis_db14(use_broker):
    """This process sends its tasks to Redis database 14 on 127.0.0.1; emptied before and after."""
    url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        pytest.skip(f"needs Redis at {url} ({exc})")
    use_broker(Broker(f"redis-db{REDIS_DB}", url, broker_transport_options(url), {}))
    yield client
    client.flushdb()
    client.close()


@dataclass
class Worker:
    """A Celery worker on one host, and its log."""

    host: netns.Host
    process: subprocess.Popen
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tasks(self, state: str) -> Counter:
        """Task names this worker logged in `state` (received or succeeded), counted."""
        return Counter(name for name, _, seen in TASK_LINE.findall(self.text()) if seen == state)

    def unfinished(self) -> dict[str, str]:
        """The tasks this worker received and never finished (id: name)."""
        names, states = {}, {}
        for name, task_id, state in TASK_LINE.findall(self.text()):
            names[task_id] = name
            states.setdefault(task_id, set()).add(state)
        return {task_id: names[task_id] for task_id in names if "succeeded" not in states[task_id]}

    def cycles(self) -> int:
        return len(CYCLE_LINE.findall(self.text()))


@dataclass
class Deployment:
    """The LAN, and a Celery worker on each of its hosts."""

    lan: netns.Lan
    folder: Path
    workers: dict[str, Worker] = field(default_factory=dict)

    def env(self, host: netns.Host) -> dict:
        """What a worker host is configured with: the database and broker at their address on
        the LAN, the installation's secrets, and nothing else of this machine's."""
        server = netns.SERVER_ADDRESS
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "LANG": "C.UTF-8",
            "DJANGO_SETTINGS_MODULE": "interorg_site.settings",
            "DATABASE_URL": current_database_url(host=server),
            "CELERY_BROKER_URL": f"redis://{server}:6379/{REDIS_DB}",
            "SECRET_KEY": settings.SECRET_KEY,
            "INTERORG_SECRETS_KEYS": ",".join(encryption.keys()),
            "INTERORG_VAR_DIR": str(self.folder / host.name / "var"),
            "INTERORG_DISPATCH_TASKS": "true",
            # Which host a database session belongs to, in pg_stat_activity.
            "PGAPPNAME": host.name,
            # A session whose host vanished mid-transaction ends after this long, and its row
            # locks with it (docs/scaling.md, "Workers on several machines"); a killed worker's
            # session ends at once, even while it waits for a lock.
            "PGOPTIONS": "-c client_connection_check_interval=100ms "
            f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT}s",
        }

    def start(self, host: netns.Host) -> Worker:
        log = self.folder / f"{host.name}.log"
        args = [str(CELERY), "-A", "interorg_site", "worker", "-n", "worker@%h"]
        args += ["--concurrency", str(CONCURRENCY), "-l", "info"]
        args += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        with log.open("wb") as out:
            process = subprocess.Popen(
                host.run(args),
                cwd=ROOT,
                env=self.env(host),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = self.workers[host.name] = Worker(host, process, log)
        wait_for(lambda: " ready." in worker.text(), 60, f"the worker on {host.name}")
        return worker

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} (last lines) ---\n" + "\n".join(worker.text().splitlines()[-40:])
            for name, worker in self.workers.items()
        )


@pytest.fixture
def deployment(transactional_db, redis_db14, tmp_path, request):
    """Worker hosts on a LAN with this machine's PostgreSQL and Redis; all gone at the end."""
    lan = netns.Lan(tmp_path)
    made = Deployment(lan, tmp_path)
    port = int(connection.settings_dict["PORT"] or 5432)
    try:
        lan.up(HOSTS, {port: port, 6379: 6379})
        for host in lan.hosts:
            made.start(host)
        yield made
        if getattr(request.node, "rep_call", None) and request.node.rep_call.failed:
            print(made.logs())
    finally:
        lan.remove()
        for worker in made.workers.values():
            worker.process.wait(timeout=10)


# --- the hub ------------------------------------------------------------------------------------


def quiet() -> bool:
    """Nothing in flight: no task in the queue, no message waiting to be sent or processed, no
    run waiting; twice, a moment apart (a task taken from the queue shows nowhere until its
    transaction commits)."""
    client = redis.Redis.from_url(celery_app.conf.broker_url)
    try:
        for attempt in range(2):
            time.sleep(0.3 * attempt)
            if (
                client.llen(celery_app.conf.task_default_queue)
                or Message.objects.filter(status__in=PENDING).exists()
                or Run.objects.filter(
                    status__in=[*PENDING_RUN_STATUSES, RunStatus.WAITING]
                ).exists()
            ):
                return False
    finally:
        client.close()
    return True


def sync_rounds(deployment: Deployment, check, timeout: float = TIMEOUT) -> int:
    """Rounds of every requestor's cycle, as beat sends them, with the message sweep beat also
    sends, until nothing is in flight and `check()` finds nothing wrong; return the rounds."""
    entries = schedule_entries()

    def send_round():
        beat_sends(entries, celery_app.conf.task_default_queue)
        sweep_messages.delay()

    rounds = rounds_until(send_round, lambda: not check(), timeout, idle=quiet)
    if rounds is None:
        raise AssertionError(f"no convergence: {check()}\n{deployment.logs()}")
    return rounds


def converge(deployment: Deployment) -> int:
    return sync_rounds(deployment, holdings_problems)


def sessions_of(host: str, waiting_for_lock=False, in_transaction=False) -> list[int]:
    """The database sessions of a host (by the application name its workers give)."""
    sql = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
    sql += "AND application_name = %s"
    if waiting_for_lock:
        sql += " AND wait_event_type = 'Lock'"
    if in_transaction:
        sql += " AND xact_start IS NOT NULL"
    with connection.cursor() as cursor:
        cursor.execute(sql, [host])
        return [pid for (pid,) in cursor.fetchall()]


def storm(marker: str, first: int, changed: int) -> None:
    """Every organization at once: `changed` recipients from the `first` on get a new title,
    the one after them is deleted, and one is added."""
    for config in RequestorConfig.objects.select_related("organization"):
        people = list(
            Recipient.objects.exportable().filter(organization=config.organization).order_by("pk")
        )
        for person in people[first : first + changed]:
            person.title = marker
            changes.save_recipient(person, update_fields=["title"])
        changes.delete_recipients([people[first + changed]])
        alias = f"{marker.lower()}{config.organization.name.lower()}"
        added = Recipient(
            container=people[0].container,
            kind=Kind.MAILBOX,
            display_name=f"{marker} {config.organization.name}",
            alias=alias,
            primary_smtp=f"{alias}@{config.organization.mail_domain}",
            title=marker,
        )
        changes.save_recipient(added)


def storm_problems(marker: str, changed: int) -> dict:
    """Organizations not holding every other organization's storm changes (as contacts with
    the marker title), besides what holdings_problems finds."""
    problems = holdings_problems()
    expected = (changed + 1) * (ORGANIZATIONS - 1)
    arrived = Counter(
        Recipient.objects.filter(global_key__isnull=False, hidden_at__isnull=True, title=marker)
        .values_list("organization__name", flat=True)
        .iterator()
    )
    for config in RequestorConfig.objects.select_related("organization"):
        name = config.organization.name
        if arrived[name] != expected:
            problems.setdefault(name, f"{arrived[name]} of {expected} changes of {marker}")
    return problems


def name_mismatches() -> list[tuple[str, str, str | None]]:
    """(organization, contact's name, its source's name with the suffix) where they differ, for
    the contacts in the address books (a deleted entry's contact is hidden for a grace period:
    its source must be gone)."""
    sources = {
        str(guid): f"{name} ({org})"
        for guid, name, org in Recipient.objects.exportable().values_list(
            "guid", "display_name", "organization__name"
        )
    }
    contacts = Recipient.objects.filter(global_key__isnull=False).values_list(
        "organization__name", "global_key", "display_name", "hidden_at"
    )
    return [
        (org, name, source)
        for org, key, name, hidden_at in contacts
        if (source := sources.get(key.partition(":")[2])) != (None if hidden_at else name)
    ]


def assert_nothing_lost() -> None:
    assert holdings_problems() == {}
    assert name_mismatches() == []
    usns = list(LedgerEntry.objects.order_by("usn").values_list("usn", flat=True))
    assert usns == list(range(1, len(usns) + 1)), "master USNs skipped or taken twice"
    failed = Message.objects.filter(status__in=[Status.FAILED, Status.REJECTED])
    assert list(failed.values_list("error", flat=True)) == []
    left = Run.objects.exclude(status=RunStatus.OK)
    assert list(left.values_list("status", "error")) == []


# --- the tests ----------------------------------------------------------------------------------


def test_it_spreads_the_hub_over_the_worker_hosts_and_converges(deployment):
    build_hub(ORGANIZATIONS, RECIPIENTS)

    started = time.monotonic()
    rounds = converge(deployment)
    elapsed = time.monotonic() - started

    assert_nothing_lost()
    # Both hosts took part: each ran requestor cycles under its own node name, reaching the
    # database and the broker over the LAN (a namespace's own 127.0.0.1 has neither).
    cycles = {name: worker.cycles() for name, worker in deployment.workers.items()}
    assert all(cycles.values()), cycles
    relayed = deployment.lan.connections()
    port = int(connection.settings_dict["PORT"] or 5432)
    for name, worker in deployment.workers.items():
        assert f"worker@{name} ready." in worker.text()
        assert relayed[worker.host.address, port] and relayed[worker.host.address, 6379]
    # What `celery inspect ping` (and Flower) sees from the console's host: every node.
    answers = celery_app.control.ping(timeout=5)
    assert sorted(node for answer in answers for node in answer) == [
        f"worker@{name}" for name in sorted(deployment.workers)
    ]
    tasks = {name: dict(worker.tasks("succeeded")) for name, worker in deployment.workers.items()}
    print(
        f"\n{ORGANIZATIONS} x {RECIPIENTS} on {HOSTS} hosts: converged in {elapsed:.1f} s, "
        f"{rounds} rounds; cycles per host {cycles}; tasks per host {tasks}"
    )


@contextlib.contextmanager
def runs_table_locked():
    """Another session holds the runs table: every cycle does its writes (USNs, export
    messages) and then waits, inside its transaction, to record its run; a reply waits to
    complete its run. A host that dies meanwhile dies with its tasks halfway through."""
    db = connection.settings_dict
    blocker = psycopg.connect(
        dbname=db["NAME"], host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432,
        user=db["USER"] or "postgres", autocommit=False,
    )  # fmt: skip
    try:
        blocker.execute("LOCK TABLE requestor_run IN SHARE MODE")
        yield
    finally:
        blocker.rollback()
        blocker.close()


def storm_with_tasks_in_hand(lost: Worker) -> dict[str, str]:
    """The first wave of the storm, and every requestor's cycle sent, with the runs table
    locked; return when `lost` has a task waiting inside its transaction, with the tasks it
    holds (id: name)."""
    storm("Storm1", first=0, changed=4)
    beat_sends(schedule_entries(), celery_app.conf.task_default_queue)
    wait_for(lambda: sessions_of(lost.host.name, True), 60, "a task on the host to block")
    return lost.unfinished()


def recover(deployment: Deployment, lost: Worker, in_hand: dict, since: float) -> str:
    """The second wave of the storm, with `lost` gone; the rest must converge exactly and
    leave nothing behind. Return what happened, for the record."""
    storm("Storm2", first=4, changed=3)
    rounds = sync_rounds(
        deployment,
        lambda: {**storm_problems("Storm1", changed=4), **storm_problems("Storm2", changed=3)},
    )
    recovered = time.monotonic() - since
    assert_nothing_lost()
    # Its tasks never came back (Redis returns a consumer's unacknowledged messages only after
    # its visibility timeout, an hour; kombu keeps them in the `unacked` hash): the other host,
    # the sweep and the next cycles did their work.
    client = redis.Redis.from_url(celery_app.conf.broker_url)
    unacked = {json.loads(raw)[0]["headers"]["id"] for raw in client.hvals("unacked")}
    client.close()
    assert set(in_hand) <= unacked
    survivors = [worker for worker in deployment.workers.values() if worker is not lost]
    return (
        f"{lost.host.name} lost with tasks in hand {sorted(Counter(in_hand.values()).items())}; "
        f"converged {recovered:.1f} s after, in {rounds} rounds; cycles in all per host "
        f"{ {worker.host.name: worker.cycles() for worker in survivors} }"
    )


def test_a_worker_host_killed_mid_storm_loses_nothing(deployment):
    build_hub(ORGANIZATIONS, RECIPIENTS)
    converge(deployment)
    lost = deployment.workers["iosE-h2"]

    with runs_table_locked():
        in_hand = storm_with_tasks_in_hand(lost)
        killed_at = time.monotonic()
        # Its kernel closes its connections: PostgreSQL rolls its transactions back at once.
        assert lost.host.remove(), "nothing ran on the host"
        wait_for(lambda: not sessions_of(lost.host.name), 20, "the lost host's sessions to end")
    assert in_hand, "the host died with no task in hand"

    print("\nkilled:", recover(deployment, lost, in_hand, killed_at))


def test_a_worker_host_cut_off_mid_storm_holds_no_lock_past_the_timeout(deployment):
    build_hub(ORGANIZATIONS, RECIPIENTS)
    converge(deployment)
    lost = deployment.workers["iosE-h2"]

    with runs_table_locked():
        in_hand = storm_with_tasks_in_hand(lost)
        cut_at = time.monotonic()
        # Power lost, or the network: not even a FIN leaves the host. Its sessions live on in
        # PostgreSQL, and once the lock is free they finish their statement and wait, inside
        # their transactions and holding their row locks, for a client that is gone.
        lost.host.unplug()
        lost.host.kill()
    assert in_hand, "the host was cut off with no task in hand"
    wait_for(lambda: sessions_of(lost.host.name, in_transaction=True), 20, "orphan sessions")

    # idle_in_transaction_session_timeout ends them and rolls them back.
    wait_for(
        lambda: not sessions_of(lost.host.name, in_transaction=True),
        IDLE_IN_TRANSACTION_TIMEOUT + 20,
        "PostgreSQL to end the lost host's transactions",
    )
    held = time.monotonic() - cut_at
    print(f"\ncut off: orphan transactions ended after {held:.1f} s;")
    print("cut off:", recover(deployment, lost, in_hand, cut_at))
