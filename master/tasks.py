"""Celery entry points of the master service; the work is in master.housekeeping. Each is safe
to run again, so a brief database error retries it (transport.faults). The master's processing
of an export runs as the received message's task (transport.tasks.process_message)."""

from celery import shared_task

from master import housekeeping
from transport import faults


@shared_task(ignore_result=True, **faults.RETRY_ON_DATABASE_ERRORS)
def purge_tombstones() -> int:
    return housekeeping.purge_tombstones()


@shared_task(ignore_result=True, **faults.RETRY_ON_DATABASE_ERRORS)
def purge_received_batches() -> int:
    return housekeeping.purge_received_batches()


@shared_task(ignore_result=True, **faults.RETRY_ON_DATABASE_ERRORS)
def compact_ledger() -> int:
    return housekeeping.compact_ledger()
