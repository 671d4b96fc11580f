"""The next run the console shows is the moment beat's DatabaseScheduler first finds the
requestor's cycle due: never in the past, for every kind of schedule and time zone, and none
for a schedule that is disabled, expired, or absent.

The oracle is django-celery-beat's own entry (ModelEntry.is_due, with celery's schedules)
for the stored PeriodicTask, its clock stopped at a chosen moment: the next run is due then,
and not one second earlier. Whether a cycle is due only changes at a run, so these two
moments settle it."""

from datetime import UTC, datetime, time, timedelta

import pytest
from django.db import transaction
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import ModelEntry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interorg_site.celery import app as celery_app
from requestor import schedule
from requestor.constants import RunStatus, Trigger
from requestor.models import RequestorConfig, Run

pytestmark = pytest.mark.django_db

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
SECOND = timedelta(seconds=1)


class StoppedBeat(ModelEntry):
    """Beat's entry for a PeriodicTask, as beat would judge it at `at`."""

    def __init__(self, model: PeriodicTask, at: datetime) -> None:
        self.at = at
        super().__init__(model, app=celery_app)
        self.schedule.nowfun = lambda: at

    def _default_now(self) -> datetime:
        return self.at.astimezone(self.app.timezone)


def beat_finds_due(config: RequestorConfig, at: datetime) -> bool:
    """Whether beat, ticking at `at`, sends one of the requestor's entries. Beat disables an
    expired entry as it looks at it: that write is rolled back."""
    with transaction.atomic():
        due = any(StoppedBeat(task, at).is_due().is_due for task in config.schedule_tasks.all())
        transaction.set_rollback(True)
    return due


@pytest.fixture
def config(scenario) -> RequestorConfig:
    return scenario["ORG2"].config


instants = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2032, 12, 31), timezones=st.just(UTC)
)
ages = st.timedeltas(min_value=timedelta(minutes=-30), max_value=timedelta(days=45))
every = st.integers(1, schedule.MAX_MINUTES).map(lambda m: (schedule.EVERY, m))
daily = st.lists(
    st.times().map(lambda t: time(t.hour, t.minute)), min_size=1, max_size=4, unique=True
).map(lambda times: (schedule.DAILY, times))


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.one_of(every, daily),
    zone=st.sampled_from(ZONES),
    now=instants,
    last_run_age=st.none() | ages,
    changed_age=ages,
    enabled=st.booleans(),
    expires_in=st.none() | st.timedeltas(timedelta(days=-2), timedelta(days=3)),
    starts_in=st.none() | st.timedeltas(timedelta(days=-2), timedelta(days=3)),
)
def test_the_next_run_is_when_beat_first_finds_the_cycle_due(
    config, kind, zone, now, last_run_age, changed_age, enabled, expires_in, starts_in
):
    schedule.disable(config)
    with override_settings(TIME_ZONE=zone):
        if kind[0] == schedule.EVERY:
            schedule.set_every_minutes(config, kind[1])
        else:
            schedule.set_daily(config, kind[1])
    # An entry has an expiry time or a lifetime for each cycle it sends, not both.
    lifetime = {} if expires_in is None else {"expire_seconds": None}
    config.schedule_tasks.update(
        **lifetime,
        last_run_at=None if last_run_age is None else now - last_run_age,
        date_changed=now - changed_age,
        enabled=enabled,
        expires=None if expires_in is None else now + expires_in,
        start_time=None if starts_in is None else now + starts_in,
    )

    upcoming = schedule.next_run(config, now=now)

    if upcoming is None:
        assert not beat_finds_due(config, now)
        assert not beat_finds_due(config, now + timedelta(days=3, hours=1))
        return
    assert upcoming >= now
    assert beat_finds_due(config, upcoming)
    if upcoming - now >= SECOND:
        assert not beat_finds_due(config, upcoming - SECOND)


def test_a_cycle_beat_owes_since_long_ago_runs_at_once_not_in_the_past(config):
    now = timezone.now()
    schedule.set_every_minutes(config, 15)
    config.schedule_tasks.update(last_run_at=now - timedelta(days=2))
    assert schedule.next_run(config, now=now) == now

    schedule.set_daily(config, ["02:00"])
    config.schedule_tasks.update(last_run_at=now - timedelta(days=2))
    assert schedule.next_run(config, now=now) == now


def test_a_daily_time_is_in_the_schedules_time_zone(config):
    with override_settings(TIME_ZONE="Europe/Paris"):
        schedule.set_daily(config, ["02:30"])
    # 2026-07-01 10:00 UTC is 12:00 in Paris (summer time): next is 02:30 Paris the next day.
    now = datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
    config.schedule_tasks.update(last_run_at=now - timedelta(hours=1))
    assert schedule.next_run(config, now=now) == datetime(2026, 7, 2, 0, 30, tzinfo=UTC)


def test_a_scheduled_run_beat_has_not_written_back_yet_counts(config):
    """Beat keeps each entry's last run in memory and writes it back every few minutes; a
    cycle it started since is in the runs."""
    now = timezone.now()
    schedule.set_every_minutes(config, 1)
    config.schedule_tasks.update(
        last_run_at=now - timedelta(minutes=3), date_changed=now - timedelta(minutes=3)
    )
    run = Run.objects.create(config=config, trigger=Trigger.SCHEDULE, status=RunStatus.OK)
    Run.objects.filter(pk=run.pk).update(started_at=now - timedelta(seconds=20))
    manual = Run.objects.create(config=config, trigger=Trigger.MANUAL, status=RunStatus.OK)
    Run.objects.filter(pk=manual.pk).update(started_at=now - timedelta(seconds=5))

    assert schedule.next_run(config, now=now) == now + timedelta(seconds=40)


@pytest.mark.parametrize(
    ("change", "note"),
    [
        (lambda c: schedule.disable(c), "not scheduled (Execute Now only)"),
        (lambda c: c.schedule_tasks.update(enabled=False), "schedule disabled"),
        (
            lambda c: c.schedule_tasks.update(expires=timezone.now() - SECOND, expire_seconds=None),
            "schedule expired",
        ),
        (
            lambda c: RequestorConfig.objects.filter(pk=c.pk).update(enabled=False),
            "requestor disabled",
        ),
    ],
)
def test_there_is_no_next_run_and_it_says_why(config, change, note):
    schedule.set_every_minutes(config, 5)
    change(config)
    config.refresh_from_db()
    upcoming = schedule.upcoming(config)
    assert (upcoming.at, upcoming.note) == (None, note)
    assert schedule.next_run(config) is None


def test_the_admin_list_shows_the_next_run(admin_client, config):
    schedule.set_every_minutes(config, 5)
    config.schedule_tasks.update(last_run_at=timezone.now() - timedelta(days=1))
    changelist = reverse("admin:requestor_requestorconfig_changelist")

    assert "due now" in admin_client.get(changelist).content.decode()

    RequestorConfig.objects.filter(pk=config.pk).update(enabled=False)
    assert schedule.REQUESTOR_DISABLED in admin_client.get(changelist).content.decode()
