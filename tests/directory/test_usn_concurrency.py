"""Local USNs under concurrent writers: distinct, and committed in USN order (protocol rule 3).

Two threads, each with its own database connection, create recipients of one organization while
a third keeps reading which USNs are visible. If USN allocation is serialized with commit, every
reading is 1..n without a gap: once n is visible, no lower USN can still appear, so an export
that read up to n never skips a change. A lock-free allocation breaks that, as the second test
shows deterministically.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
from django.db import connections, transaction

import directory.changes
from directory import changes
from directory.factories import RecipientFactory
from directory.models import Organization, Recipient

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WRITERS = 2


@dataclass
class Outcome:
    """USNs each writer got, in its own order, and the USN sets a reader saw meanwhile."""

    by_writer: list[list[int]]
    readings: list[set[int]] = field(default_factory=list)

    def problems(self) -> list[str]:
        found = []
        usns = sorted(u for own in self.by_writer for u in own)
        if len(set(usns)) != len(usns):
            found.append("duplicate USNs")
        if any(own != sorted(set(own)) for own in self.by_writer):
            found.append("a writer's USNs went backwards")
        if any(seen != set(range(1, len(seen) + 1)) for seen in self.readings):
            found.append("a reader saw a USN before a lower one had committed")
        return found

    def interleaved(self) -> bool:
        owner = {u: i for i, own in enumerate(self.by_writer) for u in own}
        usns = sorted(owner)
        return any(owner[a] != owner[b] for a, b in zip(usns, usns[1:], strict=False))


def own_connection(fn):
    """Run `fn` on the calling thread's own connection, closed when it is done."""

    def run(*args):
        try:
            return fn(*args)
        finally:
            connections.close_all()

    return run


def create_concurrently(container, per_writer: int) -> Outcome:
    start = threading.Barrier(WRITERS + 1)
    done = threading.Event()

    @own_connection
    def write(writer: int) -> list[int]:
        start.wait(timeout=30)
        usns = []
        for n in range(per_writer):
            name = f"w{writer}-{n}"
            recipient = Recipient(
                container=container, display_name=name, alias=name, primary_smtp=f"{name}@x.test"
            )
            changes.save_recipient(recipient)
            usns.append(recipient.usn)
        return usns

    @own_connection
    def read() -> list[set[int]]:
        readings = []
        start.wait(timeout=30)
        while not done.is_set():
            own = Recipient.objects.filter(organization_id=container.organization_id)
            readings.append(set(own.values_list("usn", flat=True)))
        return readings

    with ThreadPoolExecutor(WRITERS + 1) as pool:
        reader = pool.submit(read)
        writers = [pool.submit(write, i) for i in range(WRITERS)]
        try:
            by_writer = [w.result(timeout=120) for w in writers]
        finally:
            done.set()
        return Outcome(by_writer, reader.result(timeout=30))


def test_it_hands_out_distinct_usns_in_commit_order(container):
    outcome = create_concurrently(container, per_writer=100)

    assert outcome.problems() == []
    assert sorted(u for own in outcome.by_writer for u in own) == list(range(1, 201))
    assert Organization.objects.get(pk=container.organization_id).usn == 200
    assert outcome.interleaved(), "the writers never overlapped: the test proved nothing"
    assert len(outcome.readings) > 10


def test_it_would_hand_out_duplicates_without_the_lock(container, monkeypatch):
    # Both writers read the counter before either writes it back: what the row lock prevents.
    both_read = threading.Barrier(WRITERS)

    def allocate_without_lock(organization_id: int, count: int = 1, own: bool = True) -> int:
        current = Organization.objects.filter(pk=organization_id).values_list("usn", flat=True)
        current = current.get()
        both_read.wait(timeout=30)
        Organization.objects.filter(pk=organization_id).update(usn=current + count)
        return current + 1

    monkeypatch.setattr(directory.changes, "allocate_usns", allocate_without_lock)
    outcome = create_concurrently(container, per_writer=5)

    assert "duplicate USNs" in outcome.problems()
    assert sorted(u for own in outcome.by_writer for u in own) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_a_change_waits_for_a_rebuild_of_its_organizations_cells(container):
    """A rebuild of the digest cells (a repair, a full cross-check) replaces them all; a change
    written meanwhile must wait for it (the organization's row, locked by the rebuild) and then
    count itself in the new cells. Without that lock the change reads the old cells, which the
    rebuild is deleting, and creates a cell the rebuild has already made again."""
    from directory.models import DigestCell

    RecipientFactory(container=container)
    rebuilt = threading.Event()

    @own_connection
    def rebuild() -> None:
        with transaction.atomic():
            changes.rebuild_cells(container.organization_id)
            rebuilt.set()
            time.sleep(0.5)  # the change starts meanwhile, in the same cell

    @own_connection
    def change() -> int:
        rebuilt.wait(timeout=30)
        return RecipientFactory(container=container).usn

    with ThreadPoolExecutor(2) as pool:
        rebuilding, changing = pool.submit(rebuild), pool.submit(change)
        rebuilding.result(timeout=60)
        assert changing.result(timeout=60) == 2

    (cell,) = DigestCell.objects.filter(organization_id=container.organization_id)
    assert cell.count == 2
