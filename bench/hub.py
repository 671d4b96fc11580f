"""W6 "hub": M requestor organizations x R recipients in one installation (one master), synced
by real Celery worker processes this benchmark starts, over a real broker (Redis or RabbitMQ).

Every requestor is due at once, as beat schedules them: each round sends every organization's
schedule entry (the task and arguments beat sends), then waits until nothing is in flight. The
initial sync goes on until every organization holds exactly the other organizations' recipients
(counted and compared, not assumed); the storm then changes K recipients in every organization
at once and times, per organization, how long until it holds every other organization's changes.
The master's row lock is timed inside the workers (bench.hub_probe).
"""

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.db import connection
from django.db.models import Count, F, Max
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from bench import topology
from bench.workloads import machine_cpu_seconds
from directory.changes import save_recipient
from directory.models import Recipient
from interorg_site import encryption
from interorg_site.celery import app as celery_app
from interorg_site.env import current_database_url
from master.models import GlobalEntry, MasterConfig
from requestor import schedule
from requestor.constants import RunStatus
from requestor.models import ImportedChange, RequestorConfig, Run
from transport import signing
from transport.constants import Direction, Status
from transport.models import Message

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = "redis://127.0.0.1:6379/12"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
START_TIMEOUT = 60
PENDING_MESSAGES = [Status.QUEUED, Status.RECEIVED, Status.DEFERRED]
PENDING_RUNS = [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING, RunStatus.RETRYING]
# A beat schedule can be no shorter than a minute: what the storm's latency is compared with.
SCHEDULE_MINUTES = 1


def build_hub(
    organizations: int, recipients: int, schedule_minutes: int = SCHEDULE_MINUTES
) -> topology.Topology:
    """The hub: ORG01 runs the master (and a requestor), every organization a requestor with
    `recipients` mailboxes, its signing key, and a beat schedule every `schedule_minutes`."""
    built = topology.build(organizations, recipients)
    for config in built.configs:
        signing.generate_key(config.organization_id)
        schedule.set_every_minutes(config, schedule_minutes)
    return built


def schedule_entries() -> list[PeriodicTask]:
    """Every requestor's beat entry: what beat sends when they are all due."""
    return list(PeriodicTask.objects.filter(task=schedule.TASK, enabled=True).order_by("pk"))


def send_round(entries: list[PeriodicTask], queue: str) -> None:
    """What beat does when every requestor's time comes: send each entry's task."""
    for entry in entries:
        celery_app.send_task(
            entry.task,
            args=json.loads(entry.args or "[]"),
            kwargs=json.loads(entry.kwargs or "{}"),
            queue=queue,
            expires=entry.expire_seconds,
        )


def quiet(broker: "Broker") -> bool:
    """Nothing in flight: no task waiting, no message waiting to be sent or processed, no run
    waiting; twice in a row, a moment apart (a cycle's run is recorded only as it commits)."""
    for attempt in range(2):
        if attempt:
            time.sleep(0.3)
        if (
            broker.pending()
            or Message.objects.filter(status__in=PENDING_MESSAGES).exists()
            or Run.objects.filter(status__in=PENDING_RUNS).exists()
        ):
            return False
    return True


# --- checking convergence --------------------------------------------------------------------


