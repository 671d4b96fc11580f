"""sync_all on several processes: the organizations' cycles and the messages they exchange are
shared out among forked workers, as Celery workers would share them, and each organization
runs its next cycle as soon as its previous run has its reply (its own schedule, not the
slowest organization's).

Nothing here orders or locks anything the single-process path does not: the workers take
messages as Celery workers do (transport.inbox.process_pending skips a message another one
holds), the master's row lock serializes the exports it applies, and an organization's reply
parts are applied in order (transport.inbox.in_order). Each worker has its own database
connection; the parent closes its own before forking.

When to stop is the single-process path's rule, per organization instead of per round: every
organization's latest run exchanged nothing, and started after the last run that did
exchange something had ended (so it asked the master after everything had arrived there)."""

import logging
import multiprocessing
import multiprocessing.connection
import time

from django.db import connection, connections

from requestor.constants import PENDING_RUN_STATUSES, RunStatus
from requestor.cycle import CycleRunning, SyncError, run_cycle_now
from requestor.models import Run
from transport.inbox import process_pending, process_safely
from transport.outbox import deliver_pending

log = logging.getLogger(__name__)

# An idle worker waits until another one has moved something (what it committed may be work
# for it), or this long at most.
IDLE_WAIT_SECONDS = 0.1
# A cycle whose requestor another session holds (a cycle or an import elsewhere: Execute Now, a
# Celery worker) is tried again for this long before the sync gives up on it (unfinished).
BUSY_WAIT_SECONDS = 15.0

# The state of an organization between its cycles: its cycle is due, being run, waiting for
# its run's answer, or answered.
DUE, CYCLING, IN_FLIGHT, ANSWERED = 0, 1, 2, 3
UNFINISHED = (*PENDING_RUN_STATUSES, RunStatus.WAITING)


class WorkersFailed(SyncError):
    """A worker process ended with an error (the message says which, when it could)."""


def supported() -> bool:
    """Several writers at once need a database that takes them: PostgreSQL."""
    return connection.vendor == "postgresql"


