"""Each requestor's schedule is a set of django-celery-beat entries, edited from the console."""

import io
import json
from datetime import time, timedelta

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from interorg_site.celery import app as celery_app
from interorg_site.celery import forget_removed_housekeeping
from requestor import schedule
from requestor.models import RequestorConfig

pytestmark = pytest.mark.django_db


@pytest.fixture
def config(scenario) -> RequestorConfig:
    return scenario["ORG2"].config


def test_it_runs_a_requestor_every_n_minutes(config):
    schedule.set_every_minutes(config, 15)

    [entry] = config.schedule_tasks.all()
    assert (entry.interval.every, entry.interval.period) == (15, "minutes")
    assert entry.task == "requestor.tasks.run_requestor_cycle"
    assert json.loads(entry.kwargs) == {"config_id": config.pk, "trigger": "schedule"}
    assert 0 < entry.expire_seconds < 15 * 60
    assert entry.task in celery_app.tasks
    assert schedule.describe(config) == "every 15 minutes"
    assert schedule.next_run(config) - timezone.now() <= timedelta(minutes=15)


def test_it_runs_a_requestor_daily_at_chosen_times(config):
    schedule.set_daily(config, ["14:30", time(2, 0), "08:00", "02:00"])

    crontabs = sorted(
        (e.crontab.minute, e.crontab.hour, e.crontab.day_of_week)
        for e in config.schedule_tasks.all()
    )
    assert crontabs == [("0", "2,8", "*"), ("30", "14", "*")]
    assert str(config.schedule_tasks.first().crontab.timezone) == settings.TIME_ZONE
    assert schedule.describe(config) == "daily at 02:00, 08:00, 14:30"
    assert schedule.get(config).times == (time(2), time(8), time(14, 30))


def test_it_replaces_the_schedule_and_keeps_an_unchanged_one(config):
    schedule.set_every_minutes(config, 5)
    entry = config.schedule_tasks.get()
    entry.last_run_at = timezone.now()
    entry.save()

    schedule.set_every_minutes(config, 5)
    assert config.schedule_tasks.get().last_run_at == entry.last_run_at
    schedule.set_daily(config, ["06:00"])
    assert not PeriodicTask.objects.filter(pk=entry.pk).exists()
    schedule.disable(config)
    assert schedule.describe(config) == "never (Execute Now only)"
    assert schedule.next_run(config) is None
    assert not PeriodicTask.objects.filter(task=schedule.TASK).exists()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: schedule.set_every_minutes(c, 0), "between 1 and 1440"),
        (lambda c: schedule.set_daily(c, ["25:00"]), "not a time of day"),
        (lambda c: schedule.set_daily(c, []), "at least one time"),
        (lambda c: schedule.apply(c, "hourly"), "Unknown schedule"),
    ],
)
def test_it_refuses_a_schedule_that_makes_no_sense(config, call, message):
    with pytest.raises(ValidationError, match=message):
        call(config)
    assert not config.schedule_tasks.exists()


def test_the_schedule_goes_with_the_requestor(scenario):
    schedule.set_daily(scenario["ORG2"].config, ["01:00", "13:30"])
    schedule.set_every_minutes(scenario["ORG3"].config, 10)

    scenario["ORG2"].config.delete()

    assert list(PeriodicTask.objects.values_list("name", flat=True)) == [
        f"Requestor of ORG3 (#{scenario['ORG3'].config.pk}): every 10 min"
    ]
    assert CrontabSchedule.objects.exists()  # shared rows stay; beat ignores unused ones


def test_the_demo_requestors_sync_every_minute_one_after_the_other(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    call_command("seed_demo", stdout=io.StringIO())
    call_command("seed_demo", stdout=io.StringIO())  # a second run keeps the schedules

    configs = RequestorConfig.objects.order_by("organization__name")
    assert [schedule.describe(c) for c in configs] == ["every minute"] * 3
    first_runs = [c.schedule_tasks.get().last_run_at + timedelta(minutes=1) for c in configs]
    assert first_runs[0] <= timezone.now()
    gaps = [
        round((b - a).total_seconds()) for a, b in zip(first_runs[:-1], first_runs[1:], strict=True)
    ]
    assert gaps == [10, 10]


def test_housekeeping_is_registered_with_expiry_under_its_interval():
    celery_app.loader.import_default_modules()  # what a worker does at start: autodiscovery
    beat = settings.CELERY_BEAT_SCHEDULE
    assert {entry["task"] for entry in beat.values()} == {
        "transport.tasks.sweep_messages",
        "requestor.tasks.fail_stalled_runs",
        "master.tasks.purge_tombstones",
        "master.tasks.purge_received_batches",
        "master.tasks.compact_ledger",
        "requestor.tasks.purge_directory_tombstones",
        "requestor.tasks.purge_runs",
        "requestor.tasks.compact_imported_changes",
        "requestor.tasks.end_grace_periods",
        "transport.tasks.purge_archive",
        "console.tasks.check_alerts",
    }
    for entry in beat.values():
        assert entry["task"] in celery_app.tasks
        every = entry["schedule"]
        seconds = every if isinstance(every, float) else 24 * 3600
        assert 0 < entry["options"]["expires"] < seconds


def test_beat_forgets_housekeeping_that_the_settings_no_longer_define():
    kept = next(iter(settings.CELERY_BEAT_SCHEDULE))
    daily, _ = CrontabSchedule.objects.get_or_create(minute="30", hour="3")
    for name in (kept, "interorg: purge the message archive (old)", "somebody else's entry"):
        PeriodicTask.objects.create(name=name, task="transport.tasks.purge_archive", crontab=daily)

    forget_removed_housekeeping()

    assert set(PeriodicTask.objects.values_list("name", flat=True)) == {
        kept,
        "somebody else's entry",
    }
