"""Real Celery processes (`celery -A interorg_site worker` and `beat`) against the test database,
on the embedded filesystem broker or on Redis. No eager mode: tasks cross a broker and run in
other processes, exactly as in production.

The tests use `transactional_db`: the workers must see what the test commits, and the test what
they commit. Every process started here is killed when the test ends, pass or fail.
"""

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import kombu.pools
import pytest

from directory.constants import Role
from directory.models import Recipient
from interorg_site import encryption
from interorg_site.celery import app as celery_app
from interorg_site.env import current_database_url
from interorg_site.settings import prepare_filesystem_broker
from master.models import AllowedRequestor, GlobalEntry, LedgerEntry
from requestor.constants import RunStatus, Trigger
from requestor.models import Run
from requestor.tasks import run_requestor_cycle
from tests.engine.conftest import Org, Scenario, build_scenario, make_org
from transport.constants import Status
from transport.models import Message

ROOT = Path(__file__).resolve().parents[2]
CELERY = ROOT / ".venv" / "bin" / "celery"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
START_TIMEOUT = 30
PENDING = [Status.QUEUED, Status.RECEIVED, Status.DEFERRED]


@dataclass
class Broker:
    """Where the test process sends tasks, and what the worker processes are told."""

    name: str
    url: str
    transport_options: dict
    env: dict


def filesystem_broker(folder: Path) -> Broker:
    options = {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "control_folder": str(folder / "control"),
        "processed_folder": str(folder / "processed"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
    prepare_filesystem_broker(folder)
    url = "filesystem://localhost/"
    env = {"CELERY_BROKER_URL": url, "INTERORG_BROKER_DIR": str(folder)}
    return Broker("filesystem", url, options, env)


def flush_redis() -> None:
    """Empty the tests' Redis database; skip the test if there is no Redis."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        pytest.skip(f"needs Redis at {REDIS_URL} ({exc})")
    finally:
        client.close()


def redis_broker_or_skip() -> Broker:
    flush_redis()
    return Broker("redis", REDIS_URL, {}, {"CELERY_BROKER_URL": REDIS_URL})


def _reset_pools() -> None:
    """Forget the test process' broker connections (private attributes: test-only)."""
    if celery_app._pool is not None:
        celery_app._pool.force_close_all()
        celery_app._pool = None
    celery_app.amqp._producer_pool = None
    kombu.pools.reset()  # producer pools are shared by broker URL across tests


@pytest.fixture
def use_broker():
    """Point this process' Celery app at a broker; put it back afterwards."""
    saved = (celery_app.conf.broker_url, celery_app.conf.broker_transport_options)
    used: list[Broker] = []

    def use(broker: Broker) -> Broker:
        _reset_pools()
        celery_app.conf.broker_url = broker.url
        celery_app.conf.broker_transport_options = broker.transport_options
        used.append(broker)
        return broker

    yield use
    _reset_pools()
    celery_app.conf.broker_url, celery_app.conf.broker_transport_options = saved
    if any(broker.name == "redis" for broker in used):
        flush_redis()


@pytest.fixture
def fs_broker(use_broker, tmp_path) -> Broker:
    return use_broker(filesystem_broker(tmp_path / "broker"))


@pytest.fixture
def redis_broker(use_broker) -> Broker:
    return use_broker(redis_broker_or_skip())


@pytest.fixture(params=["filesystem", "redis"])
def broker(request, use_broker, tmp_path) -> Broker:
    if request.param == "filesystem":
        return use_broker(filesystem_broker(tmp_path / "broker"))
    return use_broker(redis_broker_or_skip())


@dataclass
class Processes:
    """Celery processes of one test, each in its own process group, with a log file each."""

    broker: Broker
    folder: Path
    started: list[tuple[str, subprocess.Popen, Path]] = field(default_factory=list)

    def env(self, **extra: str) -> dict:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "interorg_site.settings",
            "DATABASE_URL": current_database_url(),
            "INTERORG_VAR_DIR": str(self.folder / "var"),
            # The key of this process: the workers open the secrets it stores, and it theirs.
            "INTERORG_SECRETS_KEYS": ",".join(encryption.keys()),
            "INTERORG_DISPATCH_TASKS": "true",
            # The server notices at once when a killed worker's connection is gone, even while
            # that connection waits for a lock, and rolls its transaction back.
            "PGOPTIONS": "-c client_connection_check_interval=100ms",
            **self.broker.env,
            **extra,
        }

    def start(self, name: str, args: list[str], ready: str) -> subprocess.Popen:
        log = self.folder / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(CELERY), "-A", "interorg_site", *args],
                cwd=ROOT,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append((name, process, log))
        wait_for(lambda: ready in log.read_text(errors="replace"), START_TIMEOUT, f"{name} ready")
        return process

    def worker(self, name: str = "w1", concurrency: int = 2) -> subprocess.Popen:
        args = ["worker", "-n", f"{name}@%h", "--concurrency", str(concurrency), "-l", "info"]
        args += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        return self.start(name, args, " ready.")

    def beat(self) -> subprocess.Popen:
        # --max-interval 1: beat looks at the database every second instead of every 5.
        args = ["beat", "-l", "info", "--max-interval", "1"]
        return self.start("beat", args, "beat: Starting...")

    def log(self, name: str) -> str:
        return next(log.read_text(errors="replace") for n, _, log in self.started if n == name)

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} (last lines) ---\n"
            + "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            for name, _, log in self.started
        )

    def stop_all(self) -> None:
        for _, process, _ in self.started:
            # The whole group: a pool process outlives its parent's death otherwise.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture
