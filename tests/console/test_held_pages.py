"""The Held batches page and API: what the guard holds, approving and rejecting it, quarantine
and release of a requestor, and who may do each."""

import io

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from console.constants import ConsoleRole
from directory import changes
from directory.models import Organization, Recipient
from master.models import AllowedRequestor, GlobalEntry
from requestor.constants import RunStatus
from tests.console.conftest import logged_in, make_user, token_client
from tests.engine.helpers import add_many, cycle, synced_fixtures
from transport.models import Hold

API = "/api/v1"


def _thirty_in_org2(scenario):
    add_many(scenario["ORG2"], 27)


synced_base, synced_scenario = synced_fixtures(prepare=_thirty_in_org2)


@pytest.fixture
def held(synced_scenario):
    """ORG2 deleted 8 of its 30 people; the master ORG1 holds the export (limit 5)."""
    AllowedRequestor.objects.filter(organization_name="ORG2").update(delete_limit=5)
    org2 = synced_scenario["ORG2"].organization
    people = list(Recipient.objects.filter(organization=org2).exportable().order_by("pk")[:8])
    changes.delete_recipients(people)
    run = cycle(synced_scenario["ORG2"])
    assert run.status == RunStatus.HELD
    synced_scenario.gone = [person.display_name for person in people]
    return synced_scenario


def user(name: str, org: str, role: str = ConsoleRole.ADMINISTRATOR):
    return make_user(name, {Organization.objects.get(name=org): role})


def live_at_master() -> int:
    return GlobalEntry.objects.filter(origin="ORG2", deleted=False).count()


def test_it_shows_a_held_batch_with_who_how_many_and_whom(held):
    body = logged_in(user("hub", "ORG1")).get("/o/ORG1/held/").content.decode()

    assert 'id="held-pending"' in body
    assert "<strong>ORG2</strong>" in body and "<strong>8</strong> of 30" in body
    assert all(f"{name} (ORG2)" in body for name in held.gone)
    assert 'name="approve"' in body and 'name="reject"' in body


def test_operators_see_it_without_the_buttons_and_cannot_decide(held):
    client = logged_in(user("watcher", "ORG1", ConsoleRole.OPERATOR))
    body = client.get("/o/ORG1/held/").content.decode()
    hold = Hold.objects.get()

    assert 'id="held-pending"' in body and 'name="approve"' not in body
    assert client.post(f"/o/ORG1/held/{hold.pk}/approve/").status_code == 403
    assert client.post(f"/o/ORG1/held/{hold.pk}/reject/").status_code == 403
    assert Hold.objects.get().decision == Hold.Decision.PENDING


def test_outsiders_find_nothing(held):
    client = logged_in(user("branch", "ORG2"))
    hold = Hold.objects.get()

    assert client.get("/o/ORG1/held/").status_code == 404
    assert client.post(f"/o/ORG1/held/{hold.pk}/approve/").status_code == 404
    assert Hold.objects.get().decision == Hold.Decision.PENDING


def test_an_administrator_approves_in_the_console_and_the_deletes_go_through(held):
    admin = user("hub", "ORG1")
    hold = Hold.objects.get()

    response = logged_in(admin).post(f"/o/ORG1/held/{hold.pk}/approve/", follow=True)

    assert "Approved" in response.content.decode()
    hold.refresh_from_db()
    assert (hold.decision, hold.decided_by) == (Hold.Decision.APPROVED, admin)
    assert live_at_master() == 22
    cycle(held["ORG3"])
    assert not any(name.startswith(tuple(held.gone)) for name in held["ORG3"].contact_names())


def test_an_administrator_rejects_in_the_console_and_nothing_is_deleted(held):
    before = held["ORG3"].contact_names()
    hold = Hold.objects.get()

    response = logged_in(user("hub", "ORG1")).post(f"/o/ORG1/held/{hold.pk}/reject/", follow=True)

    assert "Rejected" in response.content.decode()
    assert Hold.objects.get().decision == Hold.Decision.REJECTED
    cycle(held["ORG3"])
    assert held["ORG3"].contact_names() == before
    assert live_at_master() == 30


def test_a_hold_decided_twice_says_so(held):
    client = logged_in(user("hub", "ORG1"))
    hold = Hold.objects.get()
    client.post(f"/o/ORG1/held/{hold.pk}/reject/")

    response = client.post(f"/o/ORG1/held/{hold.pk}/approve/", follow=True)

    assert "decided already" in response.content.decode()
    assert Hold.objects.get().decision == Hold.Decision.REJECTED


