"""The dashboard's states (ok / failing / stale), USN lag, last run counts and recent errors,
in the console and in the API."""

from datetime import timedelta

from django.utils import timezone

from console import status
from console.status import State
from directory import changes
from master.models import MasterConfig
from requestor.constants import RunStatus, Trigger
from requestor.cycle import run_cycle, sync_all
from requestor.models import Run, Verification
from tests.console.conftest import add_history
from transport.inbox import pump


def line(world, name="ORG2"):
    org = next(o for o in (world.org1, world.org2, world.org3) if o.name == name)
    return status.organization_status(org.organization)


def test_it_calls_a_requestor_that_never_ran_stale(world):
    s = line(world)
    assert (s.state, s.reason) == (State.STALE, "Never ran.")


def test_it_calls_a_synced_requestor_ok_with_no_lag(world):
    sync_all(max_rounds=3)
    s = line(world)
    assert s.state == State.OK
    assert s.lag == 0
    assert s.last_run.status == RunStatus.OK


def test_it_measures_the_lag_behind_the_master(world):
    sync_all(max_rounds=3)
    person = world.org3.organization.recipients.exportable().first()
    person.title = "Changed"
    changes.save_recipient(person)
    run_cycle(world.org3.config.pk)
    pump()
    assert line(world).lag == 1


def test_it_calls_a_failed_run_failing(world):
    Run.objects.create(
        config=world.org2.config,
        trigger=Trigger.SCHEDULE,
        status=RunStatus.FAILED,
        error="OperationalError: disk full",
    )
    s = line(world)
    assert (s.state, s.reason) == (State.FAILING, "OperationalError: disk full")
    assert s.errors[0].text == "OperationalError: disk full"


def test_it_calls_an_unanswered_export_failing(world):
    run = Run.objects.create(
        config=world.org2.config, trigger=Trigger.SCHEDULE, status=RunStatus.WAITING
    )
    Run.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(hours=2))
    assert line(world).state == State.FAILING
    assert line(world).reason.startswith("No reply from the master for 60 minutes")


def test_it_calls_an_old_success_stale(world):
    run = Run.objects.create(
        config=world.org2.config, trigger=Trigger.SCHEDULE, status=RunStatus.OK
    )
    old = timezone.now() - timedelta(days=3)
    Run.objects.filter(pk=run.pk).update(started_at=old, finished_at=old)
    assert line(world).state == State.STALE


def test_it_lists_rejected_messages_among_recent_errors(world):
    add_history(world.org2)
    errors = line(world).errors
    assert any("may not send" in e.text and "rejected" in e.source for e in errors)


def test_it_shows_the_masters_view_of_each_requestor(world):
    sync_all(max_rounds=3)
    s = line(world, "ORG1")
    views = {v.requestor.organization_name: v for v in s.requestors}
    assert set(views) == {"ORG1", "ORG2", "ORG3"}
    assert views["ORG2"].requestor.last_contact_at is not None
    assert views["ORG2"].unsent == 0


def test_it_shows_states_and_counts_on_the_dashboard(world, operator_client):
    sync_all(max_rounds=3)
    body = operator_client.get("/").content.decode()
    assert 'class="state state-ok"' in body
    assert "↑ " in body


def test_it_serves_the_dashboard_over_the_api(world, operator_api):
    sync_all(max_rounds=3)
    rows = operator_api.get("/api/v1/status/").json()
    assert [row["organization"] for row in rows] == ["ORG2"]
    assert rows[0]["state"] == "ok" and rows[0]["lag"] == 0
    assert rows[0]["last_run"]["status"] == "ok"
    one = operator_api.get("/api/v1/organizations/ORG2/status/").json()
    assert one["master_usn"] == rows[0]["master_usn"]
    # The master ORG2 sends to is ORG1's: its USN, from which the lag is counted.
    master = MasterConfig.objects.get(organization__name="ORG1")
    assert one["master_current_usn"] == master.usn
    assert one["lag"] == master.usn - one["master_usn"] == 0


def test_it_shows_when_each_copy_was_verified_in_sync(world, operator_client, operator_api):
    sync_all(max_rounds=3)

    body = operator_client.get("/").content.decode()
    row = operator_api.get("/api/v1/organizations/ORG2/status/").json()

    assert 'class="state state-verified"' in body and "verified in sync" in body
    assert row["sync"]["state"] == "verified" and row["sync"]["at"]
    assert {side["side"]: side["state"] for side in row["sync"]["sides"]} == {
        "import": "verified",
        "export": "verified",
    }


def test_it_shows_a_diverged_copy_as_such_with_the_reason(world, operator_client, operator_api):
    sync_all(max_rounds=3)
    Verification.objects.filter(config=world.org2.config, side="import").update(
        state="diverged", detail="The repair did not restore equality: a…/6 here, b…/7 there."
    )

    s = line(world)
    body = operator_client.get("/").content.decode()
    row = operator_api.get("/api/v1/organizations/ORG2/status/").json()

    assert s.state == State.DIVERGED
    assert s.reason.startswith("What it holds of the others: The repair did not restore")
    assert 'class="state state-diverged"' in body and "did not restore equality" in body
    assert (row["state"], row["sync"]["state"]) == ("diverged", "diverged")
