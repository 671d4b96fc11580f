"""What a master of this installation can tell one of its requestors without a message: for that
requestor's preview of its next cycle (requestor.preview) only, never for syncing.

A requestor never reads the master's tables (they only exchange messages, as two organizations
would). A preview, though, can say more when the master runs in the same installation: which
attributes an upsert changes at the master, whether an export would be held by the master's
mass-delete guard. The master app registers `master_view` here in its `AppConfig.ready()`, as
it registers its agent in transport.registry; without it (or with the master elsewhere) the
preview says what it cannot know.
"""

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from transport.holds import Threshold


@dataclass(frozen=True)
class MasterEntry:
    """A master's global entry of one of the requestor's objects, as the master holds it."""

    deleted: bool
    attrs: dict


@dataclass(frozen=True)
class MasterView:
    """What a master of this installation holds of one requestor."""

    organization: str
    # object ids → their entries (every entry of the requestor, live or not, among those ids);
    # None → every live entry of the requestor. One query whatever the number of ids.
    entries: Callable[[Iterable[uuid.UUID] | None], dict[uuid.UUID, MasterEntry]]
    # The requestor's live entries at the master, which its guard's percentage counts from.
    live: int
    threshold: Threshold
    # Why the master would not apply the requestor's next export now ("" when it would).
    blocked: str = ""


_views: list[Callable[[str, str], MasterView | None]] = []


def register_master_view(view: Callable[[str, str], MasterView | None]) -> None:
    """`view(master_address, requestor_address)`: what the master receiving at the first
    address holds of the requestor sending from the second, or None if it is not here."""
    if view not in _views:
        _views.append(view)


def master_view(master_address: str, requestor_address: str) -> MasterView | None:
    """The view of the master at `master_address` if it runs in this installation, else None."""
    for view in _views:
        found = view(master_address, requestor_address)
        if found is not None:
            return found
    return None
