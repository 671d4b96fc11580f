"""The master's housekeeping: tombstones are kept for the configured lifetime, then purged;
export batches are forgotten once none of their parts can arrive any more; the ledger keeps
each entry's latest row and the changes of the tombstone lifetime.

A requestor whose master USN is older than the highest purged tombstone can no longer learn of
those deletes from a normal reply, so the master answers it with a full reply (protocol rule 6).
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, Max, OuterRef
from django.utils import timezone

from master.models import GlobalEntry, LedgerEntry, MasterConfig, ReceivedBatch

log = logging.getLogger(__name__)
CHUNK = 5000


def purge_tombstones() -> int:
    """Purge every master's tombstones older than its lifetime; return how many went."""
    return sum(
        purge_master_tombstones(pk) for pk in MasterConfig.objects.values_list("pk", flat=True)
    )


def purge_master_tombstones(master_id: int) -> int:
    with transaction.atomic():
        # The master's row is where USNs are allocated: hold it so no export is processed while
        # the purge moves purged_through_usn.
        master = MasterConfig.objects.select_for_update(no_key=True).filter(pk=master_id).first()
        if master is None:
            return 0
        cutoff = timezone.now() - timedelta(days=master.tombstone_lifetime_days)
        expired = GlobalEntry.objects.filter(master=master, deleted=True, changed_at__lt=cutoff)
        highest = expired.aggregate(usn=Max("usn"))["usn"] or 0
        count, _ = expired.delete()
        if highest > master.purged_through_usn:
            MasterConfig.objects.filter(pk=master.pk).update(purged_through_usn=highest)
    if count:
        log.info("master of %s: purged %s tombstones through USN %s", master, count, highest)
    return count


def purge_received_batches(seconds: int | None = None) -> int:
    """Forget export batches older than the replay window plus a mail queue's lifetime: no part
    of them can be accepted any more (it would be stale by its own clock), so nothing needs to
    know whether they arrived whole or were answered. Return how many went."""
    seconds = settings.INTERORG_REPLAY_HORIZON_SECONDS if seconds is None else seconds
    cutoff = timezone.now() - timedelta(seconds=seconds)
    count, _ = ReceivedBatch.objects.filter(created_at__lt=cutoff).delete()
    if count:
        log.info("forgot %s export batches older than %s s", count, seconds)
    return count


def compact_ledger() -> int:
    """Drop ledger rows older than the master's tombstone lifetime that a later row of the same
    entry superseded, or whose entry is gone (its tombstone purged). The latest row of every
    entry stays, so the ledger never grows beyond the entries plus the lifetime's changes. A
    requestor that reports a position whose row is gone cannot be checked against the ledger's
    fingerprint: it gets a full reply (master.processing.reply_is_full). Return how many went."""
    total = 0
    for master in MasterConfig.objects.all():
        cutoff = timezone.now() - timedelta(days=master.tombstone_lifetime_days)
        rows = LedgerEntry.objects.filter(master=master, created_at__lt=cutoff)
        newer = LedgerEntry.objects.filter(
            master=master, global_key=OuterRef("global_key"), usn__gt=OuterRef("usn")
        )
        entry = GlobalEntry.objects.filter(master=master, global_key=OuterRef("global_key"))
        old = rows.filter(Exists(newer) | ~Exists(entry))
        # In chunks: years of changes must not become one huge transaction.
        while pks := list(old.order_by("usn").values_list("pk", flat=True)[:CHUNK]):
            total += LedgerEntry.objects.filter(pk__in=pks).delete()[0]
    if total:
        log.info("compacted the ledger: %s superseded rows dropped", total)
    return total
