"""A requestor's schedule (the Schedule page): never, every N minutes, or daily at chosen times.

Stored as django-celery-beat entries linked to the requestor (RequestorConfig.schedule_tasks).
Beat runs the DatabaseScheduler, which notices a change within seconds: nothing restarts.
"""

import json
import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from requestor.constants import Trigger
from requestor.models import RequestorConfig

TASK = "requestor.tasks.run_requestor_cycle"
NEVER, EVERY, DAILY = "never", "every", "daily"
KINDS = [
    (NEVER, "Never (Execute Now only)"),
    (EVERY, "Every N minutes"),
    (DAILY, "Daily at chosen times"),
]
MAX_MINUTES = 24 * 60
# A scheduled cycle that could not start in this long is dropped: the next one comes anyway.
DAILY_EXPIRES = 3600


@dataclass(frozen=True)
class Schedule:
    """What the Schedule page shows: the kind, and the minutes or the times of day."""

    kind: str = NEVER
    minutes: int | None = None
    times: tuple[time, ...] = ()

    def __str__(self) -> str:
        if self.kind == EVERY:
            return "every minute" if self.minutes == 1 else f"every {self.minutes} minutes"
        if self.kind == DAILY:
            return "daily at " + ", ".join(format_time(t) for t in self.times)
        return "never (Execute Now only)"


def format_time(value: time) -> str:
    return value.strftime("%H:%M")


def parse_times(text: str) -> list[time]:
    """Times of day from "02:00, 14:30" (commas, spaces or new lines between them)."""
    times = set()
    for item in re.split(r"[\s,;]+", text.strip()):
        if not item:
            continue
        match = re.fullmatch(r"([01]?\d|2[0-3])[:.h]([0-5]\d)", item)
        if match is None:
            raise ValidationError(f"{item!r} is not a time of day; write it as HH:MM, e.g. 02:30.")
        times.add(time(int(match[1]), int(match[2])))
    return sorted(times)


def get(config: RequestorConfig) -> Schedule:
    # .all(): the admin's list prefetches the entries with their schedules.
    tasks = list(config.schedule_tasks.all())
    interval = next((t.interval for t in tasks if t.interval_id), None)
    if interval is not None:
        minutes = interval.every * {"days": 1440, "hours": 60, "minutes": 1}.get(interval.period, 0)
        return Schedule(EVERY, minutes=minutes or 1)
    times = [
        time(int(hour), int(minute))
        for task in tasks
        if task.crontab_id
        for hour in task.crontab.hour.split(",")
        for minute in task.crontab.minute.split(",")
    ]
    return Schedule(DAILY, times=tuple(sorted(times))) if times else Schedule()


def describe(config: RequestorConfig) -> str:
    return str(get(config))


@dataclass(frozen=True)
class NextRun:
    """When beat next starts the requestor's cycle, or (`at` None) why it will not."""

    at: datetime | None
    note: str = ""
    # Due already: beat sends it at its next tick, within seconds.
    due: bool = False

    def __str__(self) -> str:
        return self.at.isoformat() if self.at else self.note


NOT_SCHEDULED = "not scheduled (Execute Now only)"
SCHEDULE_DISABLED = "schedule disabled"
SCHEDULE_EXPIRED = "schedule expired"
REQUESTOR_DISABLED = "requestor disabled"


def upcoming(config: RequestorConfig, now: datetime | None = None) -> NextRun:
    """The next time beat's DatabaseScheduler sends the requestor's cycle, as it decides it: the
    earliest of its entries, each judged like beat's ModelEntry.is_due (celery's own
    remaining_estimate from the entry's last run). A cycle already due (its last run long ago,
    or beat was stopped) goes at beat's next tick, within seconds: its next run is now, never
    in the past. A disabled requestor's cycles start nothing."""
    now = now or timezone.now()
    tasks = list(config.schedule_tasks.all())
    if not tasks:
        return NextRun(None, NOT_SCHEDULED)
    if not config.enabled:
        return NextRun(None, REQUESTOR_DISABLED)
    started = _last_scheduled_start(config)
    times = [_next_run_of(task, now, started) for task in tasks]
    if any(times):
        at = min(t for t in times if t is not None)
        return NextRun(at, due=at <= now)
    if any(task.enabled for task in tasks):
        return NextRun(None, SCHEDULE_EXPIRED)
    return NextRun(None, SCHEDULE_DISABLED)


def next_run(config: RequestorConfig, now: datetime | None = None) -> datetime | None:
    """When beat starts the next scheduled cycle (None: none will start; upcoming() says why)."""
    return upcoming(config, now).at


def _last_scheduled_start(config: RequestorConfig) -> datetime | None:
    return (
        config.runs.filter(trigger=Trigger.SCHEDULE)
        .order_by("-started_at")
        .values_list("started_at", flat=True)
        .first()
    )


