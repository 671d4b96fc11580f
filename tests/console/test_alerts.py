"""Alert e-mails (console.alerts): one mail per state change and one per recovery, sent over a
real SMTP conversation to a recording relay on loopback; the events on the Alerts and Runs
pages and in the API; who may see and change the recipients."""

import email
import email.policy
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from console import alerts, tasks
from console.constants import ConsoleRole
from console.models import AlertEvent, AlertSettings
from directory import changes
from master import quarantine
from master.models import AllowedRequestor
from requestor import verify
from requestor.constants import RunStatus
from requestor.models import Run, Verification
from tests.console.conftest import logged_in, make_user, token_client
from tests.engine.helpers import cycle, synced_fixtures
from tests.mail.conftest import Relay, free_port
from transport import holds
from transport.models import Hold

synced_base, synced_scenario = synced_fixtures()

CONSOLE = "https://interorg.example.com"


@pytest.fixture
def unstarted_relay(settings):
    """Django's SMTP backend pointed at a recording relay on a loopback port, which is not
    listening until the test starts it."""
    relay = Relay(free_port())
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = relay.controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 10
    settings.DEFAULT_FROM_EMAIL = "interorg-sync@hub.example"
    settings.INTERORG_CONSOLE_URL = CONSOLE
    settings.INTERORG_ALERT_HOLD_DOWN_MINUTES = 0
    yield relay
    relay.stop()


@pytest.fixture
def relay(unstarted_relay):
    return unstarted_relay.start()


@pytest.fixture
def people(synced_scenario):
    """ORG2's administrator and operator, ORG3's administrator and ORG1's (the hub's)."""
    org = {name: synced_scenario[name].organization for name in ("ORG1", "ORG2", "ORG3")}
    return {
        "alice": make_user(
            "alice", {org["ORG2"]: ConsoleRole.ADMINISTRATOR}, email="alice@org2.example"
        ),
        "oscar": make_user(
            "oscar", {org["ORG2"]: ConsoleRole.OPERATOR}, email="oscar@org2.example"
        ),
        "mallory": make_user(
            "mallory", {org["ORG3"]: ConsoleRole.ADMINISTRATOR}, email="mallory@org3.example"
        ),
        "hank": make_user(
            "hank", {org["ORG1"]: ConsoleRole.ADMINISTRATOR}, email="hank@org1.example"
        ),
    }


@pytest.fixture
def world(synced_scenario, people, unstarted_relay):
    """The synced organizations, checked once: all ok, nobody told anything."""
    assert alerts.check_alerts() == []
    assert AlertEvent.objects.count() == 0
    return synced_scenario


def mails(relay) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(r.data, policy=email.policy.default) for r in relay.received]


def subjects(relay) -> list[str]:
    return [mail["Subject"] for mail in mails(relay)]


def states(events) -> list[tuple[str, str, str]]:
    return [(e.organization.name, e.previous_state, e.state) for e in events]


def cut_off(name: str) -> None:
    """The master refuses the organization's messages: its runs fail."""
    AllowedRequestor.objects.filter(organization_name=name).update(enabled=False)


def reconnect(name: str) -> None:
    AllowedRequestor.objects.filter(organization_name=name).update(enabled=True)


def test_it_mails_once_when_an_organization_starts_failing_and_once_when_it_recovers(world, relay):
    cut_off("ORG2")
    run = cycle(world["ORG2"])
    assert run.status == RunStatus.FAILED

    events = alerts.check_alerts()

    assert states(events) == [("ORG2", "ok", "failing")]
    assert relay.received[0].rcpt_tos == ["alice@org2.example"]
    mail = mails(relay)[0]
    assert mail["Subject"] == "[InterOrg Sync] ORG2 is failing"
    assert mail["From"] == "interorg-sync@hub.example"
    assert mail["Auto-Submitted"] == "auto-generated"
    text = mail.get_content()
    assert run.error in text and "State: failing (was ok)" in text
    assert f"{CONSOLE}/o/ORG2/" in text and f"{CONSOLE}/o/ORG2/alerts/" in text
    event = AlertEvent.objects.get()
    assert event.sent_at and event.attempts == 1 and event.error == ""
    assert event.recipients == ["alice@org2.example"]

    # Further checks and further failed runs change nothing: no second mail.
    cycle(world["ORG2"])
    assert alerts.check_alerts() == [] and alerts.check_alerts() == []
    assert len(relay.received) == 1

    reconnect("ORG2")
    assert cycle(world["ORG2"]).status == RunStatus.OK
    events = alerts.check_alerts()

    assert states(events) == [("ORG2", "failing", "ok")]
    assert subjects(relay) == ["[InterOrg Sync] ORG2 is failing", "[InterOrg Sync] ORG2 recovered"]
    assert "It was failing since" in mails(relay)[1].get_content()
    assert alerts.check_alerts() == []
    assert len(relay.received) == 2


