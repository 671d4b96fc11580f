"""Rules of the protocol that each deserve a test of their own (docs/protocol.md): each of these
fails under the mistake named in its docstring."""

import uuid

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from directory import changes
from master import processing
from master.models import (
    AllowedRequestor,
    GlobalEntry,
    LedgerEntry,
    MasterConfig,
    ReceivedBatch,
)
from requestor.cycle import run_cycle
from requestor.models import RequestorConfig
from tests.engine.helpers import assert_digests_agree, cycle, outbound, synced_fixtures
from transport import signing, wire
from transport.constants import MessageKind
from transport.exceptions import MessageHeld
from transport.inbox import pump

synced_base, synced = synced_fixtures()


def export_document(
    org, changes_: list[dict], full: bool = False, sequence: int | None = None, **header
) -> wire.ExportDocument:
    config = RequestorConfig.objects.get(pk=org.config.pk)
    usns = [change["usn"] for change in changes_]
    return wire.decode(
        wire.encode(
            {
                "protocol": 1,
                "type": "export",
                "sender": {"organization": org.name, "address": config.dn},
                "batch": str(uuid.uuid4()),
                "part": 1,
                "parts": 1,
                "sequence": sequence or signing.now_ms(),
                "full": full,
                "master_usn": config.master_usn,
                "master_epoch": str(config.master_epoch),
                "usn_from": 0 if full else min(usns) - 1,
                "usn_through": max(usns),
                "changes": changes_,
                **header,
            }
        )
    )


def processed(org, document: wire.ExportDocument) -> None:
    with transaction.atomic():
        master = MasterConfig.objects.select_for_update().get()
        requestor = AllowedRequestor.objects.get(organization_name=org.name)
        processing.process_export(master, requestor, document)


def master_state() -> tuple[int, int]:
    return MasterConfig.objects.get().usn, LedgerEntry.objects.count()


def test_the_master_ignores_a_change_at_the_usn_it_applied_even_with_other_attributes(synced):
    """Mistake: applying a change whose USN equals the stored source USN (< instead of <=)."""
    org2 = synced["ORG2"]
    person = org2.people[0]
    entry = GlobalEntry.objects.get(object_id=person.guid)
    before = master_state()
    forged = {**entry.attrs, "title": "Not a newer change"}

    processed(org2, export_document(org2, [change(person.guid, entry.source_usn, forged)]))

    entry.refresh_from_db()
    assert master_state() == before
    assert entry.attrs.get("title") != "Not a newer change"


def change(guid, usn: int, attrs: dict | None = None, op: str = "upsert") -> dict:
    return {"id": str(guid), "op": op, "kind": "mailbox", "usn": usn, "attrs": attrs or {}}


def held(org) -> list[GlobalEntry]:
    """The master's entries of the organization's people, in their order."""
    return [GlobalEntry.objects.get(object_id=person.guid) for person in org.people]


def as_held(entries) -> list[dict]:
    """Changes that state these entries exactly as the master holds them."""
    return [change(e.object_id, e.source_usn, e.attrs) for e in entries]


def full_part(org, chunk: list[dict], batch: str, number: int, first: int, **header):
    """Part `number` of 2 of a full export batch whose first part is numbered `first`."""
    return export_document(
        org,
        chunk,
        full=True,
        sequence=first + number - 1,
        batch=batch,
        part=number,
        parts=2,
        **header,
    )


def test_a_delete_of_an_object_the_master_never_saw_is_remembered_not_published(synced):
    """Mistake: publishing the delete of an unknown object (a ledger row, a master USN, an
    entry in the other organizations' replies)."""
    org2, org3 = synced["ORG2"], synced["ORG3"]
    unknown = uuid.uuid4()
    before = master_state()

    processed(org2, export_document(org2, [change(unknown, 5, op="delete")]))

    assert master_state() == before
    remembered = GlobalEntry.objects.get(object_id=unknown)
    assert (remembered.deleted, remembered.usn, remembered.source_usn) == (True, 0, 5)
    # A late upsert at a lower USN stays ignored.
    processed(org2, export_document(org2, [change(unknown, 4, {"display_name": "Late"})]))
    assert master_state() == before
    # Never in a reply, not even a full one.
    RequestorConfig.objects.get(pk=org3.config.pk).import_all_recipients()
    run_cycle(org3.config.pk)
    pump()
    replies = outbound(kind=MessageKind.REPLY, recipient=org3.config.dn)
    keys = {e.key for reply in replies for e in wire.decode(bytes(reply.payload)).entries}
    assert remembered.global_key not in keys


