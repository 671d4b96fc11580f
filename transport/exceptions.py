"""How a handler tells the inbox what became of a message."""


class MessageRejected(Exception):
    """The message is refused for good; the reason is kept in the archive and nothing changes."""


class MessageDeferred(Exception):
    """The message cannot be applied yet (an earlier part is missing); it is kept and retried."""
