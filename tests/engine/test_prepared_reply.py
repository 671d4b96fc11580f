"""A reply's entries are read before the master's row is locked (master.processing.prepare_reply)
and brought up to date under the lock: what another requestor's export committed in between
(a change, a delete) replaces what was read, so the reply is the one read under the lock."""

import uuid

import pytest

from directory.changes import delete_recipients, save_recipient
from master import processing
from master.factories import AllowedRequestorFactory
from master.models import GlobalEntry, MasterConfig
from requestor.cycle import run_cycle, sync_all
from tests.engine.conftest import MASTER_DN
from tests.engine.helpers import add_many
from transport import inbox, wire
from transport.constants import Direction, MessageKind, Status
from transport.models import Message
from transport.outbox import deliver_pending


def received_export(org) -> Message:
    return Message.objects.get(
        direction=Direction.INBOUND,
        status=Status.RECEIVED,
        kind=MessageKind.EXPORT,
        sender__iexact=org.config.dn,
    )


def reply_to(org) -> list[tuple]:
    message = (
        Message.objects.filter(direction=Direction.OUTBOUND, recipient__iexact=org.config.dn)
        .order_by("-pk")
        .first()
    )
    document = wire.decode(bytes(message.payload))
    return [(entry.key, entry.op, entry.usn) for entry in document.entries]


def master_holds(org, after: int, full: bool) -> list[tuple]:
    """The oracle: the other requestors' entries after `after`, as the master holds them now."""
    entries = GlobalEntry.objects.filter(usn__gt=after).exclude(origin=org.name).order_by("usn")
    if full:
        entries = entries.filter(deleted=False)
    return [
        (key, "delete" if deleted else "upsert", usn)
        for key, deleted, usn in entries.values_list("global_key", "deleted", "usn")
    ]


@pytest.mark.parametrize("full", [False, True], ids=["incremental", "full"])
def test_it_replies_with_what_committed_between_reading_and_locking(scenario, monkeypatch, full):
    org2, org3 = scenario["ORG2"], scenario["ORG3"]
    sync_all()
    if full:
        org2.refresh().config.request_full_reply()
    changed, gone = org3.people[0], org3.people[1]
    changed.title = "Changed while ORG2's reply was read"
    save_recipient(changed)
    delete_recipients([gone])
    run_cycle(org2.config.pk)
    run_cycle(org3.config.pk)
    deliver_pending()
    export2 = received_export(org2)
    document = wire.decode(bytes(export2.payload))
    # ORG2's reply is read while ORG3's export is not applied yet.
    prepared = processing.prepare_reply(MASTER_DN, org2.config.dn, document)
    assert (prepared.full, prepared.after) == (full, 0 if full else document.master_usn)
    inbox.process_message(received_export(org3).pk)
    monkeypatch.setattr(processing, "prepare_reply", lambda *args: prepared)

    inbox.process_message(export2.pk)

    reply = reply_to(org2)
    assert reply == master_holds(org2, prepared.after, full)
    keys = {key for key, _, _ in reply}
    assert f"ORG3:{changed.guid}" in keys
    assert (f"ORG3:{gone.guid}" in keys) is not full
    assert max(usn for _, _, usn in reply) > prepared.through


def prepare_org2_reply_after_a_change(scenario, delete_one: bool = False):
    """ORG3 changes a recipient (and deletes another) and the master applies it; ORG2's export
    arrives and its reply is prepared (read before the lock), covering that change."""
    org2, org3 = scenario["ORG2"], scenario["ORG3"]
    sync_all()
    if delete_one:
        delete_recipients([org3.people[2]])
    change_in_org3(scenario, org3.people[0], "Before ORG2's reply was read")
    run_cycle(org2.config.pk)
    deliver_pending()
    export2 = received_export(org2)
    prepared = processing.prepare_reply(
        MASTER_DN, org2.config.dn, wire.decode(bytes(export2.payload))
    )
    assert prepared.through > prepared.after
    return export2, prepared


def change_in_org3(scenario, person, title: str) -> None:
    org3 = scenario["ORG3"]
    person.title = title
    save_recipient(person)
    run_cycle(org3.config.pk)
    deliver_pending()
    inbox.process_message(received_export(org3).pk)