def test_the_console_quarantines_and_releases_a_requestor(synced_scenario):
    client = logged_in(user("hub", "ORG1"))
    requestor = AllowedRequestor.objects.get(organization_name="ORG3")

    client.post(f"/o/ORG1/master/requestors/{requestor.pk}/quarantine/", {"reason": "Audit"})
    requestor.refresh_from_db()
    assert requestor.quarantined and requestor.quarantine_reason == "Audit"
    assert cycle(synced_scenario["ORG3"]).status == RunStatus.HELD
    dashboard = client.get("/").content.decode()
    assert "quarantined" in dashboard and "Audit" in dashboard

    response = client.post(f"/o/ORG1/master/requestors/{requestor.pk}/release/", follow=True)

    assert "1 waiting message(s) applied" in response.content.decode()
    assert not AllowedRequestor.objects.get(pk=requestor.pk).quarantined


def test_the_quarantine_reason_refuses_a_nul_byte(synced_scenario):
    client = logged_in(user("hub", "ORG1"))
    requestor = AllowedRequestor.objects.get(organization_name="ORG3")

    response = client.post(
        f"/o/ORG1/master/requestors/{requestor.pk}/quarantine/", {"reason": "a\x00b"}, follow=True
    )

    assert response.status_code == 400 and "NUL" in response.content.decode()
    assert not AllowedRequestor.objects.get(pk=requestor.pk).quarantined


# --- API ----------------------------------------------------------------------------------------


def test_the_api_lists_held_batches_to_the_masters_users_only(held):
    hub = token_client(user("hub", "ORG1", ConsoleRole.OPERATOR))
    branch = token_client(user("branch", "ORG2"))

    rows = hub.get(f"{API}/held-batches/", {"decision": "pending"}).json()["results"]
    assert [(r["organization"], r["peer"], r["deletes"], r["live"]) for r in rows] == [
        ("ORG1", "ORG2", 8, 30)
    ]
    assert rows[0]["waiting"] == 1 and len(rows[0]["sample"]) == 8
    assert branch.get(f"{API}/held-batches/").json()["results"] == []
    assert branch.get(f"{API}/held-batches/{rows[0]['id']}/").status_code == 404
    assert APIClient().get(f"{API}/held-batches/").status_code == 401


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_the_api_decides_for_administrators_only(held, decision):
    hold = Hold.objects.get()
    url = f"{API}/held-batches/{hold.pk}/{decision}/"

    assert token_client(user("watcher", "ORG1", ConsoleRole.OPERATOR)).post(url).status_code == 403
    assert token_client(user("branch", "ORG2")).post(url).status_code == 404
    assert Hold.objects.get().decision == Hold.Decision.PENDING

    admin = token_client(user("hub", "ORG1"))
    response = admin.post(url)

    assert response.status_code == 200, response.content
    assert response.json()["decision"] == {"approve": "approved", "reject": "rejected"}[decision]
    assert response.json()["decided_by"] == "hub"
    assert live_at_master() == (22 if decision == "approve" else 30)
    assert admin.post(url).status_code == 409


def test_the_api_quarantines_and_releases_a_requestor(synced_scenario):
    admin = token_client(user("hub", "ORG1"))
    requestor = AllowedRequestor.objects.get(organization_name="ORG3")
    url = f"{API}/allowed-requestors/{requestor.pk}"

    body = admin.post(f"{url}/quarantine/", {"reason": "Audit"}, format="json").json()
    assert (body["quarantined"], body["quarantine_reason"]) == (True, "Audit")
    status = admin.get(f"{API}/organizations/ORG1/status/").json()
    assert [r["quarantined"] for r in status["requestors"] if r["organization_name"] == "ORG3"] == [
        True
    ]

    body = admin.post(f"{url}/release/").json()
    assert body["quarantined"] is False


def test_the_api_refuses_a_release_while_a_batch_is_held(held):
    admin = token_client(user("hub", "ORG1"))
    requestor = AllowedRequestor.objects.get(organization_name="ORG2")

    response = admin.post(f"{API}/allowed-requestors/{requestor.pk}/release/")

    assert response.status_code == 409 and "Held batches" in response.json()["detail"]
    assert AllowedRequestor.objects.get(pk=requestor.pk).quarantined


