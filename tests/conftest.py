"""Suite-wide test setup. Fixtures of one area live in that area's conftest.py."""

import json
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from hypothesis import settings as hypothesis_settings

# No time limit per example: on a loaded CI machine a slow example is not a failure. Under
# mutmut (thousands of short runs), fewer examples per property.
hypothesis_settings.register_profile("interorg", deadline=None)
hypothesis_settings.register_profile("mutate", deadline=None, max_examples=25)
hypothesis_settings.load_profile("mutate" if "MUTANT_UNDER_TEST" in os.environ else "interorg")


def pytest_collection_modifyitems(config, items):
    """Tests marked `postgres` need row locks and real concurrency: skip them on SQLite."""
    # (bin/mutate-quick names its few modules most telling first: their order is kept.)
    if "MUTANT_UNDER_TEST" in os.environ and "INTERORG_MUTATE_QUICK" not in os.environ:
        _by_module(items)
    if connection.vendor == "postgresql":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (DATABASE_URL=postgres://...)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def _by_module(items) -> None:
    """Under mutmut, which names a mutant's tests in no particular order: each module's tests
    together (its module fixtures are built once, not again at every switch), the quickest
    modules first (a mutant is usually killed sooner), as timed by mutmut's own statistics."""
    try:
        durations = json.loads(Path("mutmut-stats.json").read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        durations = {}
    modules: dict[str, float] = {}
    for item in items:
        module = item.nodeid.partition("::")[0]
        modules[module] = modules.get(module, 0.0) + durations.get(item.nodeid, 0.0)
    position = {item.nodeid: index for index, item in enumerate(sorted(items, key=_place))}
    items.sort(key=lambda item: (modules[item.nodeid.partition("::")[0]], position[item.nodeid]))


def _place(item) -> tuple:
    path, line, _name = item.location
    return path, line or 0, item.nodeid


@pytest.fixture(autouse=True)
def no_task_dispatch(settings):
    """Tests pump the outbox and inbox themselves: queuing a message sends no Celery task.
    (tests/workers/ runs real workers, which get INTERORG_DISPATCH_TASKS=true of their own.)"""
    settings.INTERORG_DISPATCH_TASKS = False


@pytest.fixture(scope="session")
def django_db_modify_db_settings(request, django_db_modify_db_settings_parallel_suffix):
    """On SQLite, a test database in a file next to the configured one instead of in memory:
    the worker processes of tests/workers/ must open the same database."""
    database = settings.DATABASES["default"]
    name = str(database["NAME"])
    if not database["ENGINE"].endswith("sqlite3") or database.get("TEST", {}).get("NAME"):
        return
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    path = Path(name)
    worker = getattr(request.config, "workerinput", {}).get("workerid")
    suffix = f"_{worker}" if worker else ""
    test_name = path.with_name(f"test_{path.stem}{suffix}{path.suffix}")
    database.setdefault("TEST", {})["NAME"] = str(test_name)


if os.environ.get("INTERORG_TEST_DB_TEMPLATE"):

    @pytest.fixture(scope="session")
    def django_db_setup(django_db_blocker):
        """A private copy of an already migrated SQLite database instead of migrating one: `make
        mutate` starts thousands of short test sessions, and migrating is most of each."""
        from django.db import connections

        fd, copy = tempfile.mkstemp(prefix="interorg-test-", suffix=".sqlite3")
        os.close(fd)
        shutil.copyfile(os.environ["INTERORG_TEST_DB_TEMPLATE"], copy)
        with django_db_blocker.unblock():
            connections.close_all()
            settings.DATABASES["default"]["NAME"] = copy
            connections["default"].settings_dict["NAME"] = copy
        try:
            yield
        finally:
            with django_db_blocker.unblock():
                connections.close_all()
            os.unlink(copy)


@pytest.fixture
def real_sqlite_limit(db, monkeypatch):
    """Django assumes SQLite's historic 999 variables per statement and splits bulk writes
    accordingly; the SQLite library in use allows far more, and so does PostgreSQL: query-count
    tests use the real limit, or bulk writes would be split by the number of rows."""
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        limit = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        monkeypatch.setattr(connection.features, "max_query_params", limit)
