"""Whom a requestor accepts replies from: its master, signing with the configured key."""

from requestor.models import RequestorConfig
from transport.registry import at_address


def organization_at(address: str) -> int | None:
    return (
        RequestorConfig.objects.filter(at_address(address))
        .values_list("organization_id", flat=True)
        .first()
    )


def trusted_keys(recipient: str, sender: str) -> list[str] | None:
    row = (
        RequestorConfig.objects.filter(at_address(recipient))
        .values_list("master_address", "master_public_key")
        .first()
    )
    if row is None or row[0].lower() != sender.strip().lower():
        return None
    return [row[1]] if row[1] else []
