"""SMTP delivery of queued messages (outbound) and parsing of received ones (inbound)."""

from transport.models import Message


def send_queued(pk: int) -> bool:
    """Send one queued SMTP message; not written yet, so it stays queued."""
    return not Message.objects.filter(pk=pk).exists()
