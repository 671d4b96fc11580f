"""A batch as one story in headless Chromium: ORG2 deletes its people, the master ORG1 holds the
export and hub approves it, ORG1 and ORG3 hide the contacts; from ORG2's run page "This batch
everywhere" shows the run, the guard's decision, what the master stamped and what each other
organization did. Screenshots are saved with the other browser tests'
(var/screenshots/<timestamp>/)."""

import pytest

from console.constants import ConsoleRole
from directory import changes
from directory.models import Recipient
from master.models import AllowedRequestor
from requestor.constants import RunStatus
from requestor.cycle import run_cycle, sync_all
from requestor.models import Run
from tests.console.conftest import make_user, make_world
from tests.console.test_browser import CHROMIUM, browser, log_in, page, shoot  # noqa: F401
from transport import holds
from transport.inbox import pump
from transport.models import Hold

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="/usr/bin/chromium is missing: run bin/ensure-browser (apt-get install chromium)",
    ),
    pytest.mark.django_db(transaction=True),
]


def cycle(org) -> Run:
    run = run_cycle(org.config.pk)
    pump()
    return Run.objects.get(pk=run.pk)


def approved_mass_delete():
    """A synced world where ORG2 deleted both its people, hub approved the held export at the
    master, and ORG1 and ORG3 hid the contacts. The deleting run."""
    world = make_world()
    hub = make_user(
        "hub",
        {
            world.org1.organization: ConsoleRole.ADMINISTRATOR,
            world.org2.organization: ConsoleRole.OPERATOR,
            world.org3.organization: ConsoleRole.OPERATOR,
        },
    )
    make_user("branch", {world.org3.organization: ConsoleRole.OPERATOR})
    sync_all()
    AllowedRequestor.objects.filter(organization_name="ORG2").update(delete_limit=1)
    changes.delete_recipients(Recipient.objects.filter(organization=world.org2.organization))
    run = cycle(world.org2)
    assert run.status == RunStatus.HELD
    holds.approve(Hold.objects.get(batch=run.batch).pk, hub)
    for org in (world.org1, world.org3):
        cycle(org)
    return run


def test_the_run_page_leads_to_the_batch_everywhere(page, shoot):  # noqa: F811
    run = approved_mass_delete()
    log_in(page, "hub")
    page.goto(f"/o/ORG2/runs/{run.pk}/")

    page.click("#batch-everywhere")

    page.wait_for_url(f"**/o/ORG2/batches/{run.batch}/")
    lines = page.locator("#batch-lines").inner_text()
    assert f"ORG2: run {run.pk} (" in lines
    assert "ORG1 (guard): held at " in lines and "approved by hub at " in lines
    assert "ORG1 (master): stamped 0 upserts and 2 deletes" in lines
    assert "ORG1: 2 hidden at " in lines and "ORG3: 2 hidden at " in lines
    deletes = page.locator("#batch-deletes").inner_text()
    assert "Person 0 of ORG2" in deletes and "Person 1 of ORG2" in deletes
    org3 = page.locator("#batch-org-org3").inner_text()
    assert "hidden (grace period)" in org3 and "Person 1 of ORG2" in org3
    assert "hub" in page.locator("#batch-holds").inner_text()
    shoot("45-batch-everywhere")

    page.click("#batch-org-org3 a[href*='/runs/']")
    page.wait_for_url("**/o/ORG3/runs/*/")
    assert "ORG3" in page.locator("h1").inner_text()


def test_a_reader_of_one_organization_sees_its_part_only(page, shoot):  # noqa: F811
    run = approved_mass_delete()
    log_in(page, "branch")

    page.goto(f"/o/ORG3/batches/{run.batch}/")

    assert "ORG3: 2 hidden at " in page.locator("#batch-lines").inner_text()
    assert "Not shown: you cannot read ORG2." in page.locator("#batch-origin").inner_text()
    assert "Not shown: you cannot read ORG1." in page.locator("#batch-master").inner_text()
    assert "Person 0 of ORG2" in page.locator("#batch-org-org3").inner_text()
    shoot("46-batch-one-organization")
