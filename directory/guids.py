"""Object GUIDs: RFC 9562 version 7 UUIDs, in order within a process and on the clock.

A version 7 UUID starts with the Unix time in milliseconds (48 bits); after the version and
variant bits, 74 bits are free (RFC 9562, section 5.7). Here they hold a counter that starts
at a random value each millisecond and, within the same millisecond, moves on by a random
step (section 6.2, method 2, "monotonic random"): every GUID is greater than the one before it
in the process, even when the clock steps back, and the timestamp stays the clock's own. (A
generator that instead adds a millisecond per GUID runs ahead of the clock by a minute for
every 60,000 GUIDs made in a second, as a bulk import does.)

The random bits come from a generator of the process's own, seeded from the operating system
and seeded again in a forked child, so that two workers forked from one parent do not make
the same GUIDs; nobody else's `random.seed()` (a test's, say) touches it. GUIDs are names, not
secrets: a Mersenne Twister is enough, and a system call per GUID would cost more than the
rest of making it.
"""

import os
import random
import time
import uuid

RANDOM_BITS = 74
# A step within one millisecond: random, so that the next GUID is not the last one plus one;
# small enough that n GUIDs in one millisecond run out of counter only if it started within
# n * 2**31 of its top, a chance of n in 2**43 (then the timestamp borrows a millisecond).
STEP_BITS = 31
_RAND_B_BITS = 62
_RAND_B_MASK = (1 << _RAND_B_BITS) - 1
_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62


class Sequence:
    """The GUIDs of one process: each greater than the one before."""

    def __init__(self):
        self.random = random.Random()
        self.restart()

    def restart(self) -> None:
        """Forget the last GUID and reseed (a forked child, or a new process)."""
        self.random.seed(os.urandom(32))
        self.last_ms, self.last_counter = -1, 0

    def next(self, now_ms: int) -> uuid.UUID:
        """The next GUID when the clock reads `now_ms` (milliseconds since 1970)."""
        if now_ms > self.last_ms:
            ms, counter = now_ms, self.random.getrandbits(RANDOM_BITS)
        else:  # the same millisecond, or the clock stepped back: on from the last GUID
            ms = self.last_ms
            counter = self.last_counter + 1 + self.random.getrandbits(STEP_BITS)
            if counter >> RANDOM_BITS:  # the counter ran out: borrow the next millisecond
                ms, counter = ms + 1, self.random.getrandbits(RANDOM_BITS)
        self.last_ms, self.last_counter = ms, counter
        return uuid.UUID(int=compose(ms, counter))


def compose(ms: int, counter: int) -> int:
    """A version 7 UUID's 128 bits from its timestamp and its 74 free bits."""
    rand_a = counter >> _RAND_B_BITS
    return (ms << 80) | _VERSION | (rand_a << 64) | _VARIANT | (counter & _RAND_B_MASK)


_sequence = Sequence()
os.register_at_fork(after_in_child=_sequence.restart)


def new_guid() -> uuid.UUID:
    return _sequence.next(time.time_ns() // 1_000_000)
