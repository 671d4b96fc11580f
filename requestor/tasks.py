"""Celery entry points of the requestor: a cycle of one organization, and housekeeping.

The work is in requestor.cycle and requestor.housekeeping; these only look up ids and log, and
retry what a brief database error interrupted (transport.faults).
"""

import logging

from celery import shared_task
from django.contrib.auth import get_user_model

from requestor import grace, housekeeping
from requestor.constants import RunStatus, Trigger
from requestor.cycle import (
    CycleRunning,
    RunDone,
    RunNotFound,
    SyncError,
    close_queued_run,
    run_cycle,
)
from transport import faults

log = logging.getLogger(__name__)

# Execute Now (console, API, admin) while another cycle of the organization runs: wait for it and
# run after it, since the running cycle may have read the directory before the change the user
# wants to send. A scheduled cycle is skipped instead: the running one does its work.
MANUAL_RETRY_SECONDS = 5
MANUAL_RETRIES = 12
# A task may reach a worker before the request that queued its run has committed: it looks for
# the run again shortly, a few times (a request that rolled back leaves no run to look for).
QUEUED_RUN_RETRY_SECONDS = 1
QUEUED_RUN_RETRIES = 10


@shared_task(bind=True, ignore_result=True, max_retries=None)
def run_requestor_cycle(
    self,
    config_id: int,
    trigger: str = Trigger.SCHEDULE,
    user_id: int | None = None,
    action: str = "",
    run_id: int | None = None,
) -> int | None:
    """One requestor cycle of an organization; return the run's id, or None if not started.

    Execute Now (and Import All, Export All) send the id of the run they queued: the cycle takes
    that run over, and the task does nothing if another cycle already did.

    After a brief database error the run says it is retrying and the task runs again after a
    growing pause (the run itself counts the attempts); if not even the run could be recorded,
    the task is retried all the same, counting its own retries."""
    try:
        user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
        run = run_cycle(config_id, trigger, user, action=action, run_id=run_id)
    except CycleRunning as exc:
        if trigger != Trigger.SCHEDULE and self.request.retries < MANUAL_RETRIES:
            raise self.retry(countdown=MANUAL_RETRY_SECONDS) from None
        log.info("%s", exc)
        if run_id is not None:
            close_queued_run(run_id, f"Not started: {exc}")
        return None
    except RunNotFound as exc:
        if self.request.retries < QUEUED_RUN_RETRIES:
            raise self.retry(countdown=QUEUED_RUN_RETRY_SECONDS) from None
        log.warning("requestor cycle not started: %s", exc)
        return None
    except RunDone as exc:
        log.info("requestor cycle not needed: %s", exc)
        return run_id
    except SyncError as exc:
        log.warning("requestor cycle not started: %s", exc)
        if run_id is not None:
            close_queued_run(run_id, f"Not started: {exc}")
        return None
    except faults.TRANSIENT_DB_ERRORS as exc:
        attempt = self.request.retries + 1
        if attempt >= faults.MAX_ATTEMPTS:
            log.error("requestor cycle of config %s: database errors, giving up", config_id)
            raise
        log.warning("requestor cycle of config %s: %s", config_id, faults.describe(exc))
        raise self.retry(countdown=faults.pause(attempt), exc=exc) from None
    if run.status == RunStatus.RETRYING:
        raise self.retry(countdown=faults.pause(run.attempts))
    log.info("requestor cycle of config %s: run %s %s", config_id, run.pk, run.status)
    return run.pk


@shared_task(ignore_result=True, **faults.RETRY_ON_DATABASE_ERRORS)
def fail_stalled_runs() -> int:
    return housekeeping.fail_stalled_runs()


@shared_task(ignore_result=True, **faults.RETRY_ON_DATABASE_ERRORS)
def purge_directory_tombstones() -> int:
    return housekeeping.purge_directory_tombstones()


@shared_task(ignore_result=True, **faults.RETRY_ON_DATABASE_ERRORS)
def purge_runs() -> int:
    return housekeeping.purge_runs()


@shared_task(ignore_result=True, **faults.RETRY_ON_DATABASE_ERRORS)
def compact_imported_changes() -> int:
    return housekeeping.compact_imported_changes()


@shared_task(ignore_result=True, **faults.RETRY_ON_DATABASE_ERRORS)
def end_grace_periods() -> int:
    """Hidden contacts past their organization's grace period go for good (requestor.grace)."""
    return grace.purge_expired()
