"""Celery entry points of the master service; the work is in master.housekeeping."""

from celery import shared_task

from master import housekeeping


@shared_task(ignore_result=True)
def purge_tombstones() -> int:
    return housekeeping.purge_tombstones()


@shared_task(ignore_result=True)
def purge_received_batches() -> int:
    return housekeeping.purge_received_batches()


@shared_task(ignore_result=True)
def compact_ledger() -> int:
    return housekeeping.compact_ledger()
