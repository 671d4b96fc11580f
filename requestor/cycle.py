"""A requestor cycle: export the organization's changes and ask the master for its news."""

import logging
import time
from dataclasses import dataclass

from django.db import OperationalError, connection, transaction
from django.utils import timezone

from directory import backends
from directory.models import Organization
from interorg_site.collector import collector_paused
from requestor.constants import PENDING_RUN_STATUSES, RunStatus, Trigger
from requestor.export import build_export
from requestor.models import RequestorConfig, Run
from transport import faults, outbox
from transport.inbox import pump

log = logging.getLogger(__name__)

# Callers that wait for the run (the commands, the console without workers) try a cycle that a
# brief database error interrupted again at once, this many times in all, after short pauses.
INLINE_ATTEMPTS = 3
INLINE_PAUSE_SECONDS = 0.2


class SyncError(Exception):
    """A cycle that cannot start; the message says what to change."""


class CycleRunning(SyncError):
    """Another cycle of the same organization holds its requestor right now."""


class RunNotFound(SyncError):
    """The queued run a task was sent for is not there (yet): the request that queued it has not
    committed, or it rolled back."""


class RunDone(SyncError):
    """The queued run a task was sent for no longer waits: another cycle of the organization
    took it over (or housekeeping closed it), so there is nothing left to do."""


@collector_paused()
def run_cycle(
    config_id: int,
    trigger: str = Trigger.COMMAND,
    user=None,
    max_attempts: int = faults.MAX_ATTEMPTS,
    action: str = "",
    run_id: int | None = None,
) -> Run:
    """Queue this organization's next export batch and record the run waiting for its reply.

    A run queued by Execute Now (run_id, when this is its task) is this one: any cycle of the
    organization takes it over, and says it is running while it exports. A brief database error
    rolls the cycle back whole and leaves its run retrying (the caller runs the cycle again after
    `faults.pause(run.attempts)` seconds; any later cycle of the organization takes that run
    over); at `max_attempts` the run fails, saying why."""
    claimed = _claim_queued(config_id)
    try:
        _refresh_directory(config_id)
        with transaction.atomic():
            return _start(config_id, trigger, user, action, run_id)
    except SyncError:
        # Not started after all (another cycle holds the requestor, or a disabled requestor's
        # schedule): the queued run waits for its own task again.
        if claimed:
            Run.objects.filter(pk__in=claimed, status=RunStatus.RUNNING).update(
                status=RunStatus.QUEUED
            )
        raise
    except faults.TRANSIENT_DB_ERRORS as exc:
        return _interrupted(config_id, trigger, user, exc, max_attempts, action)
    except Exception as exc:
        log.exception("requestor cycle of config %s failed", config_id)
        run = _to_take_over(config_id) or Run(
            config_id=config_id, trigger=trigger, requested_by=user, action=action
        )
        run.status, run.finished_at = RunStatus.FAILED, timezone.now()
        run.error = f"{exc.__class__.__name__}: {exc}"
        run.save()
        return run


def run_cycle_now(
    config_id: int, trigger: str = Trigger.COMMAND, user=None, action: str = ""
) -> Run:
    """run_cycle for a caller that waits for the run: a brief database error is tried again
    at once, up to INLINE_ATTEMPTS attempts in all, before the run is recorded as failed."""
    run = run_cycle(config_id, trigger, user, max_attempts=INLINE_ATTEMPTS, action=action)
    while run.status == RunStatus.RETRYING:
        time.sleep(INLINE_PAUSE_SECONDS * run.attempts)
        run = run_cycle(config_id, trigger, user, max_attempts=INLINE_ATTEMPTS, action=action)
    return run


def _to_take_over(config_id: int) -> Run | None:
    """The organization's run still to carry out: queued by Execute Now, or interrupted by a
    database error and waiting to be tried again (or left running by a worker that died)."""
    return (
        Run.objects.filter(config_id=config_id, status__in=PENDING_RUN_STATUSES)
        .order_by("-pk")
        .first()
    )


