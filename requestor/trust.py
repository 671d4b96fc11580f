"""Whom a requestor accepts replies from: its master, signing with the configured key."""

from django.db.models import Q

from requestor.models import RequestorConfig


def by_address(address: str) -> Q:
    """An agent is reached at its SMTP address or, inside this installation, its DN."""
    return Q(address__iexact=address) | Q(dn__iexact=address)


def organization_at(address: str) -> int | None:
    return (
        RequestorConfig.objects.filter(by_address(address))
        .values_list("organization_id", flat=True)
        .first()
    )


def trusted_keys(recipient: str, sender: str) -> list[str] | None:
    row = (
        RequestorConfig.objects.filter(by_address(recipient))
        .values_list("master_address", "master_public_key")
        .first()
    )
    if row is None or row[0].lower() != sender.strip().lower():
        return None
    return [row[1]] if row[1] else []
