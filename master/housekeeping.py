"""The master's housekeeping: tombstones are kept for the configured lifetime, then purged.

A requestor whose master USN is older than the highest purged tombstone can no longer learn of
those deletes from a normal reply, so the master answers it with a full reply (protocol rule 5).
"""

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from master.models import GlobalEntry, MasterConfig

log = logging.getLogger(__name__)


def purge_tombstones() -> int:
    """Purge every master's tombstones older than its lifetime; return how many went."""
    return sum(
        purge_master_tombstones(pk) for pk in MasterConfig.objects.values_list("pk", flat=True)
    )


def purge_master_tombstones(master_id: int) -> int:
    with transaction.atomic():
        # The master's row is where USNs are allocated: hold it so no export is processed while
        # the purge moves purged_through_usn.
        master = MasterConfig.objects.select_for_update().filter(pk=master_id).first()
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