def test_it_sends_nothing_while_every_organization_syncs(world, relay):
    for name in ("ORG1", "ORG2", "ORG3", "ORG2"):
        cycle(world[name])
        assert alerts.check_alerts() == []

    assert relay.received == []
    assert set(AlertSettings.objects.values_list("state", flat=True)) == {"ok"}


def test_disabling_a_requestor_or_setting_one_up_tells_nobody(world, relay):
    world["ORG2"].config.enabled = False
    world["ORG2"].config.save()
    Run.objects.filter(config=world["ORG3"].config).delete()  # as if just set up

    assert alerts.check_alerts() == []

    rows = dict(AlertSettings.objects.values_list("organization__name", "state"))
    assert rows == {"ORG1": "ok", "ORG2": "disabled", "ORG3": "never ran"}
    assert relay.received == []


def test_leaving_a_problem_for_a_calm_state_other_than_ok_is_mailed_too(world, relay):
    cut_off("ORG2")
    cycle(world["ORG2"])
    alerts.check_alerts()
    world["ORG2"].config.enabled = False
    world["ORG2"].config.save()

    events = alerts.check_alerts()

    assert [e.subject for e in events] == ["ORG2 is disabled, no longer failing"]
    assert "It was failing since" in events[0].reason
    assert "The requestor is disabled." in events[0].reason
    assert len(relay.received) == 2


def test_a_new_state_is_mailed_once_it_has_lasted_the_hold_down(world, relay, settings):
    settings.INTERORG_ALERT_HOLD_DOWN_MINUTES = 5
    now = timezone.now()
    cut_off("ORG2")
    cycle(world["ORG2"])

    assert alerts.check_alerts(now) == []
    assert alerts.check_alerts(now + timedelta(minutes=4)) == []
    row = AlertSettings.objects.get(organization__name="ORG2")
    assert (row.state, row.pending_state) == ("ok", "failing")
    events = alerts.check_alerts(now + timedelta(minutes=5))

    assert states(events) == [("ORG2", "ok", "failing")]
    assert subjects(relay) == ["[InterOrg Sync] ORG2 is failing"]
    row.refresh_from_db()
    assert (row.state, row.pending_state, row.state_since) == ("failing", "", now)


def test_a_state_that_does_not_last_the_hold_down_mails_nobody(world, relay, settings):
    settings.INTERORG_ALERT_HOLD_DOWN_MINUTES = 5
    now = timezone.now()
    cut_off("ORG2")
    cycle(world["ORG2"])
    alerts.check_alerts(now)
    reconnect("ORG2")
    cycle(world["ORG2"])

    assert alerts.check_alerts(now + timedelta(minutes=2)) == []
    # Failing again: the hold-down starts over.
    cut_off("ORG2")
    cycle(world["ORG2"])
    assert alerts.check_alerts(now + timedelta(minutes=6)) == []

    assert relay.received == []
    row = AlertSettings.objects.get(organization__name="ORG2")
    assert (row.state, row.pending_state) == ("ok", "failing")
    assert row.pending_since == now + timedelta(minutes=6)


def test_a_held_mass_delete_alerts_the_master_and_the_requestor_then_both_recover(world, relay):
    AlertSettings.objects.filter(organization__name="ORG1").update(
        addresses=["hub-ops@org1.example"]
    )
    AllowedRequestor.objects.filter(organization_name="ORG2").update(
        delete_limit=1, delete_percent=100
    )
    org2 = world["ORG2"]
    changes.delete_recipients(org2.people[:2])
    assert cycle(org2).status == RunStatus.HELD

    events = alerts.check_alerts()

    assert states(events) == [("ORG1", "ok", "held"), ("ORG2", "ok", "held")]
    by_subject = {mail["Subject"]: mail for mail in mails(relay)}
    hub = by_subject["[InterOrg Sync] ORG1 holds an export of ORG2"]
    assert {a.addr_spec for a in hub["To"].addresses} == {
        "hub-ops@org1.example",
        "hank@org1.example",
    }
    assert "delete 2 of 3" in hub.get_content()
    assert f"{CONSOLE}/o/ORG1/held/" in hub.get_content()
    branch = by_subject["[InterOrg Sync] ORG2 has a batch held for its administrators"]
    assert "Held by the master" in branch.get_content()

    holds.approve(Hold.objects.get().pk, people_user("hank"))
    assert cycle(org2).status == RunStatus.OK
    events = alerts.check_alerts()

    assert states(events) == [("ORG1", "held", "ok"), ("ORG2", "held", "ok")]
    assert len(relay.received) == 4


