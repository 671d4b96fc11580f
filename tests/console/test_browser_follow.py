"""Execute Now in headless Chromium, followed live on the run page: the button leads to the run,
queued; a worker takes it over and the page shows it waiting for the master, then completed, by
itself: the page is never reloaded. The page mid-cycle is saved as docs/screenshots/run-live.png
for the README."""

import re

import pytest

from requestor.constants import RunStatus, Trigger
from requestor.cycle import run_cycle
from requestor.models import Run
from requestor.tasks import run_requestor_cycle
from tests.console.conftest import DOCS_SCREENSHOTS, make_user, make_world
from tests.console.test_browser import CHROMIUM, browser, log_in, page, shoot  # noqa: F401
from tests.workers.conftest import (  # noqa: F401 (fixtures)
    celery_processes,
    fs_broker,
    use_broker,
    wait_for,
)
from transport.inbox import pump

DOCS = DOCS_SCREENSHOTS

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="/usr/bin/chromium is missing: run bin/ensure-browser (apt-get install chromium)",
    ),
    pytest.mark.django_db(transaction=True),
]


def badge(page) -> str:  # noqa: F811
    return page.locator("#run-live .state").inner_text().strip()


def wait_for_badge(page, text: str) -> None:  # noqa: F811
    page.wait_for_function(
        "text => document.querySelector('#run-live .state').innerText.trim() === text",
        arg=text,
        timeout=30000,
    )


def test_execute_now_is_followed_live_to_the_end(
    page,  # noqa: F811
    shoot,  # noqa: F811
    settings,
    fs_broker,  # noqa: F811
    celery_processes,  # noqa: F811
):
    world = make_world()
    alice = make_user("alice", {world.org2.organization: "administrator"})
    for org in (world.org1, world.org3):
        run_cycle(org.config.pk)
        pump()
    settings.INTERORG_DISPATCH_TASKS = True  # the server queues cycles for the workers

    log_in(page, "alice")
    page.goto("/o/ORG2/requestor/schedule/")
    page.click("#execute-now")
    page.wait_for_url(re.compile(r"/o/ORG2/runs/\d+/$"))
    run = Run.objects.get(config=world.org2.config)
    assert page.url.endswith(f"/o/ORG2/runs/{run.pk}/")
    assert run.status == RunStatus.QUEUED
    assert badge(page) == "Queued for a worker"
    assert f"Run {run.pk} of ORG2 is queued for the workers." in page.locator(".flash").inner_text()
    page.wait_for_selector("#run-progress:not([hidden])")
    assert "waiting for a worker" in page.locator("#run-progress").inner_text()
    # Survives only as long as the page is not reloaded or left.
    page.evaluate("window.followedWithoutReload = 'yes'")

    # A worker's first step, taken here so that the page is caught mid-cycle: the cycle takes
    # the queued run over and sends the export; the master has not answered yet.
    run_requestor_cycle.apply(args=(world.org2.config.pk, Trigger.MANUAL, alice.pk, "", run.pk))
    wait_for_badge(page, "Waiting for the master's reply")
    assert page.locator('[data-run-field="parts_sent"]').inner_text() == "1"
    assert (
        "1 part sent; waiting for the master's reply." in page.locator("#run-progress").inner_text()
    )
    DOCS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS / "run-live.png"), full_page=True)
    shoot("20-run-live-waiting")

    # A real worker does the rest: delivers the export, the master replies, ORG2 imports it
    # (and finds that the cycle's own task has nothing left to do).
    celery_processes(fs_broker).worker()
    wait_for_badge(page, "Completed")

    assert page.evaluate("window.followedWithoutReload") == "yes"
    assert page.url.endswith(f"/o/ORG2/runs/{run.pk}/")
    run.refresh_from_db()
    assert (run.status, run.imported) == (RunStatus.OK, 4)
    assert page.locator('[data-run-field="imported"]').inner_text() == "4"
    assert page.locator('[data-run-field="reply_parts_applied"]').inner_text() == "1"
    assert page.locator("#run-ended").is_visible()
    assert Run.objects.filter(config=world.org2.config).count() == 1
    shoot("21-run-live-completed")
