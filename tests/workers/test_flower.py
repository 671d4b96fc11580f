"""Flower, the Celery monitor, sees the workers and their tasks on either broker."""

import json
import socket
import urllib.request

from requestor.constants import Trigger
from requestor.tasks import run_requestor_cycle
from tests.workers.conftest import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api(port: int, path: str):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/{path}", timeout=5) as response:
            return json.load(response)
    except OSError:
        return None


def test_flower_shows_the_worker_and_its_tasks(broker, celery_processes, three_orgs, monkeypatch):
    processes = celery_processes(broker)
    processes.start("w1", ["worker", "-E", "-n", "w1@%h", "-l", "info"], " ready.")
    port = free_port()
    monkeypatch.setenv("FLOWER_UNAUTHENTICATED_API", "true")  # the API without a login: tests only
    processes.start(
        "flower", ["flower", "--address=127.0.0.1", f"--port={port}"], "Visit me at http"
    )

    workers = wait_for(lambda: api(port, "workers?refresh=1"), 20, "Flower to list the worker")
    assert [name.split("@")[0] for name in workers] == ["w1"]
    run_requestor_cycle.delay(three_orgs["ORG2"].config.pk, Trigger.SCHEDULE.value)
    tasks = wait_for(
        lambda: [t for t in (api(port, "tasks") or {}).values() if t["state"] == "SUCCESS"],
        20,
        "Flower to see a task succeed",
    )
    assert "requestor.tasks.run_requestor_cycle" in {task["name"] for task in tasks}
