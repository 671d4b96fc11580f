"""Order-independent digests of sets of (identity, version) pairs (docs/protocol.md, rule 10).

A digest is the XOR of a 128-bit hash of each member plus the number of members: adding or
removing one member costs one hash, whatever the size of the set, and two sides that hold the
same set have the same digest however they got there. This is how the master and each requestor
prove every cycle that they hold the same entries without reading whole tables. (XOR cancels a
member added twice: the count, and each side adding a member only once, keep that honest.)
"""

import hashlib
from dataclasses import dataclass

BITS = 128
EMPTY = "0" * (BITS // 4)


def member(identity: str, version: int) -> int:
    """The hash of one member: an object's identity (a GUID or a global key) at a version."""
    data = f"{identity}\x1f{version}".encode()
    digest = hashlib.blake2b(data, digest_size=BITS // 8).digest()
    # "big" is int.from_bytes's default byte order since Python 3.11 (the oldest supported).
    return int.from_bytes(digest, "big")  # pragma: no mutate


def to_hex(value: int) -> str:
    return f"{value:0{BITS // 4}x}"


def from_hex(text: str) -> int:
    return int(text or EMPTY, 16)


@dataclass
class Tally:
    """A digest being computed or kept: the XOR of its members' hashes, and their number."""

    value: int = 0
    count: int = 0

    @classmethod
    def of(cls, digest: str, count: int) -> "Tally":
        return cls(from_hex(digest), count)

    def add(self, identity: str, version: int) -> None:
        self.value ^= member(identity, version)
        self.count += 1

    def remove(self, identity: str, version: int) -> None:
        self.value ^= member(identity, version)
        self.count -= 1

    def toggle(self, hashed: int, sign: int) -> None:
        """Add (sign +1) or remove (-1) a member already hashed by member()."""
        self.value ^= hashed
        self.count += sign

    def merge(self, other: "Tally") -> "Tally":
        """Add every member of `other` (a set disjoint from this one)."""
        self.value ^= other.value
        self.count += other.count
        return self

    def without(self, other: "Tally") -> "Tally":
        """This set less `other`, a subset of it."""
        return Tally(self.value ^ other.value, self.count - other.count)

    @property
    def hex(self) -> str:
        return to_hex(self.value)

    def as_dict(self) -> dict:
        return {"digest": self.hex, "count": self.count}

    def __str__(self) -> str:
        return f"{self.hex[:12]}…/{self.count}"