def holdings_problems() -> dict[str, str]:
    """Every organization must hold, as contacts, exactly the live entries of the others at
    the master, each once, under the name its own recipient has with the origin's suffix; and
    the master's live entries must be exactly the recipients. Returns what is wrong, by org."""
    problems = {}
    own = dict(
        Recipient.objects.exportable()
        .values("organization__name")
        .annotate(n=Count("pk"))
        .values_list("organization__name", "n")
    )
    live = GlobalEntry.objects.filter(deleted=False)
    if live.count() != sum(own.values()):
        problems["master"] = f"{live.count()} live entries for {sum(own.values())} recipients"
    total = sum(own.values())
    contacts = Recipient.objects.filter(global_key__isnull=False, hidden_at__isnull=True)
    held = dict(
        contacts.values("organization__name")
        .annotate(n=Count("pk"))
        .values_list("organization__name", "n")
    )
    # A contact counts as right when its key is a live entry of another organization.
    right = dict(
        contacts.filter(global_key__in=live.values("global_key"))
        .exclude(origin_organization=F("organization__name"))
        .values("organization__name")
        .annotate(n=Count("pk"))
        .values_list("organization__name", "n")
    )
    for name, count in own.items():
        expected = total - count
        if held.get(name, 0) != expected or right.get(name, 0) != expected:
            problems[name] = (
                f"holds {held.get(name, 0)} contacts ({right.get(name, 0)} right), "
                f"expected {expected}"
            )
    return problems


def names_match() -> bool:
    """Each contact's display name is its source recipient's with the origin's suffix."""
    sources = {
        str(guid): name + f" ({org})"
        for guid, name, org in Recipient.objects.exportable().values_list(
            "guid", "display_name", "organization__name"
        )
    }
    for key, name in (
        Recipient.objects.filter(global_key__isnull=False)
        .values_list("global_key", "display_name")
        .iterator(chunk_size=20_000)
    ):
        if sources.get(key.partition(":")[2]) != name:
            return False
    return True


def storm_arrivals(marker: str) -> dict[str, int]:
    """How many contacts carrying the storm's change each organization holds."""
    return dict(
        Recipient.objects.filter(global_key__isnull=False, title=marker)
        .values("organization__name")
        .annotate(n=Count("pk"))
        .values_list("organization__name", "n")
    )


def change_recipients(per_org: int, marker: str) -> int:
    """The storm: `per_org` recipients of every organization change their title at once."""
    changed = 0
    for config in RequestorConfig.objects.select_related("organization"):
        people = Recipient.objects.exportable().filter(organization=config.organization)
        for person in people.order_by("pk")[:per_org]:
            person.title = marker
            save_recipient(person, update_fields=["title"])
            changed += 1
    return changed


# --- workers and broker ----------------------------------------------------------------------


@dataclass
class Broker:
    """Where tasks go: a Redis database or a RabbitMQ queue of the benchmark's own."""

    name: str
    url: str
    queue: str

    def use(self) -> None:
        celery_app.conf.broker_url = self.url
        celery_app.conf.broker_transport_options = {}
        celery_app.conf.task_default_queue = self.queue

    def pending(self) -> int:
        """Tasks waiting in the queue, and for Redis those taken by a worker and not finished
        (acknowledged late, at the end of the task)."""
        if self.name == "redis":
            with self._redis() as client:
                return client.llen(self.queue) + len(self._unacked(client))
        with celery_app.connection_for_write() as conn:
            channel = conn.channel()
            try:
                return channel.queue_declare(self.queue, passive=True).message_count
            except conn.channel_errors:
                return 0  # not declared yet: no worker has started
            finally:
                with contextlib.suppress(Exception):
                    channel.close()

    def clear(self) -> None:
        """Remove this benchmark's queue and what its workers left unfinished in it; other
        users of the same Redis database or RabbitMQ virtual host are left alone."""
        if self.name == "redis":
            with self._redis() as client:
                # The queue, and the bindings of the exchange named after it.
                bindings = [f"_kombu.binding{kind}.{self.queue}" for kind in ("", "_permanent")]
                client.delete(self.queue, *bindings)
                unfinished = self._unacked(client)
                if unfinished:
                    client.hdel("unacked", *unfinished)
                    client.zrem("unacked_index", *unfinished)
            return
        with celery_app.connection_for_write() as conn:
            channel = conn.channel()
            with contextlib.suppress(*conn.channel_errors):
                channel.queue_delete(self.queue)
            with contextlib.suppress(Exception):
                channel.close()

    @contextlib.contextmanager
    def _redis(self):
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=5)
        try:
            yield client
        finally:
            client.close()

    def _unacked(self, client) -> list[bytes]:
        """The delivery tags of this queue's tasks taken by a worker and not acknowledged
        (kombu keeps them in one hash per database, with the routing key of each)."""
        tags = []
        for tag, value in client.hgetall("unacked").items():
            with contextlib.suppress(ValueError, IndexError, TypeError):
                if json.loads(value)[2] == self.queue:
                    tags.append(tag)
        return tags


