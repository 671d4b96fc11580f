"""A running beat (DatabaseScheduler) follows schedules edited in the database, no restart."""

import time

from django_celery_beat.models import IntervalSchedule

from requestor import schedule
from requestor.constants import Trigger
from requestor.models import Run
from tests.workers.conftest import wait_for


def scheduled_runs(config) -> int:
    return Run.objects.filter(config=config, trigger=Trigger.SCHEDULE).count()


def test_it_follows_a_schedule_edited_while_beat_runs(fs_broker, celery_processes, three_orgs):
    config = three_orgs["ORG2"].config
    schedule.set_every_minutes(config, 60)
    processes = celery_processes(fs_broker)
    processes.worker()
    processes.beat()
    time.sleep(2)
    assert scheduled_runs(config) == 0, "the hourly schedule is not due yet"

    # Edited in the database, as the admin page or another machine would: every second.
    entry = config.schedule_tasks.get()
    entry.interval = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
    entry.save()
    wait_for(lambda: scheduled_runs(config) >= 2, 20, "two scheduled cycles of ORG2")
    assert "Sending due task Requestor of ORG2" in processes.log("beat")

    schedule.disable(config)
    time.sleep(3)  # beat notices within a second or two; a cycle may be on its way
    stopped_at = scheduled_runs(config)
    time.sleep(3)
    assert scheduled_runs(config) == stopped_at, "cycles went on after the schedule was removed"
    assert not Run.objects.exclude(config=config).exists()
