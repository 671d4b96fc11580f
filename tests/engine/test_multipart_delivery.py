"""Several-part messages lost, repeated and reordered; first syncs with everything in flight."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from directory import changes
from directory.models import Recipient
from master.housekeeping import purge_master_tombstones
from master.models import AllowedRequestor, GlobalEntry
from requestor.cycle import sync_all
from tests.engine.helpers import (
    add_many,
    assert_converged,
    assert_no_duplicates,
    cycle,
    deliver,
    deliver_reversed,
    drop_queued,
    duplicate,
    inbound,
    messages_for,
    person,
    queue_cycle,
    queued,
    refresh,
    rename,
    snapshot,
    synced,
)
from transport import wire
from transport.constants import Direction, MessageKind, Status
from transport.inbox import process_pending, pump
from transport.models import Message

KIB = 1024
# Enough recipients with long attributes for several 16 KiB parts.
BULK = 60
ORG2_TOTAL = BULK + 3


def test_it_converges_when_every_first_attempt_is_lost(scenario):
    """The initial sync, losing every message of the first two rounds."""
    for _ in range(2):
        for org in scenario.orgs.values():
            queue_cycle(org)
        drop_queued(kind=MessageKind.EXPORT)
    for org in scenario.orgs.values():
        queue_cycle(org)
    deliver(queued())
    drop_queued(kind=MessageKind.REPLY)

    sync_all()

    assert_converged(scenario)


def test_it_applies_only_once_the_duplicated_parts_of_a_multi_part_reply(scenario):
    """Import All with every reply part delivered twice: the contacts stay as they are, and
    the one renamed since is updated in place, not removed early by the full reply's sweep."""
    org1, org2 = scenario["ORG1"], scenario["ORG2"]
    add_many(org2, BULK)
    scenario.master.max_attachment_size = 16 * KIB
    scenario.master.save()
    synced(scenario)
    renamed = rename("bulk3", "Renamed Meanwhile")
    cycle(org2)
    org1.refresh()
    ids = dict(org1.contacts().values_list("global_key", "pk"))
    org1.config.import_all_recipients()
    run = queue_cycle(org1)
    deliver(queued())
    parts = list(queued(kind=MessageKind.REPLY))
    assert len(parts) >= 3

    for part in parts:
        deliver([part])
        duplicate(inbound(kind=MessageKind.REPLY).last())
        process_pending()

    assert dict(org1.contacts().values_list("global_key", "pk")) == ids
    key = GlobalEntry.objects.get(object_id=renamed.guid).global_key
    assert org1.contacts().get(global_key=key).display_name == "Renamed Meanwhile (ORG2)"
    run.refresh_from_db()
    assert (run.deleted, run.imported, run.updated) == (0, 0, 1)
    assert run.reply_parts_applied == len(parts)
    assert_no_duplicates()
    sync_all()
    assert_converged(scenario)


@pytest.fixture
def many(scenario):
    """ORG2 with BULK more recipients of long attributes; small messages on both sides."""
    org2 = scenario["ORG2"]
    add_many(org2, BULK)
    org2.config.max_message_size = 16 * KIB
    org2.config.save()
    scenario.master.max_attachment_size = 16 * KIB
    scenario.master.save()
    return scenario


def test_it_applies_multi_part_exports_arriving_in_reverse_order(many):
    org2 = many["ORG2"]
    requestor = many.master.requestors.get(organization_name="ORG2")
    run = queue_cycle(org2)
    parts = list(queued(kind=MessageKind.EXPORT))
    assert len(parts) >= 3

    deliver(reversed(parts))

    # The master answers once, when the last missing part (part 1) has arrived.
    assert queued(kind=MessageKind.REPLY).count() == 1
    assert GlobalEntry.objects.filter(origin="ORG2", deleted=False).count() == ORG2_TOTAL
    requestor.refresh_from_db()
    assert requestor.acked_usn == run.export_through
    pump()
    assert org2.refresh().config.requestor_usn == run.export_through

    # An incremental export in several parts: the ack waits for the gap to fill.
    for recipient in Recipient.objects.filter(
        organization=org2.organization, alias__startswith="bulk"
    ):
        recipient.title = "Promoted"
        changes.save_recipient(recipient)
    run = queue_cycle(org2)
    parts = list(queued(kind=MessageKind.EXPORT))
    assert len(parts) >= 3
    acked = requestor.acked_usn
    deliver(parts[-1:])
    requestor.refresh_from_db()
    assert requestor.acked_usn == acked
    assert requestor.pending_ranges == [[parts[-1].usn_from, parts[-1].usn_through]]
    deliver(reversed(parts[:-1]))
    requestor.refresh_from_db()
    assert (requestor.acked_usn, requestor.pending_ranges) == (run.export_through, [])
    assert GlobalEntry.objects.filter(origin="ORG2", attrs__title="Promoted").count() == BULK
    sync_all()
    assert_converged(many)


def test_it_keeps_everything_when_two_multi_part_full_exports_interleave(many):
    org2 = many["ORG2"]
    synced(many)
    before = snapshot()
    org2.config.export_all_recipients()
    queue_cycle(org2)
    older = list(queued(kind=MessageKind.EXPORT))
    queue_cycle(org2)
    newer = list(queued(kind=MessageKind.EXPORT).exclude(pk__in=[m.pk for m in older]))
    assert len(older) == len(newer) >= 3

    deliver(newer[:1])
    deliver(older)
    deliver(newer[1:])

    assert GlobalEntry.objects.filter(origin="ORG2", deleted=False).count() == ORG2_TOTAL
    sync_all()
    assert snapshot() == before
    assert_converged(many)


