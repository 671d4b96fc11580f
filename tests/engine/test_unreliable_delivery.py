"""Mail loses, repeats and reorders messages; the directories still converge, nothing doubled."""

from directory import changes
from master.models import GlobalEntry, LedgerEntry
from requestor.cycle import sync_all
from tests.engine.helpers import (
    assert_converged,
    cycle,
    deliver,
    deliver_reversed,
    drop_queued,
    duplicate,
    held,
    inbound,
    messages_for,
    person,
    queue_cycle,
    queued,
    rename,
    snapshot,
    synced_fixtures,
)
from transport.constants import MessageKind, Status
from transport.inbox import pump

synced_base, synced = synced_fixtures()


# Lost messages ----------------------------------------------------------------------------------


def test_it_sends_a_lost_export_again(synced):
    rename("org2user1", "Lost Once")
    queue_cycle(synced["ORG2"])
    assert drop_queued(kind=MessageKind.EXPORT) == 1

    sync_all()

    assert "Lost Once (ORG2)" in synced["ORG1"].contact_names()
    assert_converged(synced)


def test_it_recovers_from_a_lost_reply(synced):
    rename("org2user1", "Reply Lost")
    org2 = synced["ORG2"]
    before = org2.config.requestor_usn
    queue_cycle(org2)
    deliver(queued())
    assert drop_queued(kind=MessageKind.REPLY) == 1
    # Without the reply's ack the requestor keeps its USN and sends the change again.
    assert org2.refresh().config.requestor_usn == before

    sync_all()

    assert org2.refresh().config.requestor_usn > before
    assert "Reply Lost (ORG2)" in synced["ORG3"].contact_names()
    assert_converged(synced)


def test_it_recovers_from_messages_the_mail_system_failed(synced):
    rename("org3user2", "Bounced")
    for org in synced.orgs.values():
        queue_cycle(org)
    queued().update(status=Status.FAILED, error="550 mailbox unavailable")
    pump()
    assert "Bounced" not in synced["ORG1"].contact_names()

    sync_all()

    assert "Bounced" in synced["ORG1"].contact_names()
    assert_converged(synced)


# Duplicated messages ----------------------------------------------------------------------------


def test_it_ignores_a_duplicated_export_and_reply(synced):
    rename("org2user3", "Said Twice")
    cycle(synced["ORG2"])
    cycle(synced["ORG1"])
    cycle(synced["ORG3"])
    before, ledger = snapshot(), LedgerEntry.objects.count()
    export = inbound(kind=MessageKind.EXPORT, sender=synced["ORG2"].config.dn).last()
    reply = messages_for(synced["ORG1"], kind=MessageKind.REPLY).last()

    copies = [duplicate(export), duplicate(reply)]
    pump()

    for copy in copies:
        copy.refresh_from_db()
        # Refused as a replay and kept in the archive; nothing of it is applied.
        assert copy.status == Status.REJECTED
        assert "already accepted" in copy.error
    assert snapshot() == before
    assert LedgerEntry.objects.count() == ledger
    assert queued().count() == 0  # no second reply to the same export
    sync_all()
    assert snapshot() == before
    assert_converged(synced)


def test_it_ignores_an_old_reply_delivered_again_after_newer_changes(synced):
    org1 = synced["ORG1"]
    old_reply = messages_for(org1, kind=MessageKind.REPLY, status=Status.PROCESSED).first()
    changes.delete_recipients([person("org2user1")])
    sync_all()
    assert "ORG2 User 1 (ORG2)" not in org1.contact_names()
    before = snapshot()

    duplicate(old_reply)
    pump()

    assert snapshot() == before
    assert_converged(synced)


# Reordered messages -----------------------------------------------------------------------------


def test_it_keeps_the_latest_state_when_exports_arrive_in_reverse_order(synced):
    org2 = synced["ORG2"]
    for name in ("First Name", "Second Name", "Third Name"):
        rename("org2user1", name)
        queue_cycle(org2)
    assert queued(kind=MessageKind.EXPORT).count() == 3

    deliver_reversed(kind=MessageKind.EXPORT)
    deliver_reversed(kind=MessageKind.REPLY)
    sync_all()

    for org in synced.others("ORG2"):
        names = org.contact_names()
        assert "Third Name (ORG2)" in names
        assert not names & {"First Name (ORG2)", "Second Name (ORG2)"}
    assert_converged(synced)


def test_it_keeps_a_delete_when_the_older_upsert_arrives_later(synced):
    org2 = synced["ORG2"]
    rename("org2user2", "Short Lived")
    queue_cycle(org2)
    changes.delete_recipients([person("org2user2")])
    queue_cycle(org2)

    deliver_reversed()
    deliver_reversed()
    sync_all()

    for org in synced.others("ORG2"):
        assert not {"Short Lived (ORG2)", "ORG2 User 2 (ORG2)"} & org.contact_names()
    assert_converged(synced)


def test_it_keeps_a_new_recipient_when_an_older_full_export_arrives_last(synced):
    """Two full exports in flight: the older one must not sweep what only the newer one has."""
    org2 = synced["ORG2"]
    org2.config.export_all_recipients()
    queue_cycle(org2)
    latecomer = org2.add(alias="latecomer", display_name="Latecomer")
    queue_cycle(org2)

    deliver_reversed(kind=MessageKind.EXPORT)
    deliver_reversed(kind=MessageKind.REPLY)
    sync_all()

    assert GlobalEntry.objects.get(object_id=latecomer.guid).deleted is False
    for org in synced.others("ORG2"):
        assert "Latecomer (ORG2)" in org.contact_names()
    assert_converged(synced)


def test_it_does_not_bring_back_a_deleted_contact_from_an_older_full_reply(synced):
    """Import All sends two full requests; the newer reply (after a delete) arrives first."""
    org1, org2 = synced["ORG1"], synced["ORG2"]
    org1.config.import_all_recipients()
    queue_cycle(org1)
    deliver(queued())
    older = list(queued(kind=MessageKind.REPLY))
    changes.delete_recipients([person("org2user1")])
    with held(older):
        cycle(org2)
    queue_cycle(org1)
    deliver(queued(kind=MessageKind.EXPORT))
    newer = list(queued(kind=MessageKind.REPLY).exclude(pk__in=[m.pk for m in older]))

    deliver(newer)
    assert "ORG2 User 1 (ORG2)" not in org1.contact_names()
    deliver(older)

    assert "ORG2 User 1 (ORG2)" not in org1.contact_names()
    sync_all()
    assert "ORG2 User 1 (ORG2)" not in org1.contact_names()
    assert_converged(synced)
