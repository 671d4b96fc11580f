"""`make run`'s process runner (bin/run-procfile) as a person uses it: the Procfile's console,
worker, beat and SMTP receiver start, the address and login appear in a box once the console
answers, and Ctrl-C stops every process, with exit code 0 and nothing left running."""

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from interorg_site.env import current_database_url
from tests.mail.conftest import free_port
from tests.workers.conftest import ROOT

RUNNER = [sys.executable, str(ROOT / "bin" / "run-procfile")]
LOGIN = "Log in as admin / not-a-real-password"


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (read from /proc; they live in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            ppid = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def runner(transactional_db, tmp_path):
    port, smtp_port = free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": current_database_url(),
        "INTERORG_VAR_DIR": str(tmp_path / "var"),
        "CELERY_BROKER_URL": "filesystem://localhost/",
        "INTERORG_DISPATCH_TASKS": "true",
        "INTERORG_WEB_ADDRESS": f"127.0.0.1:{port}",
        "INTERORG_SMTPD_PORT": str(smtp_port),
    }
    process = subprocess.Popen(
        [*RUNNER, "--url", f"http://127.0.0.1:{port}/", "--login", LOGIN],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # As from a terminal: Ctrl-C goes to the runner's process group.
        start_new_session=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout] + [lines.put(None)],
        daemon=True,
    ).start()
    process.lines, process.port = lines, port
    yield process
    for pid in descendants(process.pid) | {process.pid}:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def read_until(lines: queue.Queue, text: str, seen: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in seen):
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        assert line is not None, "".join(seen)
        seen.append(line)


def test_ctrl_c_stops_every_process_cleanly(runner):
    seen: list[str] = []
    read_until(runner.lines, "Ctrl-C stops everything.", seen)

    # The box comes once the console answers, after the processes' start-up lines.
    output = "".join(seen)
    assert output.index("Starting development server") < output.index(LOGIN)
    assert f"| InterOrg Sync console: http://127.0.0.1:{runner.port}/ |" in output
    with urllib.request.urlopen(f"http://127.0.0.1:{runner.port}/healthz", timeout=10) as answer:
        assert answer.status == 200
    started = descendants(runner.pid)
    assert len(started) >= 4  # web, worker (and its pool), beat, smtpd

    os.killpg(runner.pid, signal.SIGINT)
    runner.wait(timeout=90)

    output += "".join(iter(runner.lines.get, None))
    assert runner.returncode == 0, output
    assert [pid for pid in started if alive(pid)] == []
    for name in ("web", "worker", "beat", "smtpd"):
        assert f"{name} stopped (exit code 0)" in output
    assert "Traceback" not in output
    # Each process stopped its own children: no Celery pool process was killed under it.
    assert "exited with 'signal" not in output
