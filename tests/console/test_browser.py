"""The console in headless Chromium: log in, change an Export Config option, press Execute Now,
watch the run finish and the imported contacts appear. Screenshots of the main pages are saved
under var/screenshots/<timestamp>/ (the run prints the folder)."""

import os
import re
from pathlib import Path

import pytest

from directory import changes
from requestor.constants import RunStatus, Trigger
from requestor.cycle import run_cycle, sync_all
from requestor.models import RequestorConfig, Run
from tests.console.conftest import PASSWORD, add_history, make_user, make_world
from tests.console.test_escaping import HOSTILE
from transport.inbox import pump

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="/usr/bin/chromium is missing: run bin/ensure-browser (apt-get install chromium)",
    ),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own database calls
    # are synchronous and safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(viewport={"width": 1360, "height": 900}, base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()


class Shots:
    def __init__(self, folder: Path, page) -> None:
        self.folder, self.page = folder, page

    def __call__(self, name: str, full_page: bool = True) -> None:
        self.page.screenshot(path=str(self.folder / f"{name}.png"), full_page=full_page)


@pytest.fixture
def shoot(screenshot_dir, page):
    print(f"\nscreenshots: {screenshot_dir}")
    return Shots(screenshot_dir, page)


def log_in(page, username: str) -> None:
    page.goto("/")
    assert "/login/" in page.url
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/$"))


def test_it_syncs_from_the_console(page, shoot):
    world = make_world()
    make_user("alice", {world.org2.organization: "administrator"})
    for org in (world.org1, world.org3):
        run_cycle(org.config.pk)
        pump()

    page.goto("/")
    shoot("01-login")
    log_in(page, "alice")
    assert page.locator("table.dashboard").inner_text().count("ORG2") == 1
    shoot("02-dashboard")

    page.click("table.dashboard >> text=ORG2")
    page.click("nav.tabs >> text=Export Config")
    page.fill("#id_append_display_name", " (Fabrikam)")
    page.click("button:has-text('Save')")
    assert page.locator(".flash").inner_text() == "Export Config saved."
    shoot("03-export-config")
    config = RequestorConfig.objects.get(pk=world.org2.config.pk)
    assert config.append_display_name == " (Fabrikam)"

    page.click("nav.tabs >> text=Schedule")
    page.click("#execute-now")
    flash = page.locator(".flash").inner_text()
    run = Run.objects.get(config=config)
    assert flash == f"Run {run.pk} of ORG2: Completed."
    assert page.url.endswith(f"/o/ORG2/runs/{run.pk}/")  # Execute Now leads to its run
    assert page.locator("#run-live .state").inner_text() == "Completed"
    shoot("04-run-after-execute-now")

    page.click('nav.tabs >> text="Directory"')
    page.click('a:has-text("InterOrg Contacts")')
    table = page.locator("#recipients").inner_text()
    assert "Person 0 of ORG1" in table and "Person 1 of ORG3" in table
    assert run.imported == 4
    shoot("05-imported-contacts")


def test_it_refreshes_a_waiting_run_until_it_finishes(page, shoot):
    world = make_world()
    make_user("alice", {world.org2.organization: "administrator"})
    run = Run.objects.create(
        config=world.org2.config, trigger=Trigger.SCHEDULE, status=RunStatus.WAITING
    )
    log_in(page, "alice")
    page.goto("/o/ORG2/requestor/schedule/")
    cell = page.locator(f'tr[data-run="{run.pk}"] .run-status')
    assert cell.inner_text() == "Waiting for the master's reply"
    # The reply arrives (a worker would apply it): the page notices by itself.
    Run.objects.filter(pk=run.pk).update(status=RunStatus.OK, imported=3)
    page.wait_for_function(
        f"document.querySelector('tr[data-run=\"{run.pk}\"] .run-status')"
        ".innerText.trim() === 'Completed'",
        timeout=10000,
    )
    shoot("06-run-finished-by-itself")


def test_it_shows_an_operator_a_read_only_console(page, shoot):
    world = make_world()
    make_user("oscar", {world.org2.organization: "operator"})
    log_in(page, "oscar")
    page.goto("/o/ORG2/requestor/export/")
    assert page.locator("#id_append_display_name").is_disabled()
    assert page.locator("button:has-text('Save')").count() == 0
    assert page.locator("text=Import All Recipients").count() == 0
    page.goto("/o/ORG2/requestor/schedule/")
    assert page.locator("#execute-now").count() == 0
    shoot("07-operator-schedule")


def test_it_shows_the_main_pages(page, shoot, django_user_model):
    """Every main page as a superuser sees it, with hostile text that must stay text."""
    world = make_world()
    sync_all(max_rounds=3)
    add_history(world.org2)
    person = world.org2.organization.recipients.exportable().first()
    person.display_name = HOSTILE
    changes.save_recipient(person)
    django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    log_in(page, "root")
    pages = [
        ("10-dashboard", "/"),
        ("11-overview-org1", "/o/ORG1/"),
        ("12-server-type", "/o/ORG1/server-type/"),
        ("13-master-configuration", "/o/ORG1/master/"),
        ("14-export-config", "/o/ORG2/requestor/export/"),
        ("15-import-config", "/o/ORG2/requestor/import/"),
        ("16-schedule", "/o/ORG2/requestor/schedule/"),
        ("17-directory", "/o/ORG2/directory/"),
        ("18-container", f"/o/ORG2/directory/containers/{world.org2.recipients.pk}/"),
        ("19-recipient", f"/o/ORG2/directory/recipients/{person.pk}/"),
        ("20-runs", "/o/ORG2/runs/"),
        ("21-run", f"/o/ORG2/runs/{world.org2.config.runs.last().pk}/"),
        ("22-messages", "/o/ORG2/messages/"),
        ("23-message", f"/o/ORG2/messages/{world.org2.organization.messages.last().pk}/"),
        ("24-conflicts", "/o/ORG2/conflicts/"),
        ("25-import-all-confirmation", "/o/ORG2/requestor/import-all/"),
    ]
    for name, path in pages:
        response = page.goto(path)
        assert response.status == 200, path
        shoot(name)
    page.goto("/api/docs/")
    page.wait_for_selector(".swagger-ui .opblock", timeout=15000)
    shoot("26-api-docs", full_page=False)
    assert dialogs == []  # the hostile display name never ran