def sync(
    config_ids: list[int], trigger: str, workers: int, max_runs: int
) -> tuple[list[list[int]], bool]:
    """Sync the organizations of `config_ids` on `workers` processes, each at most `max_runs`
    times. Returns the pks of each organization's runs, in order, and whether every
    organization ended settled (its last run quiet, and asked after all the others' news)."""
    if connection.in_atomic_block:
        raise SyncError(
            "A sync on several workers cannot run inside a transaction: the workers would not "
            "see what it has not committed."
        )
    context = multiprocessing.get_context("fork")
    shared = _Shared(context, len(config_ids), max_runs)
    connections.close_all()
    processes = [
        context.Process(target=_work, args=(shared, config_ids, trigger), daemon=True)
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    running = {process.sentinel: process for process in processes}
    while running:
        for sentinel in multiprocessing.connection.wait(list(running)):
            ended = running.pop(sentinel)
            ended.join()  # sets its exit code
            if ended.exitcode != 0:
                # The others may wait for its step to end: they stop too.
                for process in running.values():
                    process.terminate()
                    process.join()
                why = shared.error() or f"it ended with exit code {ended.exitcode}"
                raise WorkersFailed(
                    f"A sync worker failed ({why}), so the sync was stopped. What the workers "
                    "committed stays; run the sync again."
                )
    runs = [
        list(shared.runs[i * max_runs : i * max_runs + shared.made[i]])
        for i in range(len(config_ids))
    ]
    return runs, all(state == ANSWERED for state in shared.state)


class _Shared:
    """What the workers share, under `lock`: each organization's runs and state, and whether
    anyone is busy."""

    def __init__(self, context, organizations: int, max_runs: int):
        self.lock = context.Lock()
        self.moved = context.Condition(self.lock)
        self.max_runs = max_runs
        self.runs = context.Array("q", organizations * max_runs, lock=False)
        self.made = context.Array("i", organizations, lock=False)
        self.state = context.Array("i", organizations, lock=False)  # DUE at first
        # A clock of events: when each organization's latest run started, and when the last
        # run that exchanged something ended.
        self.clock = context.Value("q", 0, lock=False)
        self.started = context.Array("q", organizations, lock=False)
        self.quiet = context.Array("b", organizations, lock=False)
        self.last_busy = context.Value("q", 0, lock=False)
        # Workers inside a step, and steps that moved something: a worker stops only when a
        # step of its own found nothing while no other one was busy or moved anything.
        self.busy = context.Value("i", 0, lock=False)
        self.moves = context.Value("q", 0, lock=False)
        self.over = context.Value("b", 0, lock=False)
        # Since when each organization's due cycle has found its requestor held (0: it has not).
        self.blocked_since = context.Array("d", organizations, lock=False)
        self.errors = context.SimpleQueue()

    def waiting_for_a_requestor(self) -> bool:
        """A due cycle found its requestor held, not so long ago that the sync gives up."""
        now = time.monotonic()
        return any(
            since and now - since < BUSY_WAIT_SECONDS and self.state[index] == DUE
            for index, since in enumerate(self.blocked_since)
        )

    def error(self) -> str:
        return "" if self.errors.empty() else self.errors.get()

    def tick(self) -> int:
        self.clock.value += 1
        return self.clock.value

    def latest_run(self, index: int) -> int:
        return self.runs[index * self.max_runs + self.made[index] - 1]

    def claim_due(self, count: int) -> int | None:
        """The next organization whose cycle is due, marked as being run."""
        for index in range(count):
            if self.state[index] == DUE and self.made[index] < self.max_runs:
                self.state[index] = CYCLING
                self.started[index] = self.tick()
                return index
        return None

    def answered(self, index: int, quiet: bool) -> None:
        self.state[index] = ANSWERED
        self.quiet[index] = quiet
        if not quiet:
            self.last_busy.value = self.tick()

    def reschedule(self, count: int) -> None:
        """An answered organization needs another cycle unless its latest run exchanged
        nothing and asked after the last one that did had ended."""
        for index in range(count):
            settled = self.quiet[index] and self.started[index] > self.last_busy.value
            if self.state[index] == ANSWERED and not settled:
                self.state[index] = DUE


def _work(shared: _Shared, config_ids: list[int], trigger: str) -> None:
    connections.close_all()  # the parent's were closed before the fork; never share one
    try:
        while (seen := _step(shared, config_ids, trigger)) is not None:
            if seen >= 0:
                with shared.moved:
                    shared.moved.wait_for(
                        lambda: shared.moves.value != seen or shared.over.value, IDLE_WAIT_SECONDS
                    )
    except KeyboardInterrupt:
        # Ctrl-C reaches the whole process group: the parent says so, not each worker.
        shared.errors.put("interrupted")
        raise SystemExit(1) from None
    except BaseException as exc:
        log.exception("sync worker failed")
        shared.errors.put(f"{exc.__class__.__name__}: {exc}")
        raise SystemExit(1) from None
    finally:
        connections.close_all()


def _step(shared: _Shared, config_ids: list[int], trigger: str) -> int | None:
    """Run a cycle that is due, or deliver and process what is due and follow the runs in
    flight. None when the sync is over; -1 when this step moved something; else how many
    steps had moved something when it ended (the worker waits for the next one)."""
    count = len(config_ids)
    with shared.lock:
        if shared.over.value:
            return None
        shared.busy.value += 1
        moves_before = shared.moves.value
        index = shared.claim_due(count)
    moved = 0
    try:
        if index is not None:
            moved = _cycle(shared, index, config_ids[index], trigger)
        else:
            # One message at a time: a run answered is noticed, and its next cycle run, at once.
            passed_over: list[int] = []
            moved = deliver_pending() + process_pending(1, passed_over) + _follow(shared, count)
            if not moved and passed_over and shared.busy.value == 1:
                # No other worker holds that organization's turn: another session does (a
                # Celery worker, Execute Now). Wait for it, as a Celery task would.
                moved = int(process_safely(passed_over[0]) is True)
    finally:
        with shared.lock:
            shared.busy.value -= 1
            if moved:
                shared.moves.value += 1
                shared.moved.notify_all()
            quiet = not moved and not shared.busy.value and shared.moves.value == moves_before
            if quiet and not shared.waiting_for_a_requestor():
                shared.over.value = 1
                shared.moved.notify_all()
            seen = shared.moves.value
    if shared.over.value:
        return None
    return -1 if moved else seen


def _cycle(shared: _Shared, index: int, config_id: int, trigger: str) -> int:
    """The organization's next cycle; 1 once it runs, 0 if it has to wait."""
    try:
        run = run_cycle_now(config_id, trigger)
    except CycleRunning:
        # Another worker holds the organization's requestor (it is applying a message for
        # it), or another session does: the cycle is due again, once something has moved or
        # after a pause, for BUSY_WAIT_SECONDS.
        with shared.lock:
            shared.state[index] = DUE
            shared.blocked_since[index] = shared.blocked_since[index] or time.monotonic()
        return 0
    with shared.lock:
        shared.blocked_since[index] = 0
        shared.runs[index * shared.max_runs + shared.made[index]] = run.pk
        shared.made[index] += 1
        shared.state[index] = IN_FLIGHT
    return 1


def _follow(shared: _Shared, count: int) -> int:
    """Note the runs in flight that have their answer; how many."""
    with shared.lock:
        in_flight = {
            shared.latest_run(index): index
            for index in range(count)
            if shared.state[index] == IN_FLIGHT
        }
    if not in_flight:
        return 0
    done = Run.objects.filter(pk__in=in_flight).exclude(status__in=UNFINISHED)
    answered = 0
    with shared.lock:
        for run in done.only("status", "exported", "imported", "updated", "deleted"):
            index = in_flight[run.pk]
            # Another worker may have noted it first.
            if shared.state[index] == IN_FLIGHT and shared.latest_run(index) == run.pk:
                shared.answered(index, quiet=run.quiet)
                answered += 1
        if answered:
            shared.reschedule(count)
    return answered