def unreachable(broker: Broker) -> str | None:
    """Why the broker cannot be used, or None when it answers."""
    broker.use()
    try:
        broker.clear()
        broker.pending()
    except Exception as exc:
        return f"{exc.__class__.__name__}: {exc}"
    return None


def make_broker(name: str) -> Broker:
    # A queue of this run's own: another benchmark may share the database or virtual host.
    queue = f"interorg-bench-hub-{os.getpid()}"
    if name == "redis":
        return Broker("redis", REDIS_URL, queue)
    if name == "rabbitmq":
        return Broker("rabbitmq", RABBITMQ_URL, queue)
    raise ValueError(f"Unknown broker {name!r}: choose redis or rabbitmq.")


@dataclass
class Workers:
    """`celery -A interorg_site worker` processes, one pool process each, each in its own
    process group; the probe of bench.hub_probe writes into `folder`."""

    broker: Broker
    folder: Path
    started: list[subprocess.Popen] = field(default_factory=list)

    def env(self) -> dict:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "interorg_site.settings",
            "DATABASE_URL": current_database_url(),
            "INTERORG_VAR_DIR": str(self.folder / "var"),
            "INTERORG_SECRETS_KEYS": ",".join(encryption.keys()),
            "INTERORG_DISPATCH_TASKS": "true",
            "INTERORG_TASK_QUEUE": self.broker.queue,
            "INTERORG_BENCH_PROBE_DIR": str(self.folder),
            "CELERY_BROKER_URL": self.broker.url,
        }

    def start(self, count: int) -> None:
        for number in range(1, count + 1):
            log = self.folder / f"worker{number}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "interorg_site", "worker"]
                    + ["-n", f"hub{number}-{os.getpid()}@%h", "--concurrency", "1", "-l", "info"]
                    + ["--without-gossip", "--without-mingle", "--without-heartbeat"]
                    + ["--include", "bench.hub_probe"],
                    cwd=ROOT,
                    env=self.env(),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.started.append(process)
            _wait(lambda log=log: " ready." in log.read_text(errors="replace"), START_TIMEOUT)

    def peak_rss_mib(self) -> list[float]:
        """The largest peak resident memory among each worker's processes (VmHWM)."""
        return [round(_group_peak_kib(process.pid) / 1024, 1) for process in self.started]

    def stop(self) -> None:
        for process in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        self.started = []

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(
            "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
            for log in sorted(self.folder.glob("worker*.log"))
        )

    def lock_figures(self) -> dict:
        rows = []
        for probe in self.folder.glob("probe-*.jsonl"):
            rows += [json.loads(line) for line in probe.read_text().splitlines() if line]
        for probe in self.folder.glob("probe-*.jsonl"):
            probe.unlink()
        if not rows:
            return {"exports": 0}
        held = [row["held"] for row in rows]
        return {
            "exports": len(rows),
            "held_seconds": round(sum(held), 2),
            "held_max_seconds": round(max(held), 3),
            "waited_seconds": round(sum(row["waited"] for row in rows), 2),
            "waited_max_seconds": round(max(row["waited"] for row in rows), 3),
            "reply_seconds": round(sum(row["reply"] for row in rows), 2),
        }


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (0 if it is gone or not readable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _group_pids(group: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                if int(stat.rpartition(")")[2].split()[2]) == group:
                    pids.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return pids


def cpu_snapshot(pool: "Workers") -> dict:
    """CPU seconds so far of the workers' processes, and the machine's busy and total CPU time
    (every process: PostgreSQL serving the workers, and whatever else runs). The workers'
    database connections last one task each (Celery closes them after every task), too short
    to be sampled one by one."""
    workers = {pid: _cpu_seconds(pid) for p in pool.started for pid in _group_pids(p.pid)}
    busy, total = machine_cpu_seconds()
    return {"workers": workers, "busy": busy, "total": total}


def cpu_used(before: dict, after: dict) -> dict[str, float]:
    """Between two snapshots: the workers' CPU seconds, and the share of the machine's CPU
    time that was busy."""
    workers = sum(cpu - before["workers"].get(pid, 0.0) for pid, cpu in after["workers"].items())
    total = after["total"] - before["total"]
    busy = (after["busy"] - before["busy"]) / total if total else 0.0
    return {"workers": round(workers, 1), "machine_busy": round(busy, 3), "cores": os.cpu_count()}


def _group_peak_kib(group: int) -> int:
    peak = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rpartition(")")[2].split()[2]) != group:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError, IndexError):
            continue
    return peak


