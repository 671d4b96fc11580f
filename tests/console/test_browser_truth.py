"""The dashboard in headless Chromium tells the truth: the next run is when beat will start the
cycle (every minute, daily at a chosen time in the installation's time zone, at once when it
is overdue), and an organization whose export the master refused shows failing with the
reason. Screenshots are saved with the other browser tests' (var/screenshots/<timestamp>/)."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from master.models import AllowedRequestor
from requestor import schedule
from requestor.constants import RunStatus
from requestor.cycle import run_cycle, sync_all
from requestor.models import Run
from tests.console.conftest import make_user, make_world
from tests.console.test_browser import CHROMIUM, browser, log_in, page, shoot  # noqa: F401
from transport.inbox import pump

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="/usr/bin/chromium is missing: run bin/ensure-browser (apt-get install chromium)",
    ),
    pytest.mark.django_db(transaction=True),
]


def next_run_cell(page):  # noqa: F811
    """The ORG2 line's next run: its text and the exact time it stands for (None: no time)."""
    cell = page.locator("table.dashboard tbody tr", has_text="ORG2").locator(".next-run")
    stamp = cell.get_attribute("datetime")
    return cell.inner_text().strip(), stamp and datetime.fromisoformat(stamp)


def test_the_dashboard_shows_the_next_run_of_a_minute_schedule(page, shoot):  # noqa: F811
    world = make_world()
    make_user("alice", {world.org2.organization: "administrator"})
    config = world.org2.config
    schedule.set_every_minutes(config, 1)
    last = timezone.now() - timedelta(seconds=20)
    config.schedule_tasks.update(last_run_at=last)

    log_in(page, "alice")
    text, at = next_run_cell(page)

    assert at == last + timedelta(minutes=1)
    assert text == timezone.localtime(at).strftime("%Y-%m-%d %H:%M")
    shoot("truth-01-next-run-every-minute")

    # Beat was stopped for two days: it starts the cycle at its next tick, not in the past.
    config.schedule_tasks.update(last_run_at=timezone.now() - timedelta(days=2))
    before = timezone.now()
    page.reload()
    text, at = next_run_cell(page)
    assert text == "due now"
    assert before <= at <= timezone.now()


def test_the_dashboard_shows_the_next_run_of_a_daily_schedule(page, shoot, settings):  # noqa: F811
    settings.TIME_ZONE = "Europe/Paris"
    paris = ZoneInfo("Europe/Paris")
    world = make_world()
    make_user("alice", {world.org2.organization: "administrator"})
    config = world.org2.config
    soon = (timezone.now() + timedelta(hours=2)).astimezone(paris)
    at_time = time(soon.hour, soon.minute)
    schedule.set_daily(config, [at_time])
    config.schedule_tasks.update(last_run_at=timezone.now() - timedelta(minutes=5))
    expected = datetime.combine(soon.date(), at_time, tzinfo=paris)

    log_in(page, "alice")
    text, at = next_run_cell(page)

    # The schedule is kept in the server's zone (Paris); the page shows it in the viewer's.
    viewer = ZoneInfo(page.inner_text("#tz-name").removeprefix("Times in "))
    shown = expected.astimezone(viewer).strftime("%Y-%m-%d %H:%M")
    assert at == expected
    assert text == shown
    shoot("truth-02-next-run-daily")

    page.goto("/o/ORG2/requestor/schedule/")
    assert f"daily at {at_time:%H:%M}" in page.inner_text("main")
    assert page.locator("main .next-run").inner_text() == shown


def test_the_dashboard_shows_a_refused_export_failing_with_its_reason(page, shoot):  # noqa: F811
    world = make_world()
    make_user("alice", {world.org2.organization: "administrator"})
    sync_all(max_rounds=3)
    AllowedRequestor.objects.filter(organization_name="ORG2").update(enabled=False)
    run = run_cycle(world.org2.config.pk)
    pump()
    run = Run.objects.get(pk=run.pk)
    assert run.status == RunStatus.FAILED

    log_in(page, "alice")
    line = page.locator("table.dashboard tbody tr", has_text="ORG2")
    state = line.locator("td").nth(2)

    assert state.locator(".state").inner_text().strip() == "failing"
    assert "state-failing" in state.locator(".state").get_attribute("class")
    reason = state.locator(".state-reason")
    assert run.error[:60] in reason.inner_text()
    assert reason.get_attribute("title") == run.error  # all of it, on hover
    assert "is disabled on this master" in run.error
    shoot("truth-03-refused-export-failing")
