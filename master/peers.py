"""The master's side of transport.peers: what it holds of a requestor of this installation, for
that requestor's preview of its next cycle. Read only."""

import uuid
from collections.abc import Iterable

from directory.bulk import OneOf
from master.models import AllowedRequestor, GlobalEntry, MasterConfig
from transport import holds
from transport.peers import MasterEntry, MasterView
from transport.registry import at_address


def master_view(master_address: str, requestor_address: str) -> MasterView | None:
    master = (
        MasterConfig.objects.select_related("organization")
        .filter(at_address(master_address))
        .first()
    )
    if master is None:
        return None
    requestor = master.requestors.filter(address__iexact=requestor_address).first()
    if requestor is None:
        return MasterView(
            organization=master.organization.name,
            entries=lambda ids: {},
            live=0,
            threshold=holds.Threshold(0, 100, 0),
            blocked=f"{requestor_address} is not a requestor address of the master at "
            f"{master_address}: it refuses the export until an administrator adds it on the "
            "Master Configuration page.",
        )
    return MasterView(
        organization=master.organization.name,
        entries=lambda ids: _entries(requestor, ids),
        live=requestor.export_count,
        threshold=holds.Threshold(
            requestor.delete_limit, requestor.delete_percent, requestor.delete_floor
        ),
        blocked=_blocked(master, requestor),
    )


def _entries(
    requestor: AllowedRequestor, ids: Iterable[uuid.UUID] | None
) -> dict[uuid.UUID, MasterEntry]:
    entries = GlobalEntry.objects.filter(requestor=requestor)
    if ids is None:
        entries = entries.filter(deleted=False)
    else:
        ids = set(ids)
        if not ids:
            return {}
        entries = entries.filter(OneOf("object_id", ids))
    return {
        object_id: MasterEntry(deleted, attrs)
        for object_id, deleted, attrs in entries.values_list("object_id", "deleted", "attrs")
    }


def _blocked(master: MasterConfig, requestor: AllowedRequestor) -> str:
    if not master.enabled:
        return f"The master at {master.address} is disabled: it refuses every export."
    if not requestor.enabled:
        return f"The requestor {requestor.address} is disabled on its master: exports are refused."
    waiting = (
        holds.pending(master.organization_id)
        .filter(sender__iexact=requestor.address)
        .order_by("held_at")
        .first()
    )
    if waiting is not None:
        return (
            f"An earlier export batch of {requestor.organization_name} waits for the master's "
            f"administrator (held {waiting.held_at:%Y-%m-%d %H:%M} UTC: {waiting.reason}): the "
            "next one is held behind it, in order."
        )
    if requestor.quarantined:
        return (
            f"{requestor.organization_name} is quarantined on its master since "
            f"{requestor.quarantined_at:%Y-%m-%d %H:%M} UTC ({requestor.quarantine_reason}): "
            "its exports are kept and applied when an administrator releases it."
        )
    return ""