def _next_run_of(task: PeriodicTask, now: datetime, started: datetime | None) -> datetime | None:
    """When beat first finds `task` due at or after `now` (None: never, disabled or expired).

    Mirrors django_celery_beat.schedulers.ModelEntry: an entry never run counts from when it
    was last changed (from long ago if it has a start time); it waits for its start time and
    stops at its expiry. Beat writes the last run of each entry back only every few minutes,
    and saving an entry marks it changed: a scheduled run started after that is a later last
    run beat already holds in memory."""
    if not task.enabled or (task.one_off and task.total_run_count > 0):
        return None
    if task.expires is not None and now >= task.expires:
        return None
    if task.start_time is not None and now < task.start_time:
        return _next_run_of(task, task.start_time, started)
    last = task.last_run_at
    if last is None:
        last = task.date_changed or now
        if task.start_time is not None:
            last -= timedelta(days=365 * 30)
    if started is not None and task.date_changed and started > task.date_changed:
        last = max(last, started)
    rule = task.schedule
    rule.nowfun = lambda: now
    last = last.astimezone(current_app.timezone)
    remaining = rule.remaining_estimate(last)
    deadline = current_app.conf.beat_cron_starting_deadline
    if remaining <= timedelta(0) and deadline is not None and task.crontab_id:
        # A missed daily time older than the deadline is not caught up: the next one counts.
        missed_since = now - timedelta(seconds=deadline)
        if rule.remaining_estimate(missed_since) > timedelta(0):
            remaining = rule.remaining_estimate(now)
    at = now + max(remaining, timedelta(0))
    if task.expires is not None and at >= task.expires:
        return None
    return at


def set_every_minutes(
    config: RequestorConfig, minutes: int, *, first_run_at: datetime | None = None
) -> None:
    """Run a cycle every `minutes` minutes; the first `minutes` after now, or at `first_run_at`
    (the demo staggers its organizations that way)."""
    if not 1 <= minutes <= MAX_MINUTES:
        raise ValidationError(f"Choose between 1 and {MAX_MINUTES} minutes (once a day).")
    if get(config) == Schedule(EVERY, minutes=minutes):
        return
    interval, _ = IntervalSchedule.objects.get_or_create(
        every=minutes, period=IntervalSchedule.MINUTES
    )
    last_run_at = None if first_run_at is None else first_run_at - timedelta(minutes=minutes)
    with transaction.atomic():
        _replace(
            config,
            [
                _task(
                    config,
                    f"every {minutes} min",
                    interval=interval,
                    expire_seconds=max(1, minutes * 54),  # 90% of the interval
                    last_run_at=last_run_at,
                )
            ],
        )


def set_daily(config: RequestorConfig, times) -> None:
    """Run a cycle every day at each of `times` (datetime.time or "HH:MM", in TIME_ZONE)."""
    wanted = sorted({t if isinstance(t, time) else parse_times(t)[0] for t in times})
    wanted = [t.replace(second=0, microsecond=0) for t in wanted]
    if not wanted:
        raise ValidationError("Give at least one time of day, such as 02:30.")
    if get(config) == Schedule(DAILY, times=tuple(wanted)):
        return
    # One crontab entry per distinct minute: 02:00 and 14:00 share "0 2,14 * * *".
    hours_by_minute: dict[int, list[int]] = {}
    for t in wanted:
        hours_by_minute.setdefault(t.minute, []).append(t.hour)
    tasks = []
    for minute, hours in sorted(hours_by_minute.items()):
        crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=str(minute),
            hour=",".join(str(h) for h in hours),
            day_of_week="*",
            day_of_month="*",
            month_of_year="*",
            timezone=settings.TIME_ZONE,
        )
        label = ", ".join(f"{h:02d}:{minute:02d}" for h in hours)
        tasks.append(
            _task(config, f"daily at {label}", crontab=crontab, expire_seconds=DAILY_EXPIRES)
        )
    with transaction.atomic():
        _replace(config, tasks)


def disable(config: RequestorConfig) -> None:
    """No scheduled cycles: Execute Now only."""
    with transaction.atomic():
        _replace(config, [])


def apply(config: RequestorConfig, kind: str, minutes: int | None = None, times=()) -> None:
    """Set the schedule from the Schedule page's fields."""
    if kind == EVERY:
        if minutes is None:
            raise ValidationError("Give the number of minutes between cycles.")
        set_every_minutes(config, minutes)
    elif kind == DAILY:
        set_daily(config, times)
    elif kind == NEVER:
        disable(config)
    else:
        raise ValidationError(f"Unknown schedule {kind!r}; choose never, every or daily.")


def _task(config: RequestorConfig, label: str, **fields) -> PeriodicTask:
    return PeriodicTask(
        name=f"Requestor of {config.organization.name} (#{config.pk}): {label}",
        task=TASK,
        kwargs=json.dumps({"config_id": config.pk, "trigger": Trigger.SCHEDULE.value}),
        description=f"Scheduled InterOrg requestor cycle of {config.organization.name}.",
        **fields,
    )


def _replace(config: RequestorConfig, tasks: list[PeriodicTask]) -> None:
    """Swap the requestor's beat entries for `tasks`; beat sees the change at its next tick."""
    config.schedule_tasks.all().delete()
    for task in tasks:
        task.save()
    config.schedule_tasks.set(tasks)
