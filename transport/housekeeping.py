"""The message archive is kept for troubleshooting, then purged (INTERORG_ARCHIVE_RETENTION_DAYS).

Only messages that are done with go: a message still queued, received or deferred is work in
progress, however old. An accepted message stays at least as long as the replay window plus a
mail queue's lifetime (INTERORG_REPLAY_HORIZON_SECONDS), whatever the retention asked for: until
then a copy of it could still arrive, and only the archive tells it for a replay.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from transport import archive
from transport.constants import Direction, Status
from transport.models import Message

log = logging.getLogger(__name__)

FINISHED = (Status.SENT, Status.PROCESSED, Status.REJECTED, Status.FAILED)
CHUNK = 1000


def purge_archive(days: int | None = None) -> int:
    """Delete finished messages older than the retention, and drop the rejected bodies kept
    longer than theirs (transport.archive); return how many messages went."""
    days = settings.INTERORG_ARCHIVE_RETENTION_DAYS if days is None else days
    now = timezone.now()
    archive.drop_expired_bodies(now)
    cutoff = now - timedelta(days=days)
    horizon = now - timedelta(seconds=settings.INTERORG_REPLAY_HORIZON_SECONDS)
    old = Message.objects.filter(status__in=FINISHED, created_at__lt=cutoff).exclude(
        direction=Direction.INBOUND, status=Status.PROCESSED, created_at__gte=horizon
    )
    purged = 0
    # In chunks: a year of messages must not become one huge transaction.
    while pks := list(old.order_by("pk").values_list("pk", flat=True)[:CHUNK]):
        deleted = Message.objects.filter(pk__in=pks, status__in=FINISHED).delete()[1]
        if not deleted.get(Message._meta.label):
            break
        purged += deleted[Message._meta.label]
    if purged:
        log.info("purged %s archived messages older than %s days", purged, days)
    return purged
