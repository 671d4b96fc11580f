"""Execute Now through the API with real workers: the run exists at once, queued, the answer
points to it, and a script following that URL sees it go on to completion."""

from console.constants import ConsoleRole
from requestor.constants import RunStatus
from requestor.models import Run
from tests.console.conftest import make_user, token_client
from tests.workers.conftest import quiet, wait_for


def test_a_script_follows_execute_now_from_queued_to_completed(
    fs_broker, celery_processes, three_orgs, settings
):
    settings.INTERORG_DISPATCH_TASKS = True
    org2 = three_orgs["ORG2"]
    api = token_client(make_user("alice", {org2.organization: ConsoleRole.ADMINISTRATOR}))

    response = api.post(f"/api/v1/requestor-configs/{org2.config.pk}/execute-now/")

    assert response.status_code == 202
    run = Run.objects.get(config=org2.config)
    assert response["Location"].endswith(f"/api/v1/runs/{run.pk}/")
    assert response.json()["run"]["status"] == RunStatus.QUEUED
    assert api.get(response["Location"]).json()["status"] == RunStatus.QUEUED  # no worker yet

    celery_processes(fs_broker).worker()
    seen = []

    def ended():
        state = api.get(response["Location"]).json()["status"]
        if not seen or seen[-1] != state:
            seen.append(state)
        return state not in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING)

    wait_for(ended, 30, "the run to end", interval=0.05)
    assert seen[-1] == RunStatus.OK, seen
    assert set(seen) <= {RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING, RunStatus.OK}
    wait_for(quiet, 10, "the workers to go quiet")
    assert Run.objects.filter(config=org2.config).count() == 1, "the task took the run over"
    run.refresh_from_db()
    assert (run.parts_sent, run.reply_parts_applied, run.exported) == (1, 1, 3)
