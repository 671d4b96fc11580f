"""A reply's entries are read before the master's row is locked (master.processing.prepare_reply)
and brought up to date under the lock: what another requestor's export committed in between
(a change, a delete) replaces what was read, so the reply is the one read under the lock."""

import pytest

from directory.changes import delete_recipients, save_recipient
from master import processing
from master.models import GlobalEntry
from requestor.cycle import run_cycle, sync_all
from tests.engine.conftest import MASTER_DN
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


def test_a_prepared_reply_is_brought_up_to_date_not_read_again(scenario, monkeypatch):
    org2, org3 = scenario["ORG2"], scenario["ORG3"]
    sync_all()

    def change(person, title):
        person.title = title
        save_recipient(person)
        run_cycle(org3.config.pk)
        deliver_pending()

    # One change of ORG3's reaches the master before ORG2's reply is read, one after.
    change(org3.people[0], "Before ORG2's reply was read")
    inbox.process_message(received_export(org3).pk)
    run_cycle(org2.config.pk)
    deliver_pending()
    export2 = received_export(org2)
    prepared = processing.prepare_reply(
        MASTER_DN, org2.config.dn, wire.decode(bytes(export2.payload))
    )
    assert prepared.through > prepared.after
    change(org3.people[1], "After ORG2's reply was read")
    inbox.process_message(received_export(org3).pk)
    monkeypatch.setattr(processing, "prepare_reply", lambda *args: prepared)
    read_after = []
    reply_entries = processing._reply_entries

    def reading(master_id, requestor_id, after, *args, **kwargs):
        read_after.append(after)
        return reply_entries(master_id, requestor_id, after, *args, **kwargs)

    monkeypatch.setattr(processing, "_reply_entries", reading)

    inbox.process_message(export2.pk)

    # Under the lock only what committed since the prepared reply was read is read.
    assert read_after == [prepared.through]
    reply = reply_to(org2)
    assert reply == master_holds(org2, prepared.after, full=False)
    assert len(reply) == 2
