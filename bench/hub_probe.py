"""Timing of the master's row lock inside the Celery workers of W6 (bench.hub).

Imported by each worker the hub benchmark starts (`celery worker --include bench.hub_probe`),
never by the application. When INTERORG_BENCH_PROBE_DIR is set, every export part the master
processes appends one line to <dir>/probe-<pid>.jsonl: how long the worker waited for the
master's row, how long it held it (until commit), and how much of that was building the reply.
"""

import json
import os
import resource
import time
from pathlib import Path

from django.db import transaction

from master import processing

FOLDER = os.environ.get("INTERORG_BENCH_PROBE_DIR")


def _record(**figures) -> None:
    figures["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with (Path(FOLDER) / f"probe-{os.getpid()}.jsonl").open("a") as out:
        out.write(json.dumps(figures) + "\n")


def _install() -> None:
    lock_master, send_reply = processing.lock_master, processing.send_reply
    state: dict = {}

    def timed_lock(address):
        start = time.perf_counter()
        master = lock_master(address)
        locked = time.perf_counter()
        state.update(waited=locked - start, locked=locked, reply=0.0)

        def committed():
            held = time.perf_counter() - state["locked"]
            _record(waited=state["waited"], held=held, reply=state["reply"], at=time.time())

        transaction.on_commit(committed)
        return master

    def timed_reply(*args, **kwargs):
        start = time.perf_counter()
        try:
            return send_reply(*args, **kwargs)
        finally:
            state["reply"] = state.get("reply", 0.0) + time.perf_counter() - start

    processing.lock_master, processing.send_reply = timed_lock, timed_reply


if FOLDER:
    _install()
