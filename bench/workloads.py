"""The benchmark workloads: each builds its data, runs the real sync path and returns figures."""

import multiprocessing
import os
import resource
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, Sum
from django.test.utils import CaptureQueriesContext

from bench import topology
from directory.changes import save_recipient
from directory.constants import Kind
from directory.models import Recipient
from master import processing
from master.models import AllowedRequestor, GlobalEntry, MasterConfig, ReceivedBatch
from requestor import cycle, importer, parallel
from requestor.cycle import run_cycle, sync_all
from transport.constants import Direction
from transport.inbox import pump
from transport.models import Message


class Phases:
    """Wall time spent inside chosen functions of the sync path, by label: summed over the
    processes of a sync on several workers (shared memory, made before they fork)."""

    def __init__(self):
        context = multiprocessing.get_context("fork")
        self._labels: list[str] = []
        self._seconds = context.Array("d", 8)
        self._restore = []

    @property
    def seconds(self) -> dict[str, float]:
        return {label: self._seconds[index] for index, label in enumerate(self._labels)}

    def wrap(self, module, name: str, label: str) -> None:
        original = getattr(module, name)
        index = len(self._labels)
        self._labels.append(label)
        total = self._seconds

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                with total.get_lock():
                    total[index] += time.perf_counter() - start

        setattr(module, name, timed)
        self._restore.append((module, name, original))

    def restore(self) -> None:
        for module, name, original in reversed(self._restore):
            setattr(module, name, original)


@contextmanager
def phases():
    timer = Phases()
    timer.wrap(cycle, "build_export", "export")
    timer.wrap(processing, "process_export", "master")
    timer.wrap(processing, "send_reply", "reply")
    timer.wrap(importer, "apply_reply", "import")
    try:
        yield timer
    finally:
        timer.restore()


def reset() -> None:
    """An empty scratch database for the next workload."""
    call_command("flush", interactive=False, verbosity=0)


def settle() -> None:
    """Write the setup's pages out before the clock starts (a checkpoint, where the database
    lets this user ask for one), so that the sync does not pay for them."""
    if connection.vendor != "postgresql":
        return
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("CHECKPOINT")
    except DatabaseError:
        pass  # not a superuser, nor in pg_checkpoint


def peak_rss_mib() -> float:
    """The largest resident size of this process or of a sync worker it forked."""
    peaks = (
        resource.getrusage(who).ru_maxrss
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return max(peaks) / 1024


def machine_cpu_seconds() -> tuple[float, float]:
    """The whole machine's CPU seconds so far: busy (neither idle, nor waiting for I/O, nor
    taken by the host), and in all."""
    # user nice system idle iowait irq softirq steal …, in clock ticks
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    per_second = os.sysconf("SC_CLK_TCK")
    busy = sum(ticks) - ticks[3] - ticks[4] - ticks[7]
    return busy / per_second, sum(ticks) / per_second


def cpu_snapshot() -> dict[str, float]:
    """CPU seconds so far of this process and the sync workers it forked and waited for, and
    the machine's busy ones."""
    own = sum(
        usage.ru_utime + usage.ru_stime
        for usage in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    )
    return {"sync": own, "machine": machine_cpu_seconds()[0]}


def cpu_since(before: dict[str, float]) -> dict[str, float]:
    """CPU seconds since `before` (cpu_snapshot): the sync's processes, and the rest of the
    machine, which on a quiet machine is the database server (when it runs on this host)."""
    after = cpu_snapshot()
    sync = after["sync"] - before["sync"]
    return {"sync": sync, "rest": max(0.0, after["machine"] - before["machine"] - sync)}


def sync_workers() -> int:
    """The processes W1 syncs on: every core on PostgreSQL, one on SQLite (one writer)."""
    if not parallel.supported():
        return 1
    return max(1, len(os.sched_getaffinity(0)))


def w1_full_sync(per_org: int, organizations: int = 3, workers: int = 1) -> dict:
    """Full initial sync: every organization's recipients through the master into the others,
    by sync_all on `workers` processes."""
    reset()
    start = time.perf_counter()
    topology.build(organizations, per_org)
    setup = time.perf_counter() - start
    settle()
    with phases() as timer:
        cpu = cpu_snapshot()
        start = time.perf_counter()
        rounds = sync_all(max_rounds=8, workers=workers)
        total = time.perf_counter() - start
        cpu = cpu_since(cpu)
    source = organizations * per_org
    imported = Recipient.objects.filter(global_key__isnull=False).count()
    expected = organizations * (organizations - 1) * per_org
    seconds = dict(timer.seconds)
    seconds["master"] -= seconds.get("reply", 0.0)
    stored = Recipient.objects.count()
    sent = Message.objects.filter(direction=Direction.OUTBOUND).values("kind")
    mail = {
        row["kind"]: {"messages": row["messages"], "bytes": row["bytes"]}
        for row in sent.annotate(messages=Count("pk"), bytes=Sum("size"))
    }
    return {
        "workload": "W1 full initial sync",
        "organizations": organizations,
        "recipients_per_org": per_org,
        "workers": workers,
        "setup_seconds": setup,
        "rounds": len(rounds),
        "converged": imported == expected and rounds[-1].quiet,
        "contacts_imported": imported,
        "seconds": {**seconds, "end_to_end": total},
        "rates": {
            "export": _rate(source, seconds.get("export")),
            "master": _rate(source, seconds.get("master")),
            "reply": _rate(imported, seconds.get("reply")),
            "import": _rate(imported, seconds.get("import")),
            "end_to_end": _rate(source, total),
            # Contacts written in all organizations per second (the syncrepl peer's measure).
            "delivered": _rate(imported, total),
        },
        "peak_rss_mib": peak_rss_mib(),
        "cpu_seconds": cpu,
        # What the installation holds afterwards (every organization, the master, the archive).
        "tables": table_sizes(),
        "recipients_stored": stored,
        # The messages sent (exports, replies): how many, and their payloads' bytes.
        "mail": mail,
    }


def table_sizes() -> dict[str, int]:
    """Bytes of each table with its indexes and TOAST (PostgreSQL), largest first."""
    if connection.vendor != "postgresql":
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname = current_schema() ORDER BY 2 DESC"
        )
        return dict(cursor.fetchall())


