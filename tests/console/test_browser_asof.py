"""The address book as of a time in headless Chromium: ORG3 deletes its people, ORG2's cycle
hides their contacts; an operator of ORG2 picks, on the directory page, a time before that batch
and sees them listed as removed since, with the time they went and the run. Screenshots are
saved with the other browser tests' (var/screenshots/<timestamp>/)."""

from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone

from console.constants import ConsoleRole
from directory import changes
from directory.models import Recipient
from requestor.cycle import run_cycle, sync_all
from requestor.models import ImportedChange, Run
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


def org3_deletes_its_people():
    """A synced world, its history moved two hours back, then ORG3's people deleted and ORG2's
    cycle run: ORG2's run."""
    world = make_world()
    make_user("oscar", {world.org2.organization: ConsoleRole.OPERATOR})
    sync_all()
    ImportedChange.objects.update(at=F("at") - timedelta(hours=2))
    changes.delete_recipients(Recipient.objects.filter(organization=world.org3.organization))
    for org in (world.org3, world.org2):
        run_cycle(org.config.pk)
        pump()
    return Run.objects.filter(config=world.org2.config).first()


def test_an_operator_sees_who_was_removed_since_a_time_and_when(page, shoot):  # noqa: F811
    run = org3_deletes_its_people()
    went = {
        change.display_name: timezone.localtime(change.at).strftime("%Y-%m-%d %H:%M")
        for change in ImportedChange.objects.filter(op=ImportedChange.Op.HIDDEN, run=run)
    }
    assert set(went) == {"Person 0 of ORG3", "Person 1 of ORG3"}
    log_in(page, "oscar")

    page.goto("/o/ORG2/directory/")
    before = timezone.localtime(timezone.now() - timedelta(hours=1))
    page.fill("#asof-box-at", before.strftime("%Y-%m-%dT%H:%M"))
    shoot("30-directory-as-of-picker")
    with page.expect_navigation():
        page.click("#asof-box button[type=submit]")

    then = page.locator("#asof-then").inner_text()
    assert "Person 0 of ORG3" in then and "Person 1 of ORG1" in then
    assert page.locator("#asof-tab-removed").inner_text() == "Removed since (2)"
    shoot("31-address-book-then")
    with page.expect_navigation():
        page.click("#asof-tab-removed")

    removed = page.locator("#asof-removed")
    for name, at in went.items():
        row = removed.locator("tr", has_text=name)
        assert at in row.locator(".went").inner_text()
        assert row.locator("a.asof-run").inner_text() == f"run {run.pk}"
    assert "Person 0 of ORG1" not in removed.inner_text()
    shoot("32-address-book-removed-since")

    page.fill("#asof-form input[name=q]", "Person 1")
    with page.expect_navigation():
        page.click("#asof-form button[type=submit]")
    assert "q=Person+1" in page.url
    assert page.locator("#asof-removed tbody tr").count() == 1
    page.click(f"#asof-removed a.asof-run >> text=run {run.pk}")
    assert f"/o/ORG2/runs/{run.pk}/" in page.url