def _wait(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout} s")
        time.sleep(0.2)


# --- the workload ------------------------------------------------------------------------------


@dataclass
class Rounds:
    """Rounds sent until done: how many, the seconds they took, and the wall-clock intervals
    (start, end) the benchmark spent checking between them, which are not the sync's time."""

    count: int = 0
    seconds: float = 0.0
    checks: list[tuple[float, float]] = field(default_factory=list)

    def checking_before(self, when: float) -> float:
        return sum(end - start for start, end in self.checks if end <= when)


def sync_rounds(
    entries: list[PeriodicTask],
    broker: Broker,
    done: Callable[[], bool],
    timeout: float,
) -> Rounds:
    """Rounds of every requestor's task until `done()` once the workers went quiet (or the
    timeout). Beat would send the next round while the benchmark checks: that time is left
    out."""
    start = time.perf_counter()
    rounds = Rounds()
    while time.perf_counter() - start - rounds.checking_before(time.time()) < timeout:
        send_round(entries, broker.queue)
        rounds.count += 1
        time.sleep(0.3)
        while not quiet(broker):
            if time.perf_counter() - start > timeout:
                break
            time.sleep(0.25)
        rounds.seconds = time.perf_counter() - start - rounds.checking_before(time.time())
        checked = time.time()
        analyze()
        finished = done()
        rounds.checks.append((checked, time.time()))
        if finished:
            break
    return rounds


def analyze() -> None:
    """Fresh planner statistics for the tables the checks read: they grew by millions of rows
    in seconds, faster than autovacuum notices, and a plan made for the empty tables takes
    minutes."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "ANALYZE directory_recipient, master_globalentry, requestor_importedchange"
            )


def largest_tables(count: int = 5) -> list[tuple[str, int]]:
    """The largest tables with their indexes, in bytes (PostgreSQL's own figures)."""
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname = current_schema() "
            "ORDER BY 2 DESC LIMIT %s",
            [count],
        )
        return [(name, int(size)) for name, size in cursor.fetchall()]


def w6_hub(
    organizations: int,
    recipients: int,
    workers: int,
    broker_name: str = "redis",
    storm_changes: int = 5,
    timeout: float = 1800,
) -> dict:
    """The hub with `workers` worker processes: initial sync, then the storm."""
    from bench.workloads import reset

    reset()
    start = time.perf_counter()
    build_hub(organizations, recipients)
    setup = time.perf_counter() - start
    entries = schedule_entries()
    broker = make_broker(broker_name)
    broker.use()
    broker.clear()
    folder = Path(tempfile.mkdtemp(prefix="interorg-hub-"))
    pool = Workers(broker, folder)
    # Stopped from outside (a timeout's SIGTERM), the workers it started go with it.
    previous = signal.signal(signal.SIGTERM, _exit_on_term)
    try:
        pool.start(workers)
        cpu = cpu_snapshot(pool)
        initial = _initial_sync(entries, broker, organizations, recipients, timeout)
        initial["master_lock"] = pool.lock_figures()
        initial["cpu_seconds"] = cpu_used(cpu, cpu_snapshot(pool))
        storm = _storm(entries, broker, organizations, storm_changes, timeout)
        storm["master_lock"] = pool.lock_figures()
        peak = pool.peak_rss_mib()
        tail = "" if initial["converged"] and storm["converged"] else pool.log_tail()
    finally:
        pool.stop()
        broker.clear()
        shutil.rmtree(folder, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)
    return {
        "workload": "W6 hub",
        "organizations": organizations,
        "recipients_per_org": recipients,
        "workers": workers,
        "broker": broker.name,
        "setup_seconds": round(setup, 2),
        "initial": initial,
        "storm": storm,
        "peak_rss_mib": peak,
        "largest_tables": largest_tables(),
        "log_tail": tail,
    }