def _claim_queued(config_id: int) -> list[int]:
    """Mark the organization's queued runs running, committed at once so that their pages show
    it while the cycle exports (the cycle's own transaction commits only at its end)."""
    queued = list(
        Run.objects.filter(config_id=config_id, status=RunStatus.QUEUED).values_list(
            "pk", flat=True
        )
    )
    if queued:
        Run.objects.filter(pk__in=queued, status=RunStatus.QUEUED).update(status=RunStatus.RUNNING)
    return queued


def close_queued_run(run_id: int, reason: str) -> None:
    """A queued run its task gives up on fails now, saying why, instead of staying queued."""
    Run.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
        status=RunStatus.FAILED, finished_at=timezone.now(), error=reason
    )


def _interrupted(
    config_id: int, trigger: str, user, exc: Exception, max_attempts: int, action: str = ""
) -> Run:
    """Record that a database error interrupted the cycle (nothing of it was applied: its
    transaction rolled back), on the run that waits for the retry."""
    # The connection may have gone with the error: the next query opens a new one.
    if connection.connection is not None and not connection.is_usable():
        connection.close()
    run = _to_take_over(config_id)
    if run is None:
        run = Run(
            config_id=config_id, trigger=trigger, requested_by=user, attempts=0, action=action
        )
    run.attempts += 1
    what = faults.describe(exc)
    if run.attempts >= max_attempts:
        log.error("requestor cycle of config %s: database errors, giving up: %s", config_id, what)
        run.status, run.finished_at = RunStatus.FAILED, timezone.now()
        run.error = f"Database errors at {run.attempts} attempts, nothing was applied: {what}"
    else:
        delay = faults.pause(run.attempts)
        log.warning(
            "requestor cycle of config %s: database error, trying again in %s s: %s",
            config_id,
            delay,
            what,
        )
        run.status = RunStatus.RETRYING
        run.error = (
            f"A database error interrupted attempt {run.attempts}; nothing was applied, and the "
            f"cycle is tried again in {delay} s. {what}"
        )
    run.save()
    return run


def _refresh_directory(config_id: int) -> None:
    """An LDAP directory is read into the organization's mirror before the export (and the
    contacts still to write are written); the built-in directory needs nothing."""
    organization = Organization.objects.filter(requestor_config__pk=config_id).first()
    if organization is not None:
        backends.refresh(organization)


def lock_config(config_id: int) -> RequestorConfig | None:
    """The requestor's row, locked to commit; refused at once if another cycle (or the import of
    a reply) holds it, rather than queueing a second export behind the first. SQLite has no row
    locks: its IMMEDIATE transactions already run one writer at a time."""
    nowait = connection.features.has_select_for_update_nowait
    query = RequestorConfig.objects.select_for_update(nowait=nowait, no_key=True).select_related(
        "organization"
    )
    try:
        with transaction.atomic():  # a savepoint: the transaction stays usable after a refusal
            return query.filter(pk=config_id).first()
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        name = (
            RequestorConfig.objects.filter(pk=config_id)
            .values_list("organization__name", flat=True)
            .first()
        )
        raise CycleRunning(
            f"A cycle of {name or config_id} is already running (exporting, or importing the "
            "master's reply); this one was not started. The next one picks up any new change."
        ) from None


