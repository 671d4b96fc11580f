"""Bounded growth: with the housekeeping running, the tables that every cycle writes stay
bounded however many cycles run (docs/protocol.md, "Retention")."""

from datetime import timedelta

from django.utils import timezone

from directory import changes
from directory.models import DigestCell, Recipient, Tombstone
from master import processing
from master.housekeeping import compact_ledger, purge_received_batches, purge_tombstones
from master.models import AllowedRequestor, GlobalEntry, LedgerEntry, ReceivedBatch
from requestor.cycle import sync_all
from requestor.housekeeping import purge_directory_tombstones, purge_runs
from requestor.models import Run
from tests.engine.helpers import assert_converged, refresh
from transport.housekeeping import purge_archive
from transport.models import Message

TABLES = {
    "received batches": ReceivedBatch,
    "ledger rows": LedgerEntry,
    "master tombstones": GlobalEntry,
    "directory tombstones": Tombstone,
    "messages": Message,
    "runs": Run,
    "digest cells": DigestCell,
}


def churn(scenario, round_: int) -> None:
    """Every organization renames one person, hires one and lets one go."""
    for org in scenario.orgs.values():
        people = list(Recipient.objects.exportable().filter(organization=org.organization))
        people[0].title = f"Title of round {round_}"
        changes.save_recipient(people[0])
        changes.delete_recipients([people[-1]])
        org.add(alias=f"{org.name.lower()}hire{round_}", display_name=f"{org.name} Hire {round_}")


def time_passes(days: int) -> None:
    past = timezone.now() - timedelta(days=days)
    ReceivedBatch.objects.update(created_at=past)
    LedgerEntry.objects.update(created_at=past)
    GlobalEntry.objects.filter(deleted=True).update(changed_at=past)
    Tombstone.objects.update(deleted_at=past)
    Message.objects.update(created_at=past)
    Run.objects.update(started_at=past)


def housekeeping() -> None:
    purge_tombstones()
    purge_received_batches()
    compact_ledger()
    purge_directory_tombstones()
    purge_runs()
    purge_archive()


def sizes() -> dict[str, int]:
    counts = {name: model.objects.count() for name, model in TABLES.items()}
    counts["master tombstones"] = GlobalEntry.objects.filter(deleted=True).count()
    counts["pending ack ranges"] = sum(
        len(ranges) for ranges in AllowedRequestor.objects.values_list("pending_ranges", flat=True)
    )
    return counts


def test_the_tables_stay_bounded_over_many_cycles(scenario):
    sync_all()
    seen = []
    for round_ in range(10):
        churn(scenario, round_)
        sync_all()
        time_passes(days=400)
        housekeeping()
        seen.append(sizes())

    live = GlobalEntry.objects.filter(deleted=False).count()
    assert live == 9
    last = seen[-1]
    assert last["received batches"] == 0
    assert last["ledger rows"] == live
    assert last["master tombstones"] == 0
    assert last["directory tombstones"] == 0
    assert last["messages"] == 0
    assert last["runs"] == 3  # each requestor's latest
    assert last["pending ack ranges"] == 0
    # Nothing grows from one round to the next.
    for name in seen[0]:
        assert max(row[name] for row in seen[3:]) <= max(seen[2][name], last[name]), name
    assert_converged(refresh(scenario))


def test_it_merges_ranges_waiting_ahead_of_a_gap_and_keeps_a_bounded_number():
    requestor = AllowedRequestor(acked_usn=10, pending_ranges=[])
    processing.acknowledge(requestor, 20, 30)
    processing.acknowledge(requestor, 30, 40)
    processing.acknowledge(requestor, 50, 60)
    assert (requestor.acked_usn, requestor.pending_ranges) == (10, [[20, 40], [50, 60]])

    processing.acknowledge(requestor, 10, 20)
    assert (requestor.acked_usn, requestor.pending_ranges) == (40, [[50, 60]])

    for low in range(100, 100 + 3 * processing.MAX_PENDING_RANGES, 3):
        processing.acknowledge(requestor, low, low + 1)
    assert len(requestor.pending_ranges) == processing.MAX_PENDING_RANGES
    assert requestor.acked_usn == 40
