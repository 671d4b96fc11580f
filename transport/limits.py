"""How much mail the SMTP receiver lets in, counted over the last hour: per sender (the envelope
address), in all, and from senders that are not allowed agents (all of them together, since a
stranger can make up a new address for every mail). Beyond a limit the answer is a 4xx: a relay
keeps the mail and tries again later, a flood goes nowhere.

The counts live in the receiver's memory (one `run_smtpd` process, its event loop thread): they
start from nothing when it restarts. Only mail let in counts, so what a flood costs in memory is
bounded by the limits themselves.
"""

import time
from collections import deque
from dataclasses import dataclass

from django.conf import settings

from transport.mail import one_line

HOUR = 3600.0
# Empty per-sender windows are forgotten every this many mails let in.
SWEEP_EVERY = 256


class Window:
    """Mail let in over the last `period` seconds: when, and how many bytes."""

    def __init__(self, period: float = HOUR):
        self.period = period
        self.events: deque[tuple[float, int]] = deque()
        self.bytes = 0

    def _expire(self, now: float) -> None:
        while self.events and self.events[0][0] <= now - self.period:
            self.bytes -= self.events.popleft()[1]

    def totals(self, now: float) -> tuple[int, int]:
        """(mails, bytes) within the window."""
        self._expire(now)
        return len(self.events), self.bytes

    def add(self, now: float, size: int) -> None:
        self._expire(now)
        self.events.append((now, size))
        self.bytes += size


@dataclass(frozen=True)
class Limits:
    sender_messages: int
    sender_bytes: int
    messages: int
    bytes: int
    unknown_messages: int

    @classmethod
    def from_settings(cls) -> "Limits":
        return cls(
            sender_messages=settings.INTERORG_SMTPD_SENDER_MESSAGES_PER_HOUR,
            sender_bytes=settings.INTERORG_SMTPD_SENDER_BYTES_PER_HOUR,
            messages=settings.INTERORG_SMTPD_MESSAGES_PER_HOUR,
            bytes=settings.INTERORG_SMTPD_BYTES_PER_HOUR,
            unknown_messages=settings.INTERORG_SMTPD_UNKNOWN_SENDER_MESSAGES_PER_HOUR,
        )


class Gate:
    """The receiver's counts and what they refuse. Each method returns the SMTP reply that
    refuses, or None."""

    def __init__(self, limits: Limits, clock=time.monotonic):
        self.limits = limits
        self.clock = clock
        self.all = Window()
        self.unknown = Window()
        self.senders: dict[str, Window] = {}
        self.recorded = 0

    def _sender(self, sender: str) -> Window:
        return self.senders.get(sender.lower()) or Window()

    def at_mail(self, sender: str, size: int = 0) -> str | None:
        """Before anything is sent: the sender's and everyone's counts, with the size the
        client declared (SIZE=), if any."""
        return self._refusal(sender, size)

    def at_data(self, sender: str, size: int, unknown: bool) -> str | None:
        """With the mail in hand: would letting it in pass a limit?"""
        if unknown and (refusal := self.for_unknown()):
            return refusal
        return self._refusal(sender, size)

    def for_unknown(self) -> str | None:
        count, _ = self.unknown.totals(self.clock())
        if count >= self.limits.unknown_messages:
            return (
                "451 4.7.1 Too much mail from senders that are not agents of this "
                "installation in the last hour; try again later"
            )
        return None

    def _refusal(self, sender: str, size: int) -> str | None:
        """Would one more mail of `size` bytes pass a limit?"""
        now, limits = self.clock(), self.limits
        count, volume = self._sender(sender).totals(now)
        who = one_line(sender, 100) or "<>"
        if count + 1 > limits.sender_messages:
            return f"451 4.7.1 Too many messages from {who} in the last hour; try again later"
        if volume + size > limits.sender_bytes:
            return f"451 4.7.1 Too much mail from {who} in the last hour; try again later"
        count, volume = self.all.totals(now)
        if count + 1 > limits.messages or volume + size > limits.bytes:
            return "451 4.7.1 Too much mail in the last hour; try again later"
        return None

    def record(self, sender: str, size: int, unknown: bool) -> None:
        """A mail was let in."""
        now = self.clock()
        self.senders.setdefault(sender.lower(), Window()).add(now, size)
        self.all.add(now, size)
        if unknown:
            self.unknown.add(now, size)
        self.recorded += 1
        if self.recorded % SWEEP_EVERY == 0:
            self.senders = {k: w for k, w in self.senders.items() if w.totals(now)[0]}


class Connections:
    """Open SMTP connections, against INTERORG_SMTPD_MAX_CONNECTIONS."""

    def __init__(self, maximum: int):
        self.maximum = maximum
        self.open = 0

    def take(self) -> bool:
        if self.open >= self.maximum:
            return False
        self.open += 1
        return True

    def give_back(self) -> None:
        self.open -= 1