def reads_of_reply_entries(monkeypatch) -> list[tuple[int, bool]]:
    """(after, live only) of each read of reply entries from now on."""
    reads = []
    reply_entries = processing._reply_entries

    def reading(master_id, requestor_id, after, through, live_only):
        reads.append((after, live_only))
        return reply_entries(master_id, requestor_id, after, through, live_only)

    monkeypatch.setattr(processing, "_reply_entries", reading)
    return reads


@pytest.mark.parametrize("committed_since", [True, False], ids=["changed-since", "unchanged"])
def test_a_prepared_reply_is_brought_up_to_date_not_read_again(
    scenario, monkeypatch, committed_since
):
    export2, prepared = prepare_org2_reply_after_a_change(scenario)
    if committed_since:
        change_in_org3(scenario, scenario["ORG3"].people[1], "After ORG2's reply was read")
    monkeypatch.setattr(processing, "prepare_reply", lambda *args: prepared)
    reads = reads_of_reply_entries(monkeypatch)

    inbox.process_message(export2.pk)

    # Under the lock only what committed since the prepared reply was read is read.
    assert reads == [(prepared.through, False)]
    reply = reply_to(scenario["ORG2"])
    assert reply == master_holds(scenario["ORG2"], prepared.after, full=False)
    assert len(reply) == (2 if committed_since else 1)


def test_a_prepared_reply_that_guessed_wrong_is_read_again_whole(scenario, monkeypatch):
    """The master started a new epoch after the reply was prepared: the reply is full (live
    entries only), not the incremental one prepared."""
    export2, prepared = prepare_org2_reply_after_a_change(scenario, delete_one=True)
    assert not prepared.full
    master = MasterConfig.objects.get()
    processing.start_new_epoch(master)
    master.save(update_fields=["epoch"])
    monkeypatch.setattr(processing, "prepare_reply", lambda *args: prepared)
    reads = reads_of_reply_entries(monkeypatch)

    inbox.process_message(export2.pk)

    assert reads == [(0, True)]
    reply = reply_to(scenario["ORG2"])
    assert reply == master_holds(scenario["ORG2"], 0, full=True)
    assert all(op == "upsert" for _, op, _ in reply)
    assert GlobalEntry.objects.filter(origin="ORG3", deleted=True).exists()


MIN_PART = 16 * 1024  # the smallest attachment size a master takes


def test_what_committed_since_a_prepared_reply_can_fill_several_parts(scenario, monkeypatch):
    """Many entries committed after the reply was read: the reply, brought up to date, is cut
    into parts whose USN ranges follow each other."""
    export2, prepared = prepare_org2_reply_after_a_change(scenario)
    org3 = scenario["ORG3"]
    add_many(org3, 120)
    run_cycle(org3.config.pk)
    deliver_pending()
    inbox.process_message(received_export(org3).pk)
    MasterConfig.objects.update(max_attachment_size=MIN_PART)
    monkeypatch.setattr(processing, "prepare_reply", lambda *args: prepared)

    inbox.process_message(export2.pk)

    parts = [
        wire.decode(bytes(message.payload))
        for message in Message.objects.filter(
            direction=Direction.OUTBOUND, recipient__iexact=scenario["ORG2"].config.dn
        ).order_by("-pk")
    ]
    parts = sorted(parts[: parts[0].parts], key=lambda part: part.part)
    assert len(parts) > 2
    # Numbered on from the first part, as every message of a sender is.
    first = parts[0].sequence
    assert [part.sequence for part in parts] == list(range(first, first + len(parts)))
    assert parts[0].after == prepared.after
    for earlier, later in zip(parts, parts[1:], strict=False):
        assert later.after == earlier.through == earlier.entries[-1].usn
    entries = [(e.key, e.op, e.usn) for part in parts for e in part.entries]
    assert entries == master_holds(scenario["ORG2"], prepared.after, full=False)
    # Only the last part says where the master's ledger stands, and carries the digests: a
    # requestor stopped after an earlier part reports no fingerprint of a USN it never had.
    assert all(part.fingerprint is None and part.verification is None for part in parts[:-1])
    master = MasterConfig.objects.get()
    assert (parts[-1].through, parts[-1].fingerprint) == (master.usn, master.history)
    assert parts[-1].verification is not None
    # The master's next message is numbered after the last part, not after a gap or before it.
    assert master.sequence == parts[-1].sequence


