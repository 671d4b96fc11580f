"""The requestor's housekeeping: runs whose reply never came, and tombstones nobody needs."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, Subquery
from django.utils import timezone

from directory.models import Organization, Tombstone
from requestor.constants import RunStatus
from requestor.models import ImportedChange, RequestorConfig, Run

log = logging.getLogger(__name__)


def supersede_waiting_runs() -> int:
    """Runs still waiting for a reply while a later run of the same requestor completed: the
    later export carried their changes again (the requestor USN only follows the master's ack),
    so they are closed, saying which run did. Return how many."""
    later = Run.objects.filter(
        config=OuterRef("config"), status=RunStatus.OK, started_at__gt=OuterRef("started_at")
    ).order_by("started_at")
    waiting = Run.objects.filter(status=RunStatus.WAITING).annotate(
        done_by=Subquery(later.values("pk")[:1]), done_at=Subquery(later.values("finished_at")[:1])
    )
    closed = 0
    for run in waiting.exclude(done_by=None):
        closed += Run.objects.filter(pk=run.pk, status=RunStatus.WAITING).update(
            status=RunStatus.SUPERSEDED,
            finished_at=run.done_at,
            error=f"No reply came; run {run.done_by} carried these changes again and completed.",
        )
    return closed


def fail_stalled_runs(minutes: int | None = None) -> int:
    """Mark failed the runs that have waited longer than INTERORG_STALLED_RUN_MINUTES for the
    master's reply; return how many. Nothing is lost: the next cycle exports the same changes
    again, and a reply that still arrives is applied and completes its run."""
    minutes = settings.INTERORG_STALLED_RUN_MINUTES if minutes is None else minutes
    supersede_waiting_runs()
    now = timezone.now()
    stalled = Run.objects.filter(
        status__in=[RunStatus.RUNNING, RunStatus.WAITING],
        started_at__lt=now - timedelta(minutes=minutes),
    )
    count = stalled.update(
        status=RunStatus.FAILED,
        finished_at=now,
        error=f"No reply from the master within {minutes} minutes. Nothing is lost: the next "
        "cycle sends these changes again. If this repeats, check the master address on the "
        "Import Config page, this requestor's entry on the master's allowlist, and the message "
        "archive for a rejected or undelivered message.",
    )
    if count:
        log.warning(
            "marked %s requestor runs failed after %s minutes without reply", count, minutes
        )
    # A retry that never came (its task lost with the broker's queue) and no later cycle.
    count += Run.objects.filter(
        status=RunStatus.RETRYING, started_at__lt=now - timedelta(minutes=minutes)
    ).update(
        status=RunStatus.FAILED,
        finished_at=now,
        error=f"Interrupted by a database error and not tried again within {minutes} minutes; "
        "nothing of it was applied, and the next cycle sends its changes.",
    )
    return count + fail_queued_runs(now)


def fail_queued_runs(now=None) -> int:
    """Close the runs Execute Now queued that no worker started within
    INTERORG_QUEUED_RUN_MINUTES: their task was lost (the broker's queue emptied) or no worker
    runs. Nothing of them was done; return how many."""
    minutes = settings.INTERORG_QUEUED_RUN_MINUTES
    now = now or timezone.now()
    count = Run.objects.filter(
        status=RunStatus.QUEUED, started_at__lt=now - timedelta(minutes=minutes)
    ).update(
        status=RunStatus.FAILED,
        finished_at=now,
        error=f"No worker started this run within {minutes} minutes: its task was lost (the "
        "broker restarted or its queue was emptied) or no worker is running. Nothing was sent; "
        "check that the workers run (the Status page, /healthz) and press Execute Now again.",
    )
    if count:
        log.warning(
            "closed %s queued requestor runs no worker started in %s minutes", count, minutes
        )
    return count


def purge_directory_tombstones(days: int | None = None) -> int:
    """Delete tombstones older than INTERORG_TOMBSTONE_RETENTION_DAYS that no export needs any
    more: the organization's requestor has had them acknowledged (USN ≤ its requestor USN), or
    the organization runs no requestor, or the deleted object was an imported contact (never
    exported). Return how many went."""
    days = settings.INTERORG_TOMBSTONE_RETENTION_DAYS if days is None else days
    old = Tombstone.objects.filter(deleted_at__lt=timezone.now() - timedelta(days=days))
    acknowledged = dict(RequestorConfig.objects.values_list("organization_id", "requestor_usn"))
    purged = 0
    for organization_id in Organization.objects.values_list("pk", flat=True):
        mine = old.filter(organization_id=organization_id)
        if organization_id in acknowledged:
            mine = mine.filter(Q(imported=True) | Q(usn__lte=acknowledged[organization_id]))
        purged += mine.delete()[0]
    if purged:
        log.info("purged %s directory tombstones older than %s days", purged, days)
    return purged


def purge_runs(days: int | None = None) -> int:
    """Delete finished runs older than INTERORG_ARCHIVE_RETENTION_DAYS (the messages they sent
    are gone by then too), always keeping each requestor's latest run. Return how many."""
    days = settings.INTERORG_ARCHIVE_RETENTION_DAYS if days is None else days
    latest = Run.objects.filter(config=OuterRef("config")).order_by("-started_at", "-id")
    old = Run.objects.filter(
        started_at__lt=timezone.now() - timedelta(days=days),
        status__in=[RunStatus.OK, RunStatus.FAILED, RunStatus.SUPERSEDED],
    ).exclude(pk=Subquery(latest.values("pk")[:1]))
    purged = old.delete()[0]
    if purged:
        log.info("purged %s runs older than %s days", purged, days)
    return purged


def compact_imported_changes(days: int | None = None) -> int:
    """Keep INTERORG_HISTORY_RETENTION_DAYS of each organization's import history: older rows go,
    except the latest of each entry (what its address book held at the horizon), and that one
    too when it says the contact was removed. The history and the address book as of a time are
    exact from the horizon on. Return how many rows went."""
    days = settings.INTERORG_HISTORY_RETENTION_DAYS if days is None else days
    horizon = timezone.now() - timedelta(days=days)
    old = ImportedChange.objects.filter(at__lt=horizon)
    later = old.filter(
        organization=OuterRef("organization"),
        global_key=OuterRef("global_key"),
        pk__gt=OuterRef("pk"),
    )
    purged = old.filter(Exists(later)).delete()[0]
    purged += old.filter(op=ImportedChange.Op.REMOVED).delete()[0]
    if purged:
        log.info("compacted %s imported changes older than %s days", purged, days)
    return purged
