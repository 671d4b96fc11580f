"""How a handler tells the inbox what became of a message."""


class MessageRejected(Exception):
    """The message is refused for good; the reason is kept in the archive and nothing changes."""


class MessageDeferred(Exception):
    """The message cannot be applied yet (an earlier part is missing); it is kept and retried."""


class MessageReplayed(MessageRejected):
    """A copy of a message accepted before, or one too old to be anything else: refused, but
    its sender needs no telling (the original got through, or a newer message did)."""