def _exit_on_term(signum, frame):
    raise SystemExit(128 + signum)


def _initial_sync(entries, broker, organizations: int, recipients: int, timeout: float) -> dict:
    messages_before = Message.objects.filter(direction=Direction.OUTBOUND).count()
    rounds = sync_rounds(entries, broker, lambda: not holdings_problems(), timeout)
    seconds = rounds.seconds
    problems = holdings_problems()
    converged = not problems and names_match()
    contacts = organizations * (organizations - 1) * recipients
    messages = Message.objects.filter(direction=Direction.OUTBOUND).count() - messages_before
    return {
        "converged": converged,
        "problems": dict(list(problems.items())[:5]),
        "rounds": rounds.count,
        "seconds": round(seconds, 2),
        "contacts": contacts,
        "entries_per_second": round(contacts / seconds),
        "messages": messages,
        "messages_per_second": round(messages / seconds, 1),
    }


def _storm(entries, broker, organizations: int, changes: int, timeout: float) -> dict:
    marker = f"Storm {time.time():.0f}"
    change_recipients(changes, marker)
    expected = (organizations - 1) * changes
    before = MasterConfig.objects.values_list("usn", flat=True).get()

    def done() -> bool:
        arrived = storm_arrivals(marker)
        complete = all(arrived.get(name) == expected for name in _names())
        return complete and not holdings_problems()

    messages_before = Message.objects.filter(direction=Direction.OUTBOUND).count()
    started = timezone.now()
    rounds = sync_rounds(entries, broker, done, timeout)
    arrived = arrival_latencies(before, started, expected)
    # Less the benchmark's own checks before each arrival.
    started_at = started.timestamp()
    latencies = sorted(
        seconds - rounds.checking_before(started_at + seconds) for seconds in arrived.values()
    )
    messages = Message.objects.filter(direction=Direction.OUTBOUND).count() - messages_before
    return {
        "converged": done() and len(latencies) == organizations,
        "changes_per_org": changes,
        "rounds": rounds.count,
        "seconds": round(rounds.seconds, 2),
        "messages": messages,
        "latency": _percentiles(latencies),
        "schedule_seconds": SCHEDULE_MINUTES * 60,
    }


def _names() -> list[str]:
    return list(RequestorConfig.objects.values_list("organization__name", flat=True))


def arrival_latencies(after_usn: int, started: datetime, expected: int) -> dict[str, float]:
    """Seconds from `started` until each organization had imported all `expected` entries the
    master stamped after `after_usn` (the import history's times, not a poll's)."""
    rows = (
        ImportedChange.objects.filter(master_usn__gt=after_usn, op__in=ImportedChange.PRESENT)
        .values("organization__name")
        .annotate(n=Count("global_key", distinct=True), last=Max("at"))
    )
    return {
        row["organization__name"]: (row["last"] - started).total_seconds()
        for row in rows
        if row["n"] == expected
    }


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    if len(values) == 1:
        return {"p50": values[0], "p95": values[0], "max": values[0]}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 2), "p95": round(cuts[94], 2), "max": round(values[-1], 2)}