def _start(config_id: int, trigger: str, user, action: str = "", run_id: int | None = None) -> Run:
    config = lock_config(config_id)
    if config is None:
        raise SyncError(f"There is no requestor configuration {config_id}.")
    if not config.enabled and trigger == Trigger.SCHEDULE:
        raise SyncError(f"The requestor of {config.organization} is disabled.")
    # Asked under the requestor's lock: a cycle that took this run over has committed by now.
    queued = Run.objects.filter(pk=run_id).first() if run_id is not None else None
    if run_id is not None and queued is None:
        raise RunNotFound(f"Run {run_id} of {config.organization} is not recorded (yet).")
    if queued is not None and queued.status not in PENDING_RUN_STATUSES:
        raise RunDone(f"Run {run_id} of {config.organization} is {queued.status} already.")
    follow_import_options(config)
    export = build_export(config)
    for document, payload in export.parts:
        outbox.queue(
            config.organization_id, config.own_address, config.master_address, document, payload
        )
    config.sequence = export.parts[-1][0]["sequence"]
    config.last_export_batch = export.batch
    config.save(update_fields=["sequence", "last_export_batch", "exported_scope", "imported_under"])
    # A run queued by Execute Now, or one a database error interrupted, is this one: it carries
    # the same request.
    run = queued or _to_take_over(config.pk)
    if run is None:
        run = Run(config=config, trigger=trigger, requested_by=user, attempts=0, action=action)
    run.attempts += 1
    run.status, run.error = RunStatus.WAITING, ""
    run.batch, run.full_export, run.parts_sent = export.batch, export.full, len(export.parts)
    run.exported, run.export_through = export.changes, export.usn_through
    run.save()
    return run


def follow_import_options(config: RequestorConfig) -> None:
    """A new import container or other domains to import: the contacts must move or be added
    and removed, and only a full reply says which (whatever path changed the options)."""
    current = config.import_options()
    if config.imported_under != current:
        if config.imported_under:
            log.info("%s: import options changed, asking for a full reply", config.organization)
            config.request_full_reply()
        config.imported_under = current


@dataclass
class Round:
    """What one round of sync_all did."""

    runs: list[Run]
    # Some organization still had a cycle to run when the sync stopped (on several workers).
    unfinished: bool = False

    @property
    def quiet(self) -> bool:
        """Nothing left to exchange: no changes went out and no reply changed anything."""
        return not self.unfinished and all(run.quiet for run in self.runs)


def sync_all(trigger: str = Trigger.COMMAND, max_rounds: int = 10, workers: int = 1) -> list[Round]:
    """Run every enabled requestor, deliver and process inside this installation, and repeat
    until a round exchanges nothing (or `max_rounds` is reached).

    With `workers` above 1 (PostgreSQL only) the cycles and messages are shared out among that
    many processes, and each organization runs its next cycle as soon as its run has its
    reply (requestor.parallel): round N is then every organization's Nth run, and the last
    round each one's last run."""
    configs = RequestorConfig.objects.filter(enabled=True).order_by("organization__name")
    ids = list(configs.values_list("pk", flat=True))
    if workers > 1:
        return _sync_in_parallel(ids, trigger, max_rounds, workers)
    rounds = []
    for _ in range(max_rounds):
        runs = [run_cycle_now(config_id, trigger) for config_id in ids]
        pump()
        rounds.append(Round([Run.objects.get(pk=run.pk) for run in runs]))
        if rounds[-1].quiet:
            break
    return rounds


def _sync_in_parallel(ids: list[int], trigger: str, max_rounds: int, workers: int) -> list[Round]:
    from requestor import parallel

    if not parallel.supported():
        raise SyncError(
            f"Syncing with {workers} workers needs PostgreSQL; this installation's database "
            f"({connection.vendor}) takes one writer at a time: use 1 worker."
        )
    per_organization, settled = parallel.sync(ids, trigger, workers, max_rounds)
    runs = Run.objects.in_bulk([pk for pks in per_organization for pk in pks])
    length = max(map(len, per_organization), default=0)
    rounds = []
    for number in range(length - 1):
        # Each organization's last run belongs to the last round.
        picked = [pks[number] for pks in per_organization if len(pks) > number + 1]
        rounds.append(Round([runs[pk] for pk in picked]))
    if length:
        last = [runs[pks[-1]] for pks in per_organization if pks]
        rounds.append(Round(last, unfinished=not settled))
    return rounds
