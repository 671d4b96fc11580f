"""Periodic housekeeping: master tombstones, directory tombstones, the archive, stalled runs."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from directory import changes
from directory.models import Tombstone
from master.housekeeping import purge_tombstones
from master.models import GlobalEntry, MasterConfig, ReceivedBatch
from master.processing import reply_is_full
from requestor.constants import RunStatus
from requestor.cycle import run_cycle, sync_all
from requestor.housekeeping import fail_stalled_runs, purge_directory_tombstones
from requestor.models import RequestorConfig, Run
from transport.constants import Direction, Status
from transport.housekeeping import purge_archive
from transport.inbox import pump
from transport.models import Message


def days_ago(days: float):
    return timezone.now() - timedelta(days=days)


def test_it_purges_master_tombstones_past_their_lifetime(scenario):
    sync_all()
    org2 = scenario["ORG2"]
    old, recent = org2.people[0], org2.people[1]
    changes.delete_recipients([old, recent])
    sync_all()
    entries = GlobalEntry.objects.filter(deleted=True)
    old_entry = entries.get(object_id=old.guid)
    entries.filter(pk=old_entry.pk).update(changed_at=days_ago(61))

    assert purge_tombstones() == 1

    master = MasterConfig.objects.get()
    assert master.purged_through_usn == old_entry.usn
    assert list(entries.values_list("object_id", flat=True)) == [recent.guid]
    assert GlobalEntry.objects.filter(deleted=False).count() == 7
    assert purge_tombstones() == 0
    # A requestor that has not seen the purged delete gets a full reply; one that has, doesn't.
    behind = ReceivedBatch(master_usn=old_entry.usn - 1, master_epoch=master.epoch)
    assert reply_is_full(master, behind)
    assert not reply_is_full(
        master, ReceivedBatch(master_usn=master.usn, master_epoch=master.epoch)
    )


def test_it_keeps_master_tombstones_within_the_configured_lifetime(scenario):
    sync_all()
    changes.delete_recipients([scenario["ORG2"].people[0]])
    sync_all()
    MasterConfig.objects.update(tombstone_lifetime_days=90)
    GlobalEntry.objects.filter(deleted=True).update(changed_at=days_ago(61))

    assert purge_tombstones() == 0
    assert MasterConfig.objects.get().purged_through_usn == 0


def test_it_purges_only_old_directory_tombstones_the_master_acknowledged(scenario):
    org2 = scenario["ORG2"]
    # Contacts removed at once, leaving tombstones (not hidden for a grace period first).
    RequestorConfig.objects.update(grace_days=0)
    sync_all()
    acknowledged = org2.people[0]
    changes.delete_recipients([acknowledged])
    sync_all()
    pending = org2.people[1]
    changes.delete_recipients([pending])  # not exported yet
    recent = org2.people[2]
    changes.delete_recipients([recent])
    Tombstone.objects.update(deleted_at=days_ago(61))
    Tombstone.objects.filter(guid=recent.guid).update(deleted_at=days_ago(1))
    contact = scenario["ORG3"].contacts().first()
    changes.delete_recipients([contact])  # an imported contact's tombstone is never exported
    Tombstone.objects.filter(guid=contact.guid).update(deleted_at=days_ago(61))
    # ORG2's own acknowledged delete, and the contacts deleted in ORG1, ORG3 (by the sync and here).
    assert Tombstone.objects.filter(imported=True).count() == 3

    assert purge_directory_tombstones() == 4

    assert set(Tombstone.objects.values_list("guid", flat=True)) == {pending.guid, recent.guid}
    sync_all()
    names = scenario["ORG1"].contact_names()
    assert not {pending.display_name, recent.display_name} & names, "the deletes still travel"


def test_it_purges_finished_messages_past_the_retention_only(scenario):
    sync_all()
    run_cycle(scenario["ORG2"].config.pk)  # leaves a queued export
    Message.objects.update(created_at=days_ago(settings.INTERORG_ARCHIVE_RETENTION_DAYS + 1))
    waiting = Message.objects.filter(status=Status.QUEUED).get()
    kept_inbound = []
    for status in (Status.RECEIVED, Status.DEFERRED):
        kept_inbound.append(
            Message.objects.create(
                direction=Direction.INBOUND, status=status, sender="a", recipient="b"
            ).pk
        )
    Message.objects.filter(pk__in=kept_inbound).update(created_at=days_ago(365))
    recent = Message.objects.create(
        direction=Direction.INBOUND, status=Status.PROCESSED, sender="a", recipient="b"
    )
    finished = Message.objects.exclude(pk__in=[waiting.pk, recent.pk, *kept_inbound]).count()

    assert purge_archive() == finished > 0

    assert set(Message.objects.values_list("pk", flat=True)) == {
        waiting.pk,
        recent.pk,
        *kept_inbound,
    }
    pump()  # the queued export still goes out and is answered
    assert Run.objects.filter(status=RunStatus.OK).exists()


def test_it_fails_runs_that_waited_too_long_and_a_late_reply_still_completes_them(scenario):
    stalled = run_cycle(scenario["ORG2"].config.pk)
    fresh = run_cycle(scenario["ORG3"].config.pk)
    Run.objects.filter(pk=stalled.pk).update(started_at=timezone.now() - timedelta(hours=2))

    assert fail_stalled_runs() == 1

    stalled.refresh_from_db()
    assert stalled.status == RunStatus.FAILED
    assert "No reply from the master within 60 minutes" in stalled.error
    assert Run.objects.get(pk=fresh.pk).status == RunStatus.WAITING
    pump()
    stalled.refresh_from_db()
    assert stalled.status == RunStatus.OK
