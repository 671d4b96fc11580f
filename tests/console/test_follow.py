"""Execute Now, Import All and Export All record their run at once and lead to it: the API answers
202 with the run's URL, the console goes to the run page, and the run page follows the run through
a small JSON status endpoint. A queued run is taken over by the cycle that starts it, a second
press points to it, and one no worker ever starts is closed by housekeeping.

With workers, the tasks cross a real (filesystem) broker; no worker runs here, so the run stays
queued until the test starts the cycle itself, as a worker would."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from requestor.constants import RunStatus, Trigger
from requestor.cycle import run_cycle
from requestor.housekeeping import fail_stalled_runs
from requestor.models import RequestorConfig, Run
from requestor.tasks import run_requestor_cycle
from tests.console.conftest import logged_in
from tests.workers.conftest import Broker, fs_broker, use_broker  # noqa: F401 (fixtures)
from transport.inbox import pump

API = "/api/v1"
BUTTONS = ["execute-now", "import-all", "export-all"]


@pytest.fixture
def workers(settings, fs_broker: Broker, tmp_path) -> Path:  # noqa: F811 (the fixture above)
    """Cycles are queued for workers on a filesystem broker; return its queue folder."""
    settings.INTERORG_DISPATCH_TASKS = True
    return tmp_path / "broker" / "queue"


def press(api, world, button: str = "execute-now"):
    return api.post(f"{API}/requestor-configs/{world.org2.config.pk}/{button}/")


def run_url(run: Run) -> str:
    return f"http://testserver{API}/runs/{run.pk}/"


def page_url(world, run: Run) -> str:
    return reverse("console:run", kwargs={"org": world.org2.name, "pk": run.pk})


def status_url(world, run: Run) -> str:
    return reverse("console:run-status", kwargs={"org": world.org2.name, "pk": run.pk})


# --- the API ------------------------------------------------------------------------------------


def test_the_api_answers_202_with_the_finished_run_without_workers(world, admin_api):
    response = press(admin_api, world)

    assert response.status_code == 202
    run = Run.objects.get(config=world.org2.config)
    assert run.status == RunStatus.OK
    assert response["Location"] == run_url(run)
    body = response.json()
    assert (body["id"], body["url"], body["run"]["status"]) == (run.pk, run_url(run), "ok")
    assert admin_api.get(response["Location"]).json()["status"] == "ok"


@pytest.mark.parametrize("button", BUTTONS)
def test_the_api_records_the_run_queued_at_once_with_workers(world, admin_api, workers, button):
    response = press(admin_api, world, button)

    assert response.status_code == 202
    run = Run.objects.get(config=world.org2.config)
    assert (run.status, run.trigger, run.requested_by.username) == (
        RunStatus.QUEUED,
        Trigger.API,
        "alice",
    )
    assert response["Location"] == run_url(run)
    assert response.json()["run"]["status"] == "queued"
    followed = admin_api.get(response["Location"]).json()
    assert (followed["id"], followed["status"]) == (run.pk, "queued")
    assert len(list(workers.iterdir())) == 1, "one task for the workers"


def test_a_second_execute_now_points_to_the_queued_run(world, admin_api, workers):
    first = press(admin_api, world)
    second = press(admin_api, world)

    assert second.status_code == 202
    assert second["Location"] == first["Location"]
    assert "already" in second.json()["detail"]
    assert Run.objects.count() == 1
    assert len(list(workers.iterdir())) == 1, "no second task"


def test_a_second_execute_now_points_to_the_running_run(world, admin_api, workers):
    running = Run.objects.create(config=world.org2.config, trigger="schedule", status="running")
    response = press(admin_api, world)
    assert response["Location"] == run_url(running)
    assert Run.objects.count() == 1


def test_import_all_while_a_cycle_runs_queues_its_own_run(world, admin_api, workers):
    """The running cycle may have read the USNs before the reset: the reset gets its own run."""
    running = Run.objects.create(config=world.org2.config, trigger="schedule", status="running")
    response = press(admin_api, world, "import-all")
    queued = Run.objects.exclude(pk=running.pk).get()
    assert (queued.status, response["Location"]) == (RunStatus.QUEUED, run_url(queued))


def test_the_task_takes_the_queued_run_over(world, admin_api, administrator, workers):
    run = Run.objects.get(pk=press(admin_api, world).json()["id"])

    # What the worker does with the task on the broker.
    run_requestor_cycle.apply(
        args=(world.org2.config.pk, Trigger.API, administrator.pk, "", run.pk)
    ).get()

    run.refresh_from_db()
    assert (run.status, run.parts_sent, run.attempts) == (RunStatus.WAITING, 1, 1)
    pump()
    run.refresh_from_db()
    assert (run.status, run.trigger, run.requested_by) == (RunStatus.OK, Trigger.API, administrator)
    assert Run.objects.count() == 1


def test_a_task_whose_run_another_cycle_did_does_nothing(world, admin_api, administrator, workers):
    run = Run.objects.get(pk=press(admin_api, world).json()["id"])
    assert run_cycle(world.org2.config.pk).pk == run.pk  # e.g. `manage.py sync_now`
    run_requestor_cycle.apply(
        args=(world.org2.config.pk, Trigger.API, administrator.pk, "", run.pk)
    ).get()
    assert Run.objects.count() == 1
    assert Run.objects.get().status == RunStatus.WAITING


def test_the_task_of_a_disabled_requestors_schedule_leaves_the_queued_run(
    world, admin_api, workers
):
    run = Run.objects.get(pk=press(admin_api, world).json()["id"])
    RequestorConfig.objects.filter(pk=world.org2.config.pk).update(enabled=False)
    run_requestor_cycle.apply(args=(world.org2.config.pk, Trigger.SCHEDULE)).get()
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED


# --- the console --------------------------------------------------------------------------------


def test_execute_now_leads_to_the_run_page(world, admin_client_):
    response = admin_client_.post(reverse("console:execute-now", kwargs={"org": world.org2.name}))
    run = Run.objects.get(config=world.org2.config)
    assert response.status_code == 302
    assert response["Location"] == page_url(world, run)


@pytest.mark.parametrize("button", ["import-all", "export-all"])
def test_a_reset_leads_to_its_queued_run_page(world, admin_client_, workers, button):
    url = reverse(f"console:{button}", kwargs={"org": world.org2.name})
    response = admin_client_.post(url, {"confirm": "yes"}, follow=True)
    run = Run.objects.get(config=world.org2.config)
    assert response.redirect_chain == [(page_url(world, run), 302)]
    page = response.content.decode()
    assert "Queued for a worker" in page
    assert f'data-status-url="{status_url(world, run)}"' in page


def test_the_status_endpoint_reports_the_progress(world, admin_client_):
    run = Run.objects.create(
        config=world.org2.config,
        trigger=Trigger.MANUAL,
        status=RunStatus.WAITING,
        parts_sent=2,
        reply_parts=3,
        reply_parts_applied=1,
        imported=5,
        updated=2,
        deleted=1,
    )
    response = admin_client_.get(status_url(world, run))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    body = response.json()
    assert {k: body[k] for k in ("id", "status", "status_display", "finished")} == {
        "id": run.pk,
        "status": "waiting",
        "status_display": "Waiting for the master's reply",
        "finished": False,
    }
    assert {k: body[k] for k in ("parts_sent", "reply_parts", "reply_parts_applied")} == {
        "parts_sent": 2,
        "reply_parts": 3,
        "reply_parts_applied": 1,
    }
    assert (body["imported"], body["updated"], body["deleted"], body["error"]) == (5, 2, 1, "")
    assert "1 of 3" in body["progress"]

    Run.objects.filter(pk=run.pk).update(status=RunStatus.OK, reply_parts_applied=3)
    assert admin_client_.get(status_url(world, run)).json()["finished"] is True


def test_the_status_endpoint_is_not_for_outsiders(world, outsider_client):
    run = Run.objects.create(config=world.org2.config, trigger=Trigger.MANUAL)
    assert outsider_client.get(status_url(world, run)).status_code in (403, 404)


def test_the_status_endpoint_sends_anonymous_visitors_to_log_in(world, anonymous_client):
    run = Run.objects.create(config=world.org2.config, trigger=Trigger.MANUAL)
    response = anonymous_client.get(status_url(world, run))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_an_operator_reads_the_status_of_a_run(world, operator):
    run = Run.objects.create(config=world.org2.config, trigger=Trigger.MANUAL)
    assert logged_in(operator).get(status_url(world, run)).json()["status"] == "running"


# --- housekeeping -------------------------------------------------------------------------------


def test_a_queued_run_no_worker_started_fails_after_the_bound(world, settings):
    settings.INTERORG_QUEUED_RUN_MINUTES = 10
    lost = Run.objects.create(config=world.org2.config, trigger="manual", status="queued")
    Run.objects.filter(pk=lost.pk).update(started_at=timezone.now() - timedelta(minutes=11))
    fresh = Run.objects.create(config=world.org3.config, trigger="manual", status="queued")

    assert fail_stalled_runs() == 1

    lost.refresh_from_db()
    assert lost.status == RunStatus.FAILED and lost.finished_at is not None
    assert "No worker started this run within 10 minutes" in lost.error
    assert Run.objects.get(pk=fresh.pk).status == RunStatus.QUEUED
