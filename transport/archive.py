"""What the archive keeps of an inbound mail, and how much room the kept bodies take.

Anyone can send mail to an agent address, and an envelope sender proves nothing: a body is kept
only while a signature may still vouch for it (received, waiting to be processed) and once one
did. A mail rejected before that (from a sender that is not an allowed agent, broken, unsigned,
or with a signature that does not verify) is kept by its header, size, SHA-256 digest and reason;
its body goes, unless INTERORG_KEEP_REJECTED_BODIES keeps it for troubleshooting: then at most
INTERORG_KEEP_REJECTED_BODIES_MAX bytes of such bodies at once, each for
INTERORG_KEEP_REJECTED_BODIES_DAYS days (`drop_expired_bodies`, from the daily purge).

The bodies kept in all count against INTERORG_ARCHIVE_MAX_BYTES: the SMTP receiver refuses mail
with 452 past it, and console.alerts warns from INTERORG_ARCHIVE_ALERT_PERCENT of it on.
"""

import hashlib
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from transport.constants import Direction
from transport.models import Message

log = logging.getLogger(__name__)

# The most of a mail's header kept when its body is not: enough for every Received line of a
# long relay path, not a way around the body rule.
MAX_HEADERS = 16 * 1024


def digest_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def header_of(raw: bytes) -> str:
    """The header block of a mail (up to its first empty line), cut at MAX_HEADERS, as text a
    database column takes (PostgreSQL's text holds no NUL)."""
    end = len(raw)
    for separator in (b"\r\n\r\n", b"\n\n"):
        found = raw.find(separator, 0, MAX_HEADERS + 4)
        if found != -1:
            end = min(end, found)
    text = raw[: min(end, MAX_HEADERS)].decode("utf-8", "replace").replace("\x00", "\ufffd")
    return text + ("\n… (cut)" if end > MAX_HEADERS else "")


def stored_bodies():
    """Inbound messages whose body the archive holds."""
    return Message.objects.filter(direction=Direction.INBOUND, body_dropped=False)


def usage() -> int:
    """Bytes of inbound bodies in the archive (for a kept body, `size` is its length)."""
    return stored_bodies().aggregate(total=Sum("size"))["total"] or 0


def figures() -> dict:
    """The archive's use as the dashboard shows it to staff."""
    used, cap = usage(), settings.INTERORG_ARCHIVE_MAX_BYTES
    return {
        "used": used,
        "cap": cap,
        "percent": used * 100 // cap,
        "alert": used >= alert_level(),
    }


def alert_level() -> int:
    return settings.INTERORG_ARCHIVE_MAX_BYTES * settings.INTERORG_ARCHIVE_ALERT_PERCENT // 100


def keep_rejected_until(size: int, now: datetime | None = None) -> datetime | None:
    """Until when a rejected body of `size` bytes is kept: None (not at all) unless the setting
    is on and the body fits within the bound with those already kept."""
    if not settings.INTERORG_KEEP_REJECTED_BODIES:
        return None
    kept = stored_bodies().filter(body_kept_until__isnull=False).aggregate(total=Sum("size"))
    if (kept["total"] or 0) + size > settings.INTERORG_KEEP_REJECTED_BODIES_MAX:
        return None
    days = settings.INTERORG_KEEP_REJECTED_BODIES_DAYS
    return (now or timezone.now()) + timedelta(days=days)


def rejected(raw: bytes) -> dict:
    """The archive fields of a mail rejected on arrival, before any signature vouched for it."""
    until = keep_rejected_until(len(raw))
    return {
        "payload": raw if until else b"",
        "size": len(raw),
        "body_dropped": until is None,
        "body_kept_until": until,
    }


def drop_body(message: Message) -> list[str]:
    """A message whose signature failed: its body goes now (or is kept for a while, as for any
    rejected mail). Sets the fields on `message`, returns their names for `save()`."""
    payload = bytes(message.payload)
    message.digest = message.digest or digest_of(payload)
    until = keep_rejected_until(len(payload))
    if until is None:
        message.payload, message.body_dropped, message.body_kept_until = b"", True, None
    else:
        message.body_kept_until = until
    return ["digest", "payload", "body_dropped", "body_kept_until"]


def drop_expired_bodies(now: datetime | None = None) -> int:
    """Drop the rejected bodies kept longer than INTERORG_KEEP_REJECTED_BODIES_DAYS; the
    records stay for the archive's own retention."""
    dropped = Message.objects.filter(body_kept_until__lt=now or timezone.now()).update(
        payload=b"", body_dropped=True, body_kept_until=None
    )
    if dropped:
        log.info("dropped the kept bodies of %s rejected messages", dropped)
    return dropped
