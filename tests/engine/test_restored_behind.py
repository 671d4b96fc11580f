"""master.processing.restored_behind, rule by rule: what a requestor's report of the master USN
it applied says about this master's history (docs/protocol.md, rule 6)."""

import uuid

import pytest

from master.factories import AllowedRequestorFactory, MasterConfigFactory
from master.models import LedgerEntry, ReceivedBatch
from master.processing import reply_is_full, restored_behind

pytestmark = pytest.mark.django_db


def ledger(master, usn: int, chain: str) -> None:
    LedgerEntry.objects.create(
        master=master, usn=usn, global_key=f"K:{usn}", origin="K", op="upsert", chain=chain
    )


def report(master, usn: int, fingerprint: str = "", epoch=None) -> ReceivedBatch:
    """The requestor's report in its export: the master USN it applied, and its fingerprint."""
    return ReceivedBatch(
        requestor=AllowedRequestorFactory(master=master),
        batch=uuid.uuid4(),
        parts=1,
        master_usn=usn,
        master_epoch=master.epoch if epoch is None else epoch,
        master_fingerprint=fingerprint,
    )


@pytest.fixture
def master():
    master = MasterConfigFactory()
    for usn in (1, 2, 3):
        ledger(master, usn, f"chain{usn}")
    master.usn, master.history = 3, "chain3"
    master.save(update_fields=["usn", "history"])
    return master


def test_nothing_applied_yet_or_another_epoch_is_the_same_history(master):
    epoch = master.epoch

    assert restored_behind(master, report(master, 0)) == ""
    assert restored_behind(master, report(master, 0, fingerprint="whatever")) == ""
    assert restored_behind(master, report(master, 7, "other", epoch=uuid.uuid4())) == ""
    # Neither starts a new epoch under the requestors that follow this one.
    reply_is_full(master, report(master, 0))
    reply_is_full(master, report(master, 7, "other", epoch=uuid.uuid4()))
    master.refresh_from_db()
    assert master.epoch == epoch


def test_a_usn_this_master_never_issued_is_a_restore(master):
    master.usn, master.history = 0, ""  # restored from a backup taken before its first change

    assert restored_behind(master, report(master, 1, "chain1")) == (
        "it has applied master USN 1, but this master is at 0"
    )


@pytest.mark.parametrize("usn", [1, 2, 3])
def test_the_same_usn_issued_twice_is_a_restore(master, usn):
    assert restored_behind(master, report(master, usn, f"chain{usn}")) == ""
    assert restored_behind(master, report(master, usn, "reissued")) == (
        f"the ledger entry at master USN {usn} is not the one it applied"
    )


def test_it_reads_its_own_ledger_not_another_masters(master):
    other = MasterConfigFactory()
    ledger(other, 2, "chain-of-the-other-master")

    assert restored_behind(master, report(master, 2, "chain2")) == ""
    assert restored_behind(master, report(master, 2, "chain-of-the-other-master")) != ""
    # Its own entry compacted away: the other master's at the same USN proves nothing.
    LedgerEntry.objects.filter(master=master, usn=2).delete()
    assert restored_behind(master, report(master, 2, "chain-of-the-other-master")) is None


def test_a_compacted_ledger_entry_cannot_be_checked(master):
    LedgerEntry.objects.filter(master=master, usn=2).delete()

    assert restored_behind(master, report(master, 2, "chain2")) is None


@pytest.mark.parametrize(
    ("applied", "full"), [(4, True), (5, False), (6, False)], ids=["behind", "at", "past"]
)
def test_a_reply_is_full_only_for_a_requestor_behind_the_purged_tombstones(master, applied, full):
    """Tombstones through master USN 5 are purged: a requestor that applied USN 5 has seen them
    all; one that applied 4 may have missed the tombstone at 5."""
    ledger(master, 4, "chain4")
    ledger(master, 5, "chain5")
    ledger(master, 6, "chain6")
    master.usn, master.history, master.purged_through_usn = 6, "chain6", 5
    master.save(update_fields=["usn", "history", "purged_through_usn"])

    assert reply_is_full(master, report(master, applied)) is full