def test_a_later_change_is_exported_after_the_master_acknowledged_too_much(synced):
    """Mistake: following the master's ack past what the acknowledged export covered (a
    requestor restored from a backup): its next changes, at USNs the master already
    acknowledged, would never be sent."""
    org2 = synced["ORG2"]
    AllowedRequestor.objects.filter(organization_name="ORG2").update(acked_usn=10_000)

    first = cycle(org2)

    assert first.acknowledged == 10_000 > first.export_through
    assert RequestorConfig.objects.get(pk=org2.config.pk).requestor_usn <= first.export_through
    person = org2.people[1]
    person.title = "Changed after too much was acknowledged"
    changes.save_recipient(person)
    cycle(org2)
    cycle(org2)
    assert GlobalEntry.objects.get(object_id=person.guid).attrs["title"] == (
        "Changed after too much was acknowledged"
    )


def test_an_export_all_of_an_unchanged_directory_publishes_nothing(synced):
    """A full export's sweep drops the live entries it did not list, and only those: entries
    deleted before stay as they are (re-deleting them would publish them again, to everyone)."""
    org2 = synced["ORG2"]
    changes.delete_recipients([org2.people[0]])
    cycle(org2)
    gone = GlobalEntry.objects.get(object_id=org2.people[0].guid)
    assert gone.deleted
    before, deleted_at = master_state(), gone.usn

    RequestorConfig.objects.get(pk=org2.config.pk).export_all_recipients()
    run = cycle(org2)

    assert run.full_export
    assert master_state() == before
    gone.refresh_from_db()
    assert (gone.deleted, gone.usn) == (True, deleted_at)


def test_a_full_export_leaves_alone_what_changed_after_its_snapshot(synced):
    """Mistake: sweeping every live entry a full export did not list, even one that a later
    export, arrived first, created after the full export's snapshot."""
    org2 = synced["ORG2"]
    listed = held(org2)
    full = export_document(org2, as_held(listed), full=True)
    attrs = {"display_name": "Hired later", "alias": "later", "primary_smtp": "later@org2.example"}
    later = change(uuid.uuid4(), full.usn_through + 5, attrs)

    processed(org2, export_document(org2, [later]))
    processed(org2, full)

    entry = GlobalEntry.objects.get(object_id=later["id"])
    assert not entry.deleted and entry.attrs["display_name"] == "Hired later"
    assert not GlobalEntry.objects.filter(object_id__in=[e.object_id for e in listed], deleted=True)


def test_a_full_export_is_superseded_only_by_a_newer_full_export_of_its_own(synced):
    """Mistake: letting any newer batch (another organization's full export, or an incremental
    one of the same organization) stop a full export from sweeping what it did not list."""
    org2, org3 = synced["ORG2"], synced["ORG3"]
    gone, *kept = held(org2)
    full = export_document(org2, as_held(kept), full=True)
    theirs = held(org3)
    newer_of_org3 = export_document(org3, as_held(theirs), full=True)
    promoted = {**kept[0].attrs, "title": "Promoted"}
    newer_of_org2 = export_document(
        org2, [change(kept[0].object_id, full.usn_through + 1, promoted)]
    )
    assert full.sequence < min(newer_of_org3.sequence, newer_of_org2.sequence)

    processed(org3, newer_of_org3)
    processed(org2, newer_of_org2)
    processed(org2, full)

    gone.refresh_from_db()
    assert gone.deleted
    assert GlobalEntry.objects.get(pk=kept[0].pk).attrs["title"] == "Promoted"


def test_a_full_export_arriving_in_the_middle_of_a_newer_one_takes_nothing_from_it(synced):
    """Mistake: letting an older full export, delivered late, claim the entries a newer full
    export of the same organization has listed so far: the newer one's last part would then
    sweep them as unlisted."""
    org2 = synced["ORG2"]
    listed = as_held(held(org2))
    older = export_document(org2, listed, full=True)
    # Numbered right after it: superseded by one sequence.
    batch, first = str(uuid.uuid4()), older.sequence + 1
    newer = [
        full_part(org2, chunk, batch, number, first, usn_through=older.usn_through)
        for number, chunk in [(1, listed[:1]), (2, listed[1:])]
    ]

    processed(org2, newer[0])
    processed(org2, older)
    processed(org2, newer[1])

    ids = [change["id"] for change in listed]
    assert GlobalEntry.objects.filter(object_id__in=ids, deleted=False).count() == len(ids)


