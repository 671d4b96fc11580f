"""How a handler tells the inbox what became of a message."""


class MessageRejected(Exception):
    """The message is refused for good; the reason is kept in the archive and nothing changes."""


class MessageUnverified(MessageRejected):
    """The sender may not send here, or no signature of its vouches for the message: refused,
    and its body is not kept (transport.archive)."""


class MessageDeferred(Exception):
    """The message cannot be applied yet (an earlier part is missing); it is kept and retried."""


class MessageReplayed(MessageRejected):
    """A copy of a message accepted before, or one too old to be anything else: refused, but
    its sender needs no telling (the original got through, or a newer message did)."""


class MessageHeld(Exception):
    """The message is kept, not applied, until an administrator decides (transport.holds).

    Raised by a handler whose guard tripped (then `deletes`, `live` and `sample` describe the
    batch, and a Hold is recorded for it), or by the inbox for a message that waits behind a
    held one or whose sender is quarantined (no Hold of its own)."""

    def __init__(
        self,
        reason: str,
        *,
        deletes: int | None = None,
        live: int = 0,
        sample: list[str] | None = None,
        peer: str = "",
    ) -> None:
        super().__init__(reason)
        self.deletes = deletes
        self.live = live
        self.sample = sample or []
        self.peer = peer

    @property
    def trips_guard(self) -> bool:
        return self.deletes is not None