def people_user(username: str):
    return get_user_model().objects.get(username=username)


def test_a_quarantine_alerts_the_master_and_its_release_recovers(world, relay):
    requestor = AllowedRequestor.objects.get(organization_name="ORG3")
    quarantine.quarantine(requestor, "Investigating a leak", people_user("hank"))

    events = alerts.check_alerts()

    assert states(events) == [("ORG1", "ok", "quarantined")]
    mail = mails(relay)[0]
    assert mail["Subject"] == "[InterOrg Sync] ORG1 quarantined ORG3"
    assert "ORG3: Investigating a leak" in mail.get_content()
    assert relay.received[0].rcpt_tos == ["hank@org1.example"]

    assert cycle(world["ORG3"]).status == RunStatus.HELD
    events = alerts.check_alerts()
    assert [e.subject for e in events] == ["ORG3 is quarantined by its master"]
    assert relay.received[1].rcpt_tos == ["mallory@org3.example"]

    quarantine.release(AllowedRequestor.objects.get(pk=requestor.pk))
    cycle(world["ORG3"])
    events = alerts.check_alerts()

    assert states(events) == [("ORG1", "quarantined", "ok"), ("ORG3", "quarantined", "ok")]
    assert subjects(relay)[2:] == [
        "[InterOrg Sync] ORG1 recovered",
        "[InterOrg Sync] ORG3 recovered",
    ]


def test_a_repair_is_mailed_once_after_its_check_proved_it(world, relay):
    org1 = world["ORG1"]
    changes.delete_recipients([org1.contacts().get(display_name="ORG2 User 1 (ORG2)")])
    cycle(org1)
    assert Verification.objects.get(config=org1.config, side="import").state == "repairing"

    # Repairing by itself tells nobody: the repair may well succeed.
    assert alerts.check_alerts() == []
    assert AlertSettings.objects.get(organization__name="ORG1").state == "repairing"
    assert cycle(org1).repair == "import"
    events = alerts.check_alerts()

    assert [(e.subject, e.state) for e in events] == [("ORG1 was repaired", "repaired")]
    text = mails(relay)[0].get_content()
    assert "What it holds of the others: a full reply restored it (1 entry)" in text
    assert alerts.check_alerts() == [] and len(relay.received) == 1
    assert AlertSettings.objects.get(organization__name="ORG1").state == "ok"


def test_a_difference_again_soon_after_a_repair_is_mailed_as_diverged(world, relay):
    org1 = world["ORG1"]
    changes.delete_recipients([org1.contacts().get(display_name="ORG2 User 1 (ORG2)")])
    cycle(org1)
    cycle(org1)
    alerts.check_alerts()
    changes.delete_recipients([org1.contacts().filter(origin_organization="ORG3").first()])

    cycle(org1)
    events = alerts.check_alerts()

    assert states(events) == [("ORG1", "ok", "diverged")]
    assert subjects(relay)[-1] == "[InterOrg Sync] ORG1 has diverged from its master"
    assert f"within {verify.REPAIR_COOLDOWN} of a repair" in mails(relay)[-1].get_content()


def test_organizations_without_a_completed_run_for_a_day_are_mailed_stale(world, relay):
    later = timezone.now() + timedelta(hours=27)

    events = alerts.check_alerts(later)

    assert states(events) == [
        ("ORG1", "ok", "stale"),
        ("ORG2", "ok", "stale"),
        ("ORG3", "ok", "stale"),
    ]
    to = {r.rcpt_tos[0]: m["Subject"] for r, m in zip(relay.received, mails(relay), strict=True)}
    assert to == {
        "hank@org1.example": "[InterOrg Sync] ORG1 is stale",
        "alice@org2.example": "[InterOrg Sync] ORG2 is stale",
        "mallory@org3.example": "[InterOrg Sync] ORG3 is stale",
    }


