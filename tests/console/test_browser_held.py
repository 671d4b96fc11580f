"""A held mass delete in headless Chromium: ORG2 deletes its people, the master ORG1 holds the
export; its administrator sees the batch on the Held batches page and approves it (the contacts
go away everywhere) or rejects it (they stay). Screenshots are saved with the other browser
tests' (var/screenshots/<timestamp>/)."""

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
from transport.inbox import pump
from transport.models import Hold

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="/usr/bin/chromium is missing: run bin/ensure-browser (apt-get install chromium)",
    ),
    pytest.mark.django_db(transaction=True),
]


def org2_people_at(org) -> list[str]:
    return sorted(
        Recipient.objects.filter(
            organization=org.organization, origin_organization="ORG2", hidden_at=None
        ).values_list("display_name", flat=True)
    )


def held_mass_delete():
    """A synced world where ORG2's export deleting both its people waits at the master."""
    world = make_world()
    make_user("hub", {world.org1.organization: ConsoleRole.ADMINISTRATOR})
    sync_all()
    assert org2_people_at(world.org3) == ["Person 0 of ORG2", "Person 1 of ORG2"]
    AllowedRequestor.objects.filter(organization_name="ORG2").update(delete_limit=1)
    changes.delete_recipients(Recipient.objects.filter(organization=world.org2.organization))
    run = run_cycle(world.org2.config.pk)
    pump()
    assert Run.objects.get(pk=run.pk).status == RunStatus.HELD
    return world


def open_held_batches(page, shoot, name: str) -> None:  # noqa: F811
    log_in(page, "hub")
    assert "1 held" in page.locator("table.dashboard").inner_text()
    page.click("a.badge-held")
    table = page.locator("#held-pending").inner_text()
    assert "ORG2" in table and "2 of 2" in table
    assert "Person 0 of ORG2" in table and "Person 1 of ORG2" in table
    shoot(name)


def sync_org3(world) -> None:
    run_cycle(world.org3.config.pk)
    pump()


def test_an_administrator_approves_a_held_mass_delete(page, shoot):  # noqa: F811
    world = held_mass_delete()
    open_held_batches(page, shoot, "20-held-batch")

    page.click("button[name=approve]")

    assert page.locator(".flash").inner_text().startswith("Approved")
    assert page.locator("#held-none").is_visible()
    assert "Approved" in page.locator("#held-decided").inner_text()
    shoot("21-held-batch-approved")
    assert Hold.objects.get().decided_by.username == "hub"
    sync_org3(world)
    assert org2_people_at(world.org3) == []


def test_an_administrator_rejects_a_held_mass_delete(page, shoot):  # noqa: F811
    world = held_mass_delete()
    open_held_batches(page, shoot, "22-held-batch-before-reject")

    page.click("button[name=reject]")

    assert page.locator(".flash").inner_text().startswith("Rejected")
    assert "Rejected" in page.locator("#held-decided").inner_text()
    shoot("23-held-batch-rejected")
    sync_org3(world)
    assert org2_people_at(world.org3) == ["Person 0 of ORG2", "Person 1 of ORG2"]
