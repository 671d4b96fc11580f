"""Old messages: a delayed export cannot bring back an entry whose tombstone is gone, a replay is
refused even after the archive purged the original, and settings that would open either
window are refused."""

import os
import subprocess
import sys
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from directory import changes
from master import processing
from master.housekeeping import purge_master_tombstones
from master.models import GlobalEntry, MasterConfig
from tests.engine.helpers import (
    cycle,
    duplicate,
    held,
    inbound,
    queue_cycle,
    queued,
    synced_fixtures,
)
from transport import signing
from transport.constants import MessageKind, Status
from transport.exceptions import MessageRejected
from transport.housekeeping import purge_archive
from transport.inbox import pump
from transport.models import Message

synced_base, synced = synced_fixtures()
DAY_MS = 24 * 3600 * 1000


@pytest.fixture
def clock(monkeypatch):
    """Move the clock that message sequences follow (and that staleness is judged by)."""
    real = signing.now_ms
    offset = {"ms": 0}
    monkeypatch.setattr(signing, "now_ms", lambda: real() + offset["ms"])

    def advance(days: float) -> None:
        offset["ms"] += int(days * DAY_MS)

    return advance


def an_export_delayed_past_a_purged_tombstone(synced, clock):
    """ORG2's export of a change sits in a mail queue; meanwhile the recipient is deleted, the
    delete reaches the master, and the master purges its tombstone. Then the old export
    arrives."""
    org2 = synced["ORG2"]
    person = org2.people[0]
    person.title = "Changed before the delete"
    changes.save_recipient(person)
    queue_cycle(org2)
    with held(queued(kind=MessageKind.EXPORT)) as delayed:
        changes.delete_recipients([person])
        cycle(org2)
        assert GlobalEntry.objects.get(object_id=person.guid).deleted
        lifetime = MasterConfig.objects.get().tombstone_lifetime_days
        clock(lifetime + 1)
        old = timezone.now() - timedelta(days=lifetime + 1)
        GlobalEntry.objects.filter(object_id=person.guid).update(changed_at=old)
        assert purge_master_tombstones(synced.master.pk) == 1
    pump()
    sequence = Message.objects.get(pk=delayed[0]).sequence
    return person, inbound(kind=MessageKind.EXPORT).get(sequence=sequence)


def test_a_delayed_export_is_refused_by_the_replay_window(synced, clock):
    person, late = an_export_delayed_past_a_purged_tombstone(synced, clock)

    assert late.status == Status.REJECTED
    assert "written more than the replay window" in late.error
    assert not GlobalEntry.objects.filter(object_id=person.guid).exists()


@override_settings(INTERORG_REPLAY_WINDOW_SECONDS=400 * 24 * 3600)
def test_a_delayed_export_never_outlives_the_tombstones_whatever_the_settings(synced, clock):
    person, late = an_export_delayed_past_a_purged_tombstone(synced, clock)

    assert late.status == Status.REJECTED
    assert "more than the master's tombstone lifetime" in late.error
    assert not GlobalEntry.objects.filter(object_id=person.guid, deleted=False).exists()


def test_a_replay_is_refused_while_the_archive_could_have_purged_it(synced, clock):
    org2 = synced["ORG2"]
    cycle(org2)
    accepted = inbound(kind=MessageKind.EXPORT).last()
    assert accepted.status == Status.PROCESSED

    # A retention of 0 days purges everything finished, but not what a replay could still copy.
    purge_archive(days=0)
    replay = duplicate(accepted)
    pump()
    replay.refresh_from_db()
    assert replay.status == Status.REJECTED and replay.error.startswith("Replay:")

    # Past the replay window and a mail queue's lifetime the original may go: a copy of it is
    # then stale by its own clock.
    clock(settings.INTERORG_REPLAY_HORIZON_SECONDS / 86400 + 1)
    Message.objects.filter(pk__lte=replay.pk).update(
        created_at=timezone.now() - timedelta(days=settings.INTERORG_ARCHIVE_RETENTION_DAYS + 1)
    )
    purge_archive()
    assert not Message.objects.filter(pk=accepted.pk).exists()
    again = duplicate(accepted)
    pump()
    again.refresh_from_db()
    assert again.status == Status.REJECTED
    assert "written more than the replay window" in again.error


def settings_error(**env) -> str:
    process = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
        timeout=120,
    )
    assert process.returncode != 0
    return process.stderr.strip().splitlines()[-1]


def test_it_refuses_to_start_with_an_archive_that_forgets_replays():
    error = settings_error(INTERORG_ARCHIVE_RETENTION_DAYS="10")

    assert "INTERORG_ARCHIVE_RETENTION_DAYS=10 would purge accepted messages" in error
    assert "set it to at least 12" in error
    error = settings_error(
        INTERORG_ARCHIVE_RETENTION_DAYS="30", INTERORG_MAIL_QUEUE_LIFETIME_SECONDS=str(25 * 86400)
    )
    assert "set it to at least 32" in error


def test_it_refuses_a_tombstone_lifetime_shorter_than_a_delayed_message(synced):
    master = MasterConfig.objects.get()
    master.tombstone_lifetime_days = 11

    with pytest.raises(Exception) as caught:
        master.full_clean()

    assert "Keep tombstones at least 12 days" in str(caught.value)
    master.tombstone_lifetime_days = 12
    master.full_clean()


def test_an_export_written_exactly_a_tombstone_lifetime_ago_is_still_applied(synced, monkeypatch):
    master = MasterConfig.objects.get()
    now = signing.now_ms()
    monkeypatch.setattr(signing, "now_ms", lambda: now)
    oldest = now - master.tombstone_lifetime_days * processing.DAY_MS

    processing.refuse_older_than_tombstones(master, SimpleNamespace(sequence=oldest))
    with pytest.raises(MessageRejected) as refused:
        processing.refuse_older_than_tombstones(master, SimpleNamespace(sequence=oldest - 1))

    assert str(refused.value) == (
        "Stale: this export was written more than the master's tombstone lifetime "
        f"({master.tombstone_lifetime_days} days) ago, by its sequence {oldest - 1}; applying "
        "it could bring back deleted entries. The requestor's next cycle sends its changes again."
    )