def test_a_relay_that_is_down_breaks_nothing_and_the_mail_goes_later(world, unstarted_relay):
    relay = unstarted_relay
    cut_off("ORG2")
    cycle(world["ORG2"])
    now = timezone.now()

    events = alerts.check_alerts(now)

    event = AlertEvent.objects.get()
    assert [e.pk for e in events] == [event.pk]
    assert event.sent_at is None and event.attempts == 1
    assert "ConnectionRefusedError" in event.error
    assert event.retry_at == now + timedelta(minutes=1)
    # Not before its time; then twice as long after each failure.
    alerts.check_alerts(now + timedelta(seconds=30))
    alerts.check_alerts(now + timedelta(minutes=1))
    event.refresh_from_db()
    assert event.attempts == 2 and event.retry_at == now + timedelta(minutes=3)

    relay.start()
    alerts.check_alerts(now + timedelta(minutes=3))

    event.refresh_from_db()
    assert event.sent_at and event.attempts == 3 and event.error == ""
    assert subjects(relay) == ["[InterOrg Sync] ORG2 is failing"]


def test_a_mail_not_sent_within_a_day_is_given_up(world, unstarted_relay):
    cut_off("ORG2")
    cycle(world["ORG2"])
    alerts.check_alerts()
    event = AlertEvent.objects.get()

    AlertEvent.objects.filter(pk=event.pk).update(at=event.at - timedelta(hours=25))
    alerts.check_alerts(event.retry_at)

    event.refresh_from_db()
    assert event.sent_at is None and event.retry_at is None and event.attempts == 2


def test_recipients_refused_for_good_are_not_asked_again(world, relay):
    relay.handler.rcpt_reply = "550 5.1.1 No such mailbox here"
    cut_off("ORG2")
    cycle(world["ORG2"])

    alerts.check_alerts()

    event = AlertEvent.objects.get()
    assert event.sent_at is None and event.retry_at is None
    assert event.error == (
        "The mail relay refused every recipient: alice@org2.example: 550 5.1.1 No such mailbox here"
    )


def test_a_later_change_replaces_a_mail_not_sent_yet(world, unstarted_relay):
    relay = unstarted_relay
    cut_off("ORG2")
    cycle(world["ORG2"])
    now = timezone.now()
    alerts.check_alerts(now)
    reconnect("ORG2")
    cycle(world["ORG2"])
    relay.start()

    alerts.check_alerts(now + timedelta(seconds=10))

    failing, recovered = AlertEvent.objects.order_by("id")
    assert (failing.sent_at, failing.retry_at) == (None, None)
    assert failing.error == "Not sent: a later alert replaced it."
    assert recovered.sent_at is not None
    assert subjects(relay) == ["[InterOrg Sync] ORG2 recovered"]


def test_nobody_to_notify_is_recorded_on_the_event(world, relay):
    AlertSettings.objects.filter(organization__name="ORG2").update(include_administrators=False)
    cut_off("ORG2")
    cycle(world["ORG2"])

    alerts.check_alerts()

    event = AlertEvent.objects.get()
    assert event.recipients == [] and event.retry_at is None
    assert event.error.startswith("Nobody to notify")
    assert relay.received == []


def test_two_checks_at_once_record_and_send_a_change_once(world, relay):
    """The second check read the settings before the first recorded the change: its
    conditional update finds the state changed and records nothing."""
    cut_off("ORG2")
    cycle(world["ORG2"])
    organization = world["ORG2"].organization
    stale_row = AlertSettings.objects.select_related("organization").get(organization=organization)
    observed = alerts.observe(organization)

    first = alerts.check_alerts()
    second = alerts.record_change(stale_row, observed, timezone.now())

    assert len(first) == 1 and second is None
    assert AlertEvent.objects.count() == 1
    # Nor is the mail sent twice by a check holding the event as it was before sending.
    event = AlertEvent.objects.get()
    event.sent_at, event.retry_at = None, first[0].at
    assert alerts.deliver(event) is False
    assert len(relay.received) == 1


def test_the_check_runs_every_minute_from_beat():
    entries = [e for e in django_settings.CELERY_BEAT_SCHEDULE.values() if "alerts" in e["task"]]

    assert entries == [
        {"task": "console.tasks.check_alerts", "schedule": 60.0, "options": {"expires": 54.0}}
    ]
    assert tasks.check_alerts.name == "console.tasks.check_alerts"