def celery_processes(transactional_db, tmp_path, request):
    """Start workers and beat with `celery_processes(broker).worker()`; all killed at the end."""
    created: list[Processes] = []

    def make(broker: Broker) -> Processes:
        created.append(Processes(broker, tmp_path))
        return created[-1]

    yield make
    for processes in created:
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            print(processes.logs())
        processes.stop_all()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report


def wait_for(predicate: Callable, timeout: float, what: str, interval: float = 0.1):
    """Poll until `predicate()` is truthy; return its value, or fail saying what never came."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# --- the scenario -------------------------------------------------------------------------------


def add_orgs(scenario: Scenario, *numbers: int, people: int = 3) -> Scenario:
    """More requestor organizations besides ORG1-ORG3, allowlisted on the master."""
    for number in numbers:
        org = make_org(number, Role.REQUESTOR)
        AllowedRequestor.objects.create(
            master=scenario.master, address=org.config.dn, organization_name=org.name
        )
        for _ in range(people):
            org.add()
        scenario.orgs[org.name] = org
    return scenario


def expected_contacts(scenario: Scenario, org: Org) -> list[str]:
    """Display names org should hold as contacts: every other org's own recipients, with the
    exporting org's display-name suffix (each exactly once: a list, not a set)."""
    return sorted(
        name + other.config.append_display_name
        for other in scenario.others(org.name)
        for name in Recipient.objects.exportable()
        .filter(organization=other.organization)
        .values_list("display_name", flat=True)
    )


def contacts(org: Org) -> list[str]:
    return sorted(org.contacts().values_list("display_name", flat=True))


def converged(scenario: Scenario) -> bool:
    return all(contacts(org) == expected_contacts(scenario, org) for org in scenario.orgs.values())


def quiet() -> bool:
    """Nothing in flight: no message waiting to be sent or processed, no run waiting."""
    return not (
        Message.objects.filter(status__in=PENDING).exists()
        or Run.objects.filter(
            status__in=[RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING]
        ).exists()
    )


def schedule_round(scenario: Scenario, copies: int = 1) -> None:
    """What beat does when every requestor's time comes: queue a cycle of each."""
    for _ in range(copies):
        for org in scenario.orgs.values():
            run_requestor_cycle.delay(org.config.pk, Trigger.SCHEDULE.value)


def rounds_until(
    send_round: Callable, done: Callable, timeout: float, idle: Callable | None = None
) -> int | None:
    """Send rounds of work (`send_round()`), each followed by a wait until nothing is in flight
    (`idle()`, by default `quiet()`), until `done()`; return the number of rounds, or None at
    the deadline."""
    deadline = time.monotonic() + timeout
    rounds = 0
    while time.monotonic() < deadline:
        send_round()
        rounds += 1
        time.sleep(0.5)
        try:
            wait_for(
                idle or quiet, max(1.0, deadline - time.monotonic()), "the workers to go quiet"
            )
        except AssertionError:
            return None
        if done():
            return rounds
    return None


def sync_until_converged(scenario: Scenario, processes: Processes, timeout: float = 60) -> int:
    """Queue rounds of cycles, as beat would, until every organization holds exactly the others'
    recipients and nothing is in flight; return the number of rounds."""
    rounds = rounds_until(lambda: schedule_round(scenario), lambda: converged(scenario), timeout)
    if rounds is None:
        detail = {org.name: len(contacts(org)) for org in scenario.orgs.values()}
        raise AssertionError(f"no convergence: {detail}\n{processes.logs()}")
    return rounds


def assert_nothing_lost_or_duplicated(scenario: Scenario) -> None:
    for org in scenario.orgs.values():
        assert contacts(org) == expected_contacts(scenario, org), org.name
    failed = Message.objects.filter(status__in=[Status.FAILED, Status.REJECTED])
    assert list(failed.values_list("error", flat=True)) == []
    usns = list(LedgerEntry.objects.order_by("usn").values_list("usn", flat=True))
    assert usns == list(range(1, len(usns) + 1)), "master USNs skipped or taken twice"
    live = GlobalEntry.objects.filter(deleted=False).count()
    assert live == Recipient.objects.exportable().count()
    assert not Run.objects.exclude(status__in=[RunStatus.OK]).exists(), list(
        Run.objects.exclude(status=RunStatus.OK).values_list("status", "error")
    )


@pytest.fixture
def three_orgs(transactional_db) -> Scenario:
    return build_scenario()


@pytest.fixture
def scenario(db) -> Scenario:
    """The scenario inside the test's transaction, for tests that run tasks in this process."""
    return build_scenario()