def test_it_defers_reply_parts_until_the_gap_fills(many):
    org1 = many["ORG1"]
    cycle(many["ORG2"])
    queue_cycle(org1)
    deliver(queued())
    parts = list(queued(kind=MessageKind.REPLY))
    assert len(parts) >= 3

    deliver(reversed(parts[1:]))

    waiting = messages_for(org1, kind=MessageKind.REPLY, status=Status.DEFERRED)
    assert waiting.count() == len(parts) - 1
    assert not org1.contacts().exists()

    deliver(parts[:1])

    assert not messages_for(org1, status=Status.DEFERRED).exists()
    assert messages_for(org1, kind=MessageKind.REPLY, status=Status.PROCESSED).count() == len(parts)
    assert org1.contacts().filter(origin_organization="ORG2").count() == ORG2_TOTAL
    refresh(many)
    assert org1.config.master_usn == many.master.usn
    assert_no_duplicates()


def test_it_fills_the_gap_of_a_lost_reply_part_in_the_next_cycle(many):
    org1 = many["ORG1"]
    cycle(many["ORG2"])
    queue_cycle(org1)
    deliver(queued())
    parts = list(queued(kind=MessageKind.REPLY))
    lost = parts[len(parts) // 2]
    lost.delete()

    pump()

    assert messages_for(org1, status=Status.DEFERRED).exists()
    assert 0 < org1.contacts().count() < ORG2_TOTAL
    sync_all()
    assert not messages_for(org1, status=Status.DEFERRED).exists()
    assert_converged(many)


def test_it_converges_when_every_multi_part_message_arrives_in_reverse_order(many):
    for _ in range(3):
        for org in many.orgs.values():
            queue_cycle(org)
        while queued().exists():
            deliver_reversed()
    rename("bulk7", "Renamed In Bulk")
    changes.delete_recipients([person("bulk8")])
    for _ in range(2):
        for org in many.orgs.values():
            queue_cycle(org)
        while queued().exists():
            deliver_reversed()

    # Converged without any orderly round.
    assert "Renamed In Bulk (ORG2)" in many["ORG3"].contact_names()
    assert_converged(many)
    assert sync_all()[0].quiet


@pytest.mark.parametrize("start", ["import all", "new epoch"])
def test_it_removes_stale_contacts_though_a_part_of_the_full_reply_was_lost(scenario, start):
    """A full reply whose last part is lost still ends with the contacts the master no longer
    lists removed: the requestor asks again until a full reply arrives whole."""
    org1, org2 = scenario["ORG1"], scenario["ORG2"]
    add_many(org2, BULK)
    scenario.master.max_attachment_size = 16 * KIB
    scenario.master.save()
    synced(scenario)
    # ORG1 misses a delete, and can learn of it only from a full reply: its tombstone is gone,
    # and every live entry changed after it.
    gone = person("bulk8")
    changes.delete_recipients([gone])
    cycle(org2)
    for recipient in Recipient.objects.filter(organization=org2.organization, global_key=None):
        recipient.title = "Renamed after the delete"
        changes.save_recipient(recipient)
    cycle(org2)
    tombstone = GlobalEntry.objects.filter(object_id=gone.guid)
    tombstone.update(changed_at=timezone.now() - timedelta(days=365))
    assert purge_master_tombstones(scenario.master.pk) == 1
    if start == "import all":
        org1.refresh().config.import_all_recipients()
    else:
        type(scenario.master).objects.filter(pk=scenario.master.pk).update(epoch=uuid.uuid4())
    queue_cycle(org1)
    deliver(queued(kind=MessageKind.EXPORT))
    parts = list(queued(kind=MessageKind.REPLY))
    assert len(parts) >= 3 and wire.decode(bytes(parts[0].payload)).full
    deliver(parts[:-1])
    assert drop_queued(kind=MessageKind.REPLY) == 1
    assert org1.refresh().config.full_reply_pending
    assert "ORG2 Bulk Person 0008 (ORG2)" in org1.contact_names()

    runs = [cycle(org1) for _ in range(2)]

    assert "ORG2 Bulk Person 0008 (ORG2)" not in org1.contact_names()
    assert not org1.refresh().config.full_reply_pending
    assert runs[0].deleted == 1
    sync_all()
    assert_converged(scenario)


def test_a_refused_multi_part_export_fails_each_part_and_nothing_older(many):
    """The master here refuses every part: each part's own sent copy fails, and the copies
    of earlier exports, accepted then, stay as they were."""
    org2 = many["ORG2"]
    sync_all()
    exports = Message.objects.filter(
        direction=Direction.OUTBOUND, kind=MessageKind.EXPORT, sender__icontains="ORG2"
    )
    accepted = set(exports.filter(status=Status.SENT).values_list("pk", flat=True))
    assert accepted
    for recipient in Recipient.objects.filter(
        organization=org2.organization, alias__startswith="bulk"
    ):
        recipient.title = "Refused"
        changes.save_recipient(recipient)
    AllowedRequestor.objects.filter(organization_name="ORG2").update(enabled=False)

    run = queue_cycle(org2)
    parts = exports.filter(batch=run.batch)
    assert parts.count() >= 3
    pump()

    assert set(parts.values_list("status", flat=True)) == {Status.FAILED}
    assert set(exports.filter(status=Status.SENT).values_list("pk", flat=True)) == accepted
    run.refresh_from_db()
    assert "is disabled on this master" in run.error
