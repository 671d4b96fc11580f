"""An organization whose exchange with its master fails looks failing, with the reason, on the
dashboard, its overview page and in the API: an export refused by the master or bounced by a
relay, a reply of the master refused here, a run waiting past the time its reply was due.
Mail refused from strangers is an error to list, not a failure of the organization. The next
run is the same on every page and in the API."""

from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from django.utils.html import escape

from console import status
from console.status import State
from master.models import AllowedRequestor
from requestor import schedule
from requestor.constants import RunStatus, Trigger
from requestor.cycle import run_cycle, sync_all
from requestor.models import Run
from tests.console.conftest import add_history
from transport.bounces import Bounce, apply_bounce
from transport.constants import Direction, MessageKind, Status
from transport.inbox import pump
from transport.models import Message


def waiting_since(world, minutes: int) -> Run:
    """A synced requestor whose latest run has waited `minutes` for the master's reply."""
    sync_all(max_rounds=3)
    earlier = Run.objects.filter(config=world.org2.config)
    earlier.update(started_at=timezone.now() - timedelta(hours=1))
    run = Run.objects.create(
        config=world.org2.config, trigger=Trigger.SCHEDULE, status=RunStatus.WAITING
    )
    Run.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(minutes=minutes))
    return run


def shown_everywhere(world, client, api, state: str, reason: str) -> None:
    """The state and its reason, alike on the dashboard, the overview page and in the API."""
    org = world.org2.organization
    line = status.organization_status(org)
    assert (line.state, line.reason) == (state, reason)
    dashboard = client.get("/").content.decode()
    assert f'class="state state-{state}"' in dashboard
    assert escape(reason)[:60] in dashboard
    overview = client.get(f"/o/{org.name}/").content.decode()
    assert f'class="state state-{state}"' in overview
    assert escape(reason) in overview
    one = api.get(f"/api/v1/organizations/{org.name}/status/").json()
    assert (one["state"], one["reason"]) == (state, reason)
    [row] = [r for r in api.get("/api/v1/status/").json() if r["organization"] == org.name]
    assert (row["state"], row["reason"]) == (state, reason)


def test_an_export_the_master_refuses_is_failing_with_the_reason(
    world, operator_client, operator_api
):
    sync_all(max_rounds=3)
    AllowedRequestor.objects.filter(organization_name="ORG2").update(enabled=False)

    run = Run.objects.get(pk=run_cycle(world.org2.config.pk).pk)
    pump()
    run.refresh_from_db()

    assert run.status == RunStatus.FAILED
    assert "is disabled on this master" in run.error
    shown_everywhere(world, operator_client, operator_api, State.FAILING, run.error)


def test_a_bounced_export_is_failing_with_the_reason(world, operator_client, operator_api):
    sync_all(max_rounds=3)
    run = run_cycle(world.org2.config.pk)
    sent = Message.objects.get(
        direction=Direction.OUTBOUND, kind=MessageKind.EXPORT, batch=run.batch
    )
    Message.objects.filter(pk=sent.pk).update(message_id="<export-1@org2.example>")
    bounce = Bounce("<export-1@org2.example>", "failed", "5.1.1", "no such mailbox", "relay")

    assert apply_bounce(bounce, sent.sender) is not None

    run.refresh_from_db()
    assert "Bounced by relay: 5.1.1 no such mailbox" in run.error
    shown_everywhere(world, operator_client, operator_api, State.FAILING, run.error)


def test_a_reply_refused_here_is_failing_at_once_with_the_reason(
    world, operator_client, operator_api
):
    sync_all(max_rounds=3)
    config = world.org2.config
    config.import_container = None
    config.save()

    run = run_cycle(config.pk)
    pump()

    refused = Message.objects.get(
        direction=Direction.INBOUND, kind=MessageKind.REPLY, summary__in_reply_to=str(run.batch)
    )
    assert refused.status == Status.REJECTED
    assert Run.objects.get(pk=run.pk).status == RunStatus.WAITING
    reason = f"The master's reply to run {run.pk} was refused here: {refused.error}"
    shown_everywhere(world, operator_client, operator_api, State.FAILING, reason)


def test_a_run_waiting_past_the_stalled_run_time_is_failing(
    world, operator_client, operator_api, settings
):
    settings.INTERORG_STALLED_RUN_MINUTES = 10
    run = waiting_since(world, 11)

    reason = status.organization_status(world.org2.organization).reason
    assert reason.startswith(f"No reply from the master for 10 minutes to run {run.pk}")
    shown_everywhere(world, operator_client, operator_api, State.FAILING, reason)


@pytest.mark.parametrize("minutes", [5, 9])
def test_a_run_waiting_within_the_stalled_run_time_is_not_failing(world, settings, minutes):
    settings.INTERORG_STALLED_RUN_MINUTES = 10
    waiting_since(world, minutes)

    assert status.organization_status(world.org2.organization).state == State.OK


def test_mail_refused_from_a_stranger_is_listed_but_not_a_failure(world):
    sync_all(max_rounds=3)
    add_history(world.org2)

    line = status.organization_status(world.org2.organization)

    assert line.state == State.OK
    assert any("may not send" in error.text for error in line.errors)


def test_pages_and_the_api_give_the_same_next_run(world, operator_client, operator_api):
    config = world.org2.config
    schedule.set_every_minutes(config, 5)
    config.schedule_tasks.update(last_run_at=timezone.now() - timedelta(days=1))
    before = timezone.now()

    one = operator_api.get("/api/v1/organizations/ORG2/status/").json()

    assert before <= datetime.fromisoformat(one["next_run"]) <= timezone.now()
    assert one["next_run_note"] == ""
    for url in ("/", "/o/ORG2/", "/o/ORG2/requestor/schedule/"):
        assert ">due now</time>" in operator_client.get(url).content.decode(), url

    config.schedule_tasks.update(enabled=False)

    one = operator_api.get("/api/v1/organizations/ORG2/status/").json()
    assert (one["next_run"], one["next_run_note"]) == (None, "schedule disabled")
    for url in ("/", "/o/ORG2/", "/o/ORG2/requestor/schedule/"):
        assert "schedule disabled</span>" in operator_client.get(url).content.decode(), url