def test_the_inbox_reads_the_reply_before_it_locks_the_master(scenario, monkeypatch):
    """Mistake: preparing the reply for another address or sender (none is found, so the whole
    reply is read under the master's lock, where every other export waits for it)."""
    export2, _prepared = prepare_org2_reply_after_a_change(scenario)
    reads = reads_of_reply_entries(monkeypatch)
    reads_when_locked = []
    lock_master = processing.lock_master

    def locking(address):
        reads_when_locked.append(list(reads))
        return lock_master(address)

    monkeypatch.setattr(processing, "lock_master", locking)

    inbox.process_message(export2.pk)

    # Read whole before the lock; under it, only what committed since (see above).
    [before_lock] = reads_when_locked
    assert len(before_lock) == 1
    assert reads[:1] == before_lock
    assert len(reads) == 2
    assert reply_to(scenario["ORG2"]) == master_holds(
        scenario["ORG2"], before_lock[0][0], full=False
    )


@pytest.mark.parametrize(
    ("case", "full"),
    [
        ("incremental", False),
        ("first", True),
        ("other-epoch", True),
        ("behind-the-purge", True),
        ("at-the-purge", False),
    ],
)
def test_the_reply_read_before_the_lock_is_the_one_sent(scenario, monkeypatch, case, full):
    """Mistakes: guessing wrong whether the reply is full, or from where (the reply is then read
    again whole under the lock, where every other export waits)."""
    org2 = scenario["ORG2"]
    sync_all()
    change_in_org3(scenario, scenario["ORG3"].people[0], "Newer than ORG2's copy")
    if case == "first":
        org2.refresh().config.import_all_recipients()
    run_cycle(org2.config.pk)
    deliver_pending()
    export2 = received_export(org2)
    document = wire.decode(bytes(export2.payload))
    assert (document.master_usn == 0) is (case == "first")
    if case == "other-epoch":
        MasterConfig.objects.update(epoch=uuid.uuid4())
    purged = {"behind-the-purge": document.master_usn + 1, "at-the-purge": document.master_usn}
    if case in purged:
        MasterConfig.objects.update(purged_through_usn=purged[case])
    reads = reads_of_reply_entries(monkeypatch)

    inbox.process_message(export2.pk)

    # Read whole before the lock, as it is sent; under the lock only what committed since.
    assert reads[0] == ((0, True) if full else (document.master_usn, False))
    assert len(reads) == 2
    assert reads[1][1] is False
    assert reply_to(org2) == master_holds(org2, reads[0][0], full)


def test_a_reply_holds_only_its_own_masters_entries_up_to_its_usn(scenario):
    """Mistakes: reading the entries of every master of the installation (a hosting provider
    runs several: a reply would carry another master's organizations), or past the USN the
    reply is read at (an entry committed meanwhile would be sent twice, or out of order)."""
    sync_all()
    master = MasterConfig.objects.get()
    other = AllowedRequestorFactory(master__organization__name="HOSTED")
    GlobalEntry.objects.create(
        master=other.master,
        requestor=other,
        object_id=uuid.uuid4(),
        global_key=f"{other.organization_name}:elsewhere",
        origin=other.organization_name,
        kind="mailbox",
        attrs={"display_name": "Another master's entry"},
        deleted=False,
        source_usn=1,
        usn=2,
    )
    requestor = master.requestors.get(organization_name="ORG2")

    for through in (master.usn, master.usn - 1):
        items, texts = processing._reply_entries(master.pk, requestor.pk, 0, through, True)
        expected = GlobalEntry.objects.filter(master=master, usn__lte=through, deleted=False)
        expected = expected.exclude(requestor=requestor).order_by("usn")
        assert [item["key"] for item in items] == [e.global_key for e in expected]
        assert len(texts) == len(items) > 0