def test_a_batch_counts_what_each_part_and_its_sweep_changed(synced):
    org2 = synced["ORG2"]
    entries = held(org2)
    promoted = change(
        entries[0].object_id, entries[0].source_usn + 100, {**entries[0].attrs, "title": "Boss"}
    )
    batch, started, first = str(uuid.uuid4()), timezone.now(), signing.now_ms()
    parts = [
        full_part(org2, chunk, batch, number, first, usn_through=promoted["usn"])
        for number, chunk in [(1, [promoted]), (2, as_held(entries[1:-1]))]
    ]

    # A full export numbered right before this batch's first part is older: it does not
    # stop this batch's sweep, whose first sequence is the last part's minus one.
    processed(org2, export_document(org2, as_held(entries), full=True, sequence=first - 1))
    for part in parts:
        processed(org2, part)

    # One entry changed by the first part, none by the second, one swept (the last, unlisted).
    assert ReceivedBatch.objects.get(batch=batch).changed == 2
    assert ReceivedBatch.objects.get(batch=batch).replied
    assert GlobalEntry.objects.get(pk=entries[-1].pk).deleted
    assert AllowedRequestor.objects.get(organization_name="ORG2").last_contact_at >= started


def test_two_full_exports_interleaved_leave_the_newer_ones_claims_alone(synced):
    """Mistake: taking a batch's first sequence wrongly from a later part's (the parts of a
    batch are numbered in a row): the older batch's last part, arriving after the newer batch
    began, would then claim back what the newer one listed, and the newer one sweep it."""
    org2 = synced["ORG2"]
    listed = as_held(held(org2))
    older, newer = signing.now_ms(), signing.now_ms() + 2  # the first parts' sequences

    def part(first: int, number: int, chunk: list[dict]) -> wire.ExportDocument:
        batch = str(uuid.UUID(int=first))
        return full_part(org2, chunk, batch, number, first, usn_through=10_000)

    processed(org2, part(older, 1, listed[1:]))
    processed(org2, part(newer, 1, listed[:1]))
    processed(org2, part(older, 2, listed[:1]))
    processed(org2, part(newer, 2, listed[1:]))

    ids = [change["id"] for change in listed]
    assert GlobalEntry.objects.filter(object_id__in=ids, deleted=False).count() == len(ids)


def test_an_export_naming_another_organizations_object_leaves_its_entry_alone(synced):
    """Mistake: looking up the master's entries by object id alone. An object id is unique
    within its organization only; an export naming another organization's object (a clash, or
    a forgery) makes an entry of its own and never touches the other's."""
    org2, org3 = synced["ORG2"], synced["ORG3"]
    theirs = held(org2)[0]
    usn = theirs.source_usn + 1000
    claimed = {"display_name": "Impostor", "primary_smtp": "impostor@org3.example"}

    processed(org3, export_document(org3, [change(theirs.object_id, usn, claimed)]))

    after = GlobalEntry.objects.get(pk=theirs.pk)
    assert (after.attrs, after.source_usn, after.usn) == (
        theirs.attrs,
        theirs.source_usn,
        theirs.usn,
    )
    own = GlobalEntry.objects.get(object_id=theirs.object_id, origin="ORG3")
    assert (own.attrs, own.source_usn, own.deleted) == (claimed, usn, False)
    assert_digests_agree(synced, master_only=True)


def test_a_change_of_kind_alone_is_published_and_a_restatement_is_not(synced):
    """Mistakes: publishing a change that states the entry exactly as held (a new master USN
    for nothing, sent to every organization); missing a change of kind alone."""
    org2 = synced["ORG2"]
    entry = held(org2)[0]
    before = master_state()

    processed(
        org2, export_document(org2, [change(entry.object_id, entry.source_usn + 1, entry.attrs)])
    )
    restated = GlobalEntry.objects.get(pk=entry.pk)
    assert master_state() == before
    assert (restated.source_usn, restated.usn) == (entry.source_usn + 1, entry.usn)

    recast = {
        **change(entry.object_id, entry.source_usn + 2, entry.attrs),
        "kind": "custom_recipient",
    }
    processed(org2, export_document(org2, [recast]))
    recast_entry = GlobalEntry.objects.get(pk=entry.pk)
    assert master_state() == (before[0] + 1, before[1] + 1)
    assert (recast_entry.kind, recast_entry.usn) == ("custom_recipient", before[0] + 1)
    assert_digests_agree(synced, master_only=True)


def test_the_digests_follow_an_entry_deleted_then_made_again(synced):
    """Mistake: taking a tombstone for a live entry when it comes back (its old member taken
    out of digests it is not in)."""
    org2 = synced["ORG2"]
    entry = held(org2)[0]

    processed(
        org2, export_document(org2, [change(entry.object_id, entry.source_usn + 1, op="delete")])
    )
    assert GlobalEntry.objects.get(pk=entry.pk).deleted
    assert_digests_agree(synced, master_only=True)
    processed(
        org2, export_document(org2, [change(entry.object_id, entry.source_usn + 2, entry.attrs)])
    )

    assert not GlobalEntry.objects.get(pk=entry.pk).deleted
    assert_digests_agree(synced, master_only=True)


