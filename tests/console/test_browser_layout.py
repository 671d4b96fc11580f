"""The console at 800 px (menu toggle, no sideways overflow of the page, tables that scroll
inside their wrapper), its tab bar on one line at 1366 px, and times in the browser's zone."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from requestor.constants import RunStatus
from requestor.cycle import run_cycle
from requestor.models import Run
from tests.console.conftest import make_user, make_world
from tests.console.test_browser import CHROMIUM, browser, log_in, shoot  # noqa: F401
from transport.inbox import pump

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing"),
    pytest.mark.django_db(transaction=True),
]

OVERFLOW = "document.documentElement.scrollWidth - window.innerWidth"


def new_page(browser, live_server, width: int, **options):  # noqa: F811
    context = browser.new_context(
        viewport={"width": width, "height": 900}, base_url=live_server.url, **options
    )
    page = context.new_page()
    page.set_default_timeout(15000)
    return context, page


@pytest.fixture
def synced_world():
    world = make_world()
    make_user(
        "alice",
        {world.org1.organization: "administrator", world.org2.organization: "administrator"},
    )
    for org in (world.org1, world.org3, world.org2):
        run_cycle(org.config.pk)
        pump()
    return world


def test_at_800_px_the_menu_folds_and_nothing_overflows(browser, live_server, synced_world):  # noqa: F811
    context, page = new_page(browser, live_server, 800)
    try:
        log_in(page, "alice")
        toggle = page.locator("#menu-toggle")
        nav = page.locator("#topnav")
        assert toggle.is_visible() and not nav.is_visible()
        toggle.click()
        assert nav.is_visible() and toggle.get_attribute("aria-expanded") == "true"
        assert page.locator("#topnav >> text=API").is_visible()
        toggle.click()
        assert not nav.is_visible()
        container = synced_world.org2.imported.pk
        for url in ("/", "/o/ORG1/", f"/o/ORG2/directory/containers/{container}/", "/o/ORG2/runs/"):
            page.goto(url)
            assert page.evaluate(OVERFLOW) <= 0, url
        # The dashboard's wide table scrolls inside its wrapper, its cells unsqueezed.
        page.goto("/")
        wrap = page.locator(".table-wrap:has(table.dashboard)")
        assert wrap.evaluate("w => w.scrollWidth > w.clientWidth")
        heights = page.evaluate(
            "Array.from(document.querySelectorAll('table.dashboard th')).map(th => th.clientHeight)"
        )
        assert max(heights) < 3 * min(heights)
        # An address in the master's table keeps more than a few letters a line.
        code = page.locator("table.grid td code").first
        assert code.evaluate("c => c.getClientRects().length && c.clientWidth") > 150
        page.screenshot(path="var/screenshots-layout-800.png", full_page=True)
    finally:
        context.close()


def test_at_1366_px_the_tab_bar_is_one_line(browser, live_server, synced_world):  # noqa: F811
    context, page = new_page(browser, live_server, 1366)
    try:
        log_in(page, "alice")
        page.goto("/o/ORG1/")
        tops = page.evaluate(
            "Array.from(document.querySelectorAll('nav.tabs a')).map(a => a.offsetTop)"
        )
        assert len(tops) >= 10 and len(set(tops)) == 1
        page.set_viewport_size({"width": 800, "height": 900})
        page.goto("/o/ORG1/")
        assert page.evaluate(OVERFLOW) <= 0
        page.click("nav.tabs >> text=Schedule")  # a tab beyond the visible part is reachable
        assert "/schedule/" in page.url
    finally:
        context.close()


def test_times_are_shown_in_the_browsers_zone(browser, live_server):  # noqa: F811
    world = make_world()
    make_user("alice", {world.org2.organization: "administrator"})
    run = Run.objects.create(config=world.org2.config, trigger="manual", status=RunStatus.OK)
    at = datetime(2026, 1, 15, 12, 0, tzinfo=ZoneInfo("UTC"))
    Run.objects.filter(pk=run.pk).update(started_at=at, finished_at=at)
    context, page = new_page(browser, live_server, 1366, timezone_id="America/New_York")
    try:
        log_in(page, "alice")
        assert page.locator("#tz-name").inner_text() == "Times in America/New_York"
        page.goto("/o/ORG2/runs/")
        assert "2026-01-15 07:00:00" in page.locator("table.grid").first.inner_text()
        # A zone saved on the Time zone page wins over the browser's.
        page.click("text=Time zone")
        page.select_option("#id_time_zone", "Asia/Kolkata")
        page.click("button:has-text('Save')")
        assert page.locator("#active-zone").inner_text() == "Asia/Kolkata"
        page.goto("/o/ORG2/runs/")
        assert "2026-01-15 17:30:00" in page.locator("table.grid").first.inner_text()
        assert page.locator("#tz-name").inner_text() == "Times in Asia/Kolkata"
    finally:
        context.close()
