"""Delivery status notifications (RFC 3464): a relay telling an agent that its message could
not be delivered. A permanent failure fails the message sent, and its agent is told at once
(an export's run fails with the reason) instead of waiting for a reply that will never come."""

import logging
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import HeaderParser

from transport.constants import Direction, Status
from transport.models import Message
from transport.registry import delivery_failed

log = logging.getLogger(__name__)


@dataclass
class Bounce:
    """What a delivery report says about the message it reports on."""

    original_message_id: str
    action: str
    status: str
    diagnostic: str
    reporter: str

    @property
    def permanent(self) -> bool:
        return self.action == "failed" and self.status.startswith("5")

    def describe(self) -> str:
        said = " ".join(part for part in (self.status, self.diagnostic) if part)
        return f"Bounced by {self.reporter or 'a mail server'}: {said or self.action}"


def read_bounce(mail: EmailMessage) -> Bounce | None:
    """The delivery report in a received mail, or None if it is not one."""
    if mail.get_content_type() != "multipart/report":
        return None
    if (mail.get_param("report-type") or "").lower() != "delivery-status":
        return None
    fields: dict[str, str] = {}
    original = ""
    for part in mail.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            for block in part.get_payload():
                for name in ("Action", "Status", "Diagnostic-Code", "Reporting-MTA"):
                    value = block.get(name)
                    if value and name not in fields:
                        fields[name] = " ".join(str(value).split())
        elif kind == "text/rfc822-headers" and not original:
            original = str(HeaderParser().parsestr(part.get_content()).get("Message-ID", ""))
        elif kind == "message/rfc822" and not original:
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            original = str(inner.get("Message-ID", "")) if hasattr(inner, "get") else ""
    if not original:
        return None
    reporter = fields.get("Reporting-MTA", "").partition(";")[2].strip()
    return Bounce(
        original_message_id=original.strip(),
        action=fields.get("Action", "").lower(),
        status=fields.get("Status", ""),
        diagnostic=fields.get("Diagnostic-Code", "").partition(";")[2].strip()[:500],
        reporter=reporter[:200],
    )


def apply_bounce(bounce: Bounce, recipient: str) -> Message | None:
    """Fail the message a permanent bounce reports on, if this agent sent it; return it."""
    if not bounce.permanent:
        return None
    sent = (
        Message.objects.filter(
            direction=Direction.OUTBOUND,
            message_id=bounce.original_message_id,
            sender__iexact=recipient,
        )
        .exclude(status=Status.FAILED)
        .first()
    )
    if sent is None:
        return None
    sent.status, sent.error = Status.FAILED, bounce.describe()
    sent.save(update_fields=["status", "error"])
    log.warning("message %s to %s bounced: %s", sent.pk, sent.recipient, sent.error)
    delivery_failed(sent)
    return sent