def test_the_digests_count_every_entry_after_one_a_full_export_lists_unchanged(synced):
    """Mistake: stopping at the first entry a part leaves as it was (a full export lists every
    entry; most are unchanged), so the entries after it are not counted."""
    org2 = synced["ORG2"]
    entries = held(org2)
    last = entries[-1]
    renamed = change(last.object_id, last.source_usn + 100, {**last.attrs, "title": "Renamed"})

    processed(org2, export_document(org2, [*as_held(entries[:-1]), renamed], full=True))

    assert GlobalEntry.objects.get(pk=last.pk).attrs["title"] == "Renamed"
    assert_digests_agree(synced, master_only=True)


def test_the_mass_delete_guard_counts_the_deletes_of_every_part_of_a_batch(synced):
    """Mistake: judging each part's deletes alone: a batch cut into parts that each delete
    less than the limit would pass however much it deletes in all."""
    org2 = synced["ORG2"]
    requestor = AllowedRequestor.objects.get(organization_name="ORG2")
    requestor.delete_limit, requestor.delete_percent = 2, 100
    requestor.save()
    entries = held(org2)
    gone = [change(e.object_id, e.source_usn + 10 + n, op="delete") for n, e in enumerate(entries)]
    batch, first = str(uuid.uuid4()), signing.now_ms()

    def part(number: int, chunk: list[dict]) -> wire.ExportDocument:
        return export_document(
            org2, chunk, sequence=first + number - 1, batch=batch, part=number, parts=2
        )

    processed(org2, part(1, gone[:1]))
    with pytest.raises(MessageHeld, match=r"delete 3 of 3 entries of ORG2"):
        processed(org2, part(2, gone[1:3]))


@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.integers(1, 12)).map(lambda t: (t[0], t[0] + t[1])),
        max_size=25,
    )
)
def test_the_ack_follows_exactly_the_usns_covered_without_a_gap(ranges):
    """Each export acknowledges (usn_from, usn_through]. The ack is the highest USN with every
    USN up to it covered; what arrived ahead of a gap is kept as the fewest ranges (merged
    where they touch or overlap) until the gap fills. The oracle counts the USNs themselves."""
    requestor = AllowedRequestor(acked_usn=0, pending_ranges=[])
    covered: set[int] = set()
    for low, high in ranges:
        processing.acknowledge(requestor, low, high)
        covered |= set(range(low + 1, high + 1))

        acked = 0
        while acked + 1 in covered:
            acked += 1
        ahead = sorted(usn for usn in covered if usn > acked)
        runs: list[list[int]] = []
        for usn in ahead:
            if runs and usn == runs[-1][1] + 1:
                runs[-1][1] = usn
            else:
                runs.append([usn - 1, usn])
        assert requestor.acked_usn == acked
        assert requestor.pending_ranges == runs


def test_an_export_without_the_masters_fingerprint_is_not_taken_for_a_restore(synced):
    """Mistake: recording a missing fingerprint as some value: compared with the ledger it
    would look like another history, and the master would start a new epoch (a full reply to
    every requestor) for a requestor that simply did not send one."""
    org2 = synced["ORG2"]
    entry = held(org2)[0]
    epoch = MasterConfig.objects.get().epoch
    document = export_document(org2, [change(entry.object_id, entry.source_usn + 1, entry.attrs)])
    assert document.master_usn > 0
    assert document.master_fingerprint is None

    processed(org2, document)

    assert MasterConfig.objects.get().epoch == epoch
    assert ReceivedBatch.objects.get(batch=document.batch).master_fingerprint == ""


def test_a_requestor_known_by_its_smtp_address_is_answered_from_the_masters(synced):
    """Mistake: answering every requestor from the master's EX address (a DN): a requestor in
    another installation, reached over SMTP, expects its master's SMTP address."""
    org2 = synced["ORG2"]
    AllowedRequestor.objects.filter(organization_name="ORG2").update(address="sync@org2.example")
    entry = held(org2)[0]
    master = MasterConfig.objects.get()

    processed(org2, export_document(org2, [change(entry.object_id, entry.source_usn + 1)]))

    [reply] = outbound(kind=MessageKind.REPLY, recipient="sync@org2.example")
    assert reply.sender == master.address != master.dn
    assert wire.decode(bytes(reply.payload)).sender.address == master.address