def test_the_api_refuses_quarantine_by_operators_and_outsiders(synced_scenario):
    requestor = AllowedRequestor.objects.get(organization_name="ORG3")
    url = f"{API}/allowed-requestors/{requestor.pk}/quarantine/"

    assert token_client(user("watcher", "ORG1", ConsoleRole.OPERATOR)).post(url).status_code == 403
    assert token_client(user("branch", "ORG3")).post(url).status_code == 404
    assert not AllowedRequestor.objects.get(pk=requestor.pk).quarantined


def test_the_api_sets_the_guard_thresholds_and_refuses_bad_ones(synced_scenario):
    admin = token_client(user("hub", "ORG1"))
    requestor = AllowedRequestor.objects.get(organization_name="ORG3")
    url = f"{API}/allowed-requestors/{requestor.pk}/"

    response = admin.patch(url, {"delete_limit": 50, "delete_percent": 10}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["delete_limit"], response.json()["delete_percent"]) == (50, 10)

    response = admin.patch(url, {"delete_percent": 101}, format="json")
    assert response.status_code == 400 and "delete_percent" in response.json()
    assert AllowedRequestor.objects.get(pk=requestor.pk).delete_percent == 10


@pytest.mark.parametrize("path", ["/o/OR%00G1/", "/o/ORG1%00/held/", "/o/%00/explain/?q=x"])
def test_a_nul_byte_in_an_organization_name_finds_nothing(synced_scenario, path):
    client = logged_in(user("hub", "ORG1"))
    assert client.get(path).status_code == 400


# --- Command line -------------------------------------------------------------------------------


def held_command(*args) -> str:
    out = io.StringIO()
    call_command("held", *args, stdout=out)
    return out.getvalue()


def test_the_command_lists_and_approves_a_held_batch(held):
    hub = user("hub", "ORG1")
    hold = Hold.objects.get()

    listing = held_command("list", "ORG1")
    assert f"{hold.pk}  " in listing and "ORG1 holds an export of ORG2: 8 of 30" in listing
    assert "ORG2 is quarantined on ORG1" in listing

    assert "Approved" in held_command("approve", str(hold.pk), "--user", "hub")

    hold.refresh_from_db()
    assert (hold.decision, hold.decided_by) == (Hold.Decision.APPROVED, hub)
    assert live_at_master() == 22
    with pytest.raises(CommandError, match="decided already"):
        held_command("reject", str(hold.pk))


def test_the_command_rejects_and_refuses_what_is_not_there(held):
    hold = Hold.objects.get()

    assert "Rejected" in held_command("reject", str(hold.pk))

    assert Hold.objects.get().decision == Hold.Decision.REJECTED and live_at_master() == 30
    with pytest.raises(CommandError, match="no held batch 999"):
        held_command("approve", "999")
    with pytest.raises(CommandError, match="No console user"):
        held_command("approve", str(hold.pk), "--user", "nobody")


def test_the_command_quarantines_and_releases_a_requestor(synced_scenario):
    assert "ORG3 is quarantined on ORG1" in held_command(
        "quarantine", "ORG1", "org3", "--reason", "Audit  now"
    )
    requestor = AllowedRequestor.objects.get(organization_name="ORG3")
    assert requestor.quarantined and requestor.quarantine_reason == "Audit now"

    assert "released; 0 message(s) applied" in held_command("release", "ORG1", "ORG3")

    assert not AllowedRequestor.objects.get(pk=requestor.pk).quarantined
    with pytest.raises(CommandError, match="has no requestor 'ORG9'"):
        held_command("quarantine", "ORG1", "ORG9")
    with pytest.raises(CommandError, match="NUL"):
        held_command("quarantine", "ORG1", "ORG3", "--reason", "a\x00b")
    with pytest.raises(CommandError, match="No organization named 'ORG7'"):
        held_command("list", "ORG7")


def test_what_waits_behind_a_hold_is_one_count_for_the_console_and_the_api(held):
    """transport.holds.waiting is the one count: the held messages from the sender while the
    hold is pending, none once it is decided."""
    from transport import holds

    hold = Hold.objects.get()
    admin = token_client(user("hub", "ORG1"))
    url = f"{API}/held-batches/{hold.pk}/"

    assert holds.waiting(hold) == 1 == admin.get(url).json()["waiting"]
    assert "1 message" in logged_in(user("hub2", "ORG1")).get("/o/ORG1/held/").content.decode()

    admin.post(f"{url}reject/")
    hold.refresh_from_db()
    assert holds.waiting(hold) == 0 == admin.get(url).json()["waiting"]
