"""Celery entry points of the requestor: a cycle of one organization, and housekeeping.

The work is in requestor.cycle and requestor.housekeeping; these only look up ids and log.
"""

import logging

from celery import shared_task
from django.contrib.auth import get_user_model

from requestor import grace, housekeeping
from requestor.constants import Trigger
from requestor.cycle import CycleRunning, SyncError, run_cycle

log = logging.getLogger(__name__)

# Execute Now while another cycle of the organization runs: wait for it and run after it, since
# the running cycle may have read the directory before the change the user wants to send.
MANUAL_RETRY_SECONDS = 5
MANUAL_RETRIES = 12


@shared_task(bind=True, ignore_result=True, max_retries=MANUAL_RETRIES)
def run_requestor_cycle(
    self, config_id: int, trigger: str = Trigger.SCHEDULE, user_id: int | None = None
) -> int | None:
    """One requestor cycle of an organization; return the run's id, or None if not started."""
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    try:
        run = run_cycle(config_id, trigger, user)
    except CycleRunning as exc:
        if trigger == Trigger.MANUAL and self.request.retries < MANUAL_RETRIES:
            raise self.retry(countdown=MANUAL_RETRY_SECONDS) from None
        log.info("%s", exc)
        return None
    except SyncError as exc:
        log.warning("requestor cycle not started: %s", exc)
        return None
    log.info("requestor cycle of config %s: run %s %s", config_id, run.pk, run.status)
    return run.pk


@shared_task(ignore_result=True)
def fail_stalled_runs() -> int:
    return housekeeping.fail_stalled_runs()


@shared_task(ignore_result=True)
def purge_directory_tombstones() -> int:
    return housekeeping.purge_directory_tombstones()


@shared_task(ignore_result=True)
def purge_runs() -> int:
    return housekeeping.purge_runs()


@shared_task(ignore_result=True)
def compact_imported_changes() -> int:
    return housekeeping.compact_imported_changes()


@shared_task(ignore_result=True)
def end_grace_periods() -> int:
    """Hidden contacts past their organization's grace period go for good (requestor.grace)."""
    return grace.purge_expired()