def w2_incremental(per_org: int, changes: int) -> dict:
    """K changes in one organization: the time and SQL queries of the cycles that carry them."""
    reset()
    built = topology.build(3, per_org)
    sync_all(max_rounds=5)
    source, receiver = built.configs[1], built.configs[0]
    people = list(
        Recipient.objects.filter(organization=source.organization, global_key=None)[:changes]
    )
    for person in people:
        person.title = "Changed Title"
        save_recipient(person)
    figures = {}
    for label, config in (("export_cycle", source), ("import_cycle", receiver)):
        with CaptureQueriesContext(connection) as queries:
            start = time.perf_counter()
            run_cycle(config.pk)
            pump()
            elapsed = time.perf_counter() - start
        figures[label] = {"seconds": elapsed, "queries": len(queries)}
    changed = Recipient.objects.filter(
        organization=receiver.organization, title="Changed Title", global_key__isnull=False
    ).count()
    return {
        "workload": "W2 incremental",
        "recipients_per_org": per_org,
        "changes": changes,
        "arrived": changed,
        **figures,
    }


def w3_fanout(requestors: int, entries: int) -> dict:
    """The master answers `requestors` full requests over `entries` global entries."""
    reset()
    built = topology.build(requestors, 0)
    master = MasterConfig.objects.get(pk=built.master.pk)
    allowed = list(AllowedRequestor.objects.filter(master=master).order_by("pk"))
    _fill_master(master, allowed, entries)
    start = time.perf_counter()
    for requestor in allowed:
        with transaction.atomic():
            master = MasterConfig.objects.select_for_update().get(pk=master.pk)
            batch = ReceivedBatch.objects.create(
                requestor=requestor, batch=uuid.uuid4(), parts=1, received_parts=[1]
            )
            processing.send_reply(master, requestor, batch)
            master.save(update_fields=["sequence"])
    elapsed = time.perf_counter() - start
    sent_entries = sum(message.summary["count"] for message in Message.objects.filter(kind="reply"))
    return {
        "workload": "W3 master fan-out",
        "requestors": requestors,
        "entries": entries,
        "entries_sent": sent_entries,
        "seconds": elapsed,
        "rate": _rate(sent_entries, elapsed),
        "peak_rss_mib": peak_rss_mib(),
    }


def _fill_master(master: MasterConfig, allowed: list, entries: int) -> None:
    rows = []
    for usn in range(1, entries + 1):
        requestor = allowed[usn % len(allowed)]
        rows.append(
            GlobalEntry(
                master=master,
                requestor=requestor,
                object_id=uuid.uuid4(),
                global_key=f"{requestor.organization_name}:{usn}",
                origin=requestor.organization_name,
                kind=Kind.MAILBOX,
                attrs={
                    "display_name": f"Person {usn}",
                    "alias": f"person{usn}",
                    "title": "Engineer",
                    "department": "Operations",
                    "primary_smtp": f"person{usn}@{requestor.organization_name.lower()}.example",
                },
                source_usn=usn,
                usn=usn,
            )
        )
    GlobalEntry.objects.bulk_create(rows, batch_size=5000)
    MasterConfig.objects.filter(pk=master.pk).update(usn=entries)


def ceiling_insert(count: int, copy: bool) -> dict:
    """The same recipient rows inserted bare, by COPY or by bulk_create: what W1's writes cannot
    beat. W1 writes with COPY on PostgreSQL; the bulk_create line shows what that gains."""
    reset()
    built = topology.build(1, 0)
    container = built.configs[0].import_container
    start = time.perf_counter()
    topology.add_people(container, count, seed=7, copy=copy)
    elapsed = time.perf_counter() - start
    return {
        "workload": "bulk insert ceiling",
        "method": "copy" if copy else "bulk_create",
        "rows": count,
        "seconds": elapsed,
        "rate": _rate(count, elapsed),
    }


def _rate(count: int, seconds: float | None) -> float | None:
    return round(count / seconds, 1) if seconds else None