def test_the_command_checks_and_says_what_it_mailed(world, relay, capsys):
    cut_off("ORG2")
    cycle(world["ORG2"])

    call_command("check_alerts")

    out = capsys.readouterr().out
    assert "ORG2: ORG2 is failing (mailed to alice@org2.example)" in out
    assert "  ORG2: failing since" in out and "  ORG1: ok" in out


def test_the_queries_of_a_check_do_not_grow_with_the_recipients(world, relay):
    def queries_of_a_failing_check(org_name: str) -> int:
        cut_off(org_name)
        cycle(world[org_name])
        with CaptureQueriesContext(connection) as captured:
            assert len(alerts.check_alerts()) == 1
        return len(captured)

    few = queries_of_a_failing_check("ORG2")
    organization = world["ORG3"].organization
    for number in range(30):
        make_user(
            f"admin{number}",
            {organization: ConsoleRole.ADMINISTRATOR},
            email=f"admin{number}@org3.example",
        )
    AlertSettings.objects.filter(organization=organization).update(
        addresses=[f"list{number}@org3.example" for number in range(20)]
    )
    many = queries_of_a_failing_check("ORG3")

    assert many == few
    assert len(relay.received[-1].rcpt_tos) == 51


# --- The Alerts page, the Runs page and the API -----------------------------------------------


def alerts_url(name: str = "ORG2") -> str:
    return reverse("console:alerts", kwargs={"org": name})


def api_url(name: str = "ORG2") -> str:
    return f"/api/v1/organizations/{name}/alerts/"


@pytest.fixture
def failing_event(world, relay):
    cut_off("ORG2")
    cycle(world["ORG2"])
    (event,) = alerts.check_alerts()
    return event


def test_the_alerts_page_shows_the_state_the_recipients_and_the_events(failing_event, people):
    body = logged_in(people["alice"]).get(alerts_url()).content.decode()

    assert 'id="alert-state"' in body and "state-failing" in body
    assert "alice@org2.example" in body and "oscar@org2.example" not in body
    assert "ORG2 is failing" in body and "could not reach the master" in body
    assert "sent " in body


def test_an_administrator_sets_the_recipients(world, people, relay):
    client = logged_in(people["alice"])

    response = client.post(
        alerts_url(),
        {"addresses": "ops@org2.example, Team@Org2.example\nteam@org2.example"},
    )

    assert response.status_code == 302
    row = AlertSettings.objects.get(organization__name="ORG2")
    assert row.addresses == ["ops@org2.example", "Team@Org2.example"]
    assert row.include_administrators is False
    assert row.state == "ok"  # the state last alerted is left alone
    cut_off("ORG2")
    cycle(world["ORG2"])
    alerts.check_alerts()
    assert relay.received[0].rcpt_tos == ["ops@org2.example", "Team@Org2.example"]


@pytest.mark.parametrize(
    ("addresses", "error"),
    [
        ("ops@org2.example\nnot an address", "Not an e-mail address: not an address."),
        # A NUL anywhere is refused before the page: tests/console/test_hostile_input.py.
        ("ops@org2.example\r\nBcc: x@evil.example", "Not an e-mail address: Bcc: x@evil.example."),
        ("\n".join(f"a{n}@org2.example" for n in range(51)), "At most 50 addresses"),
    ],
    ids=["not-an-address", "header-injection", "too-many"],
)
def test_bad_recipients_are_a_form_error(world, people, addresses, error):
    response = logged_in(people["alice"]).post(
        alerts_url(), {"addresses": addresses, "include_administrators": "on"}
    )

    assert response.status_code == 200
    assert error in response.content.decode().replace("&#x27;", "'")
    assert AlertSettings.objects.get(organization__name="ORG2").addresses == []


def test_an_operator_reads_the_alerts_page_but_cannot_change_it(world, people):
    client = logged_in(people["oscar"])

    page = client.get(alerts_url())
    refused = client.post(alerts_url(), {"addresses": "x@evil.example"})

    assert page.status_code == 200 and "disabled" in page.content.decode()
    assert refused.status_code == 403
    assert AlertSettings.objects.get(organization__name="ORG2").addresses == []


def test_outsiders_find_no_alerts_page_and_visitors_must_log_in(world, people, client):
    outsider = logged_in(people["mallory"])

    assert outsider.get(alerts_url()).status_code == 404
    assert outsider.post(alerts_url(), {"addresses": "x@evil.example"}).status_code == 404
    response = client.get(alerts_url())
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_the_runs_page_lists_the_state_changes(failing_event, people):
    body = logged_in(people["oscar"]).get(reverse("console:runs", args=["ORG2"])).content.decode()

    assert 'id="state-changes"' in body
    assert "ORG2 is failing" in body and "state-failing" in body


