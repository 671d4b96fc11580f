"""Whom the master accepts exports from: its allowlist of requestor addresses and their keys."""

from master.models import AllowedRequestor, MasterConfig
from transport.registry import at_address


def organization_at(address: str) -> int | None:
    return (
        MasterConfig.objects.filter(at_address(address))
        .values_list("organization_id", flat=True)
        .first()
    )


def trusted_keys(recipient: str, sender: str) -> list[str] | None:
    # A disabled requestor still counts as known here: the master refuses it with that reason.
    key = (
        AllowedRequestor.objects.filter(
            master__in=MasterConfig.objects.filter(at_address(recipient)),
            address__iexact=sender,
        )
        .values_list("public_key", flat=True)
        .first()
    )
    if key is None:
        return None
    return [key] if key else []