def test_the_api_shows_the_alert_settings(failing_event, people):
    body = token_client(people["oscar"]).get(api_url()).json()

    assert body == {
        "organization": "ORG2",
        "addresses": [],
        "include_administrators": True,
        "recipients": ["alice@org2.example"],
        "state": "failing",
        "reason": failing_event.reason,
        "state_since": body["state_since"],
        "pending_state": "",
        "pending_since": None,
    }


def test_an_administrator_changes_the_recipients_in_the_api(world, people):
    api = token_client(people["alice"])

    response = api.patch(api_url(), {"addresses": ["ops@org2.example"]}, format="json")

    assert response.status_code == 200
    assert response.json()["recipients"] == ["ops@org2.example", "alice@org2.example"]
    response = api.patch(api_url(), {"include_administrators": False}, format="json")
    assert response.json()["recipients"] == ["ops@org2.example"]
    row = AlertSettings.objects.get(organization__name="ORG2")
    assert (row.addresses, row.include_administrators) == (["ops@org2.example"], False)


@pytest.mark.parametrize(
    "addresses",
    [
        ["not-an-address"],
        "ops@org2.example",
        [f"a{n}@x.io" for n in range(51)],
    ],
    ids=["not-an-address", "not-a-list", "too-many"],
)
def test_bad_recipients_are_a_400_in_the_api(world, people, addresses):
    response = token_client(people["alice"]).patch(
        api_url(), {"addresses": addresses}, format="json"
    )

    assert response.status_code == 400
    assert "addresses" in response.json()
    assert AlertSettings.objects.get(organization__name="ORG2").addresses == []


def test_who_may_read_and_change_the_alert_settings_in_the_api(world, people):
    change = {"addresses": ["x@evil.example"]}

    assert token_client(people["oscar"]).patch(api_url(), change, format="json").status_code == 403
    assert token_client(people["mallory"]).get(api_url()).status_code == 404
    assert (
        token_client(people["mallory"]).patch(api_url(), change, format="json").status_code == 404
    )
    assert token_client(people["mallory"]).get(api_url("ORG3")).status_code == 200
    assert token_client(people["alice"]).get(api_url("ORG9")).status_code == 404
    assert token_client(people["alice"]).put(api_url(), change, format="json").status_code == 405
    assert APIClient().get(api_url()).status_code == 401
    assert AlertSettings.objects.get(organization__name="ORG2").addresses == []


def test_the_api_lists_the_events_of_the_users_organizations_only(failing_event, people):
    later = timezone.now() + timedelta(hours=27)
    alerts.check_alerts(later)  # ORG1 and ORG3 go stale too

    mine = token_client(people["oscar"]).get("/api/v1/alert-events/").json()["results"]
    theirs = token_client(people["mallory"])

    assert [(e["organization"], e["state"]) for e in mine] == [("ORG2", "failing")]
    assert mine[0]["subject"] == "ORG2 is failing"
    assert mine[0]["recipients"] == ["alice@org2.example"] and mine[0]["sent_at"]
    assert [e["organization"] for e in theirs.get("/api/v1/alert-events/").json()["results"]] == [
        "ORG3"
    ]
    assert theirs.get("/api/v1/alert-events/?organization=ORG2").json()["results"] == []
    assert theirs.get(f"/api/v1/alert-events/{failing_event.pk}/").status_code == 404
    assert theirs.get("/api/v1/alert-events/?state=stale").json()["count"] == 1
    assert theirs.get("/api/v1/alert-events/?state=%00").status_code == 400
    assert token_client(people["hank"]).post("/api/v1/alert-events/", {}).status_code == 405


def test_the_admin_shows_alert_settings_and_events_without_editing_them(
    failing_event, admin_client
):
    settings_row = AlertSettings.objects.get(organization__name="ORG2")
    for obj in (settings_row, failing_event):
        name = f"admin:console_{obj._meta.model_name}"
        assert admin_client.get(reverse(f"{name}_changelist")).status_code == 200
        assert admin_client.get(reverse(f"{name}_change", args=[obj.pk])).status_code == 200
        assert admin_client.get(reverse(f"{name}_add")).status_code == 403
        assert admin_client.post(reverse(f"{name}_change", args=[obj.pk]), {}).status_code == 403
    settings_row.refresh_from_db()
    assert settings_row.state == "failing"
