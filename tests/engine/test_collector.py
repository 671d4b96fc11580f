"""The cyclic garbage collector is paused while a message is processed or a cycle runs, and
resumes after, whatever the outcome (interorg_site.collector)."""

import gc

import pytest

from interorg_site.collector import collector_paused
from master import processing
from requestor import cycle, importer
from requestor.cycle import sync_all
from tests.engine.helpers import assert_converged


@pytest.fixture
def collector_on():
    """The collector running when the test starts, and running again after it."""
    gc.enable()
    yield
    gc.enable()


def recording(monkeypatch, module, name: str, seen: list) -> None:
    """Record whether the collector runs each time `module.name` is called."""
    original = getattr(module, name)

    def spy(*args, **kwargs):
        seen.append(gc.isenabled())
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)


def test_a_sync_runs_its_cycles_and_messages_with_the_collector_paused(
    scenario, monkeypatch, collector_on
):
    exports, applied, imported = [], [], []
    recording(monkeypatch, cycle, "build_export", exports)
    recording(monkeypatch, processing, "process_export", applied)
    recording(monkeypatch, importer, "apply_reply", imported)

    sync_all()

    assert_converged(scenario)
    assert exports and applied and imported
    assert not any(exports + applied + imported)
    assert gc.isenabled()


def test_it_resumes_after_an_error(collector_on):
    with pytest.raises(ZeroDivisionError), collector_paused():
        assert not gc.isenabled()
        _ = 1 / 0

    assert gc.isenabled()


def test_it_leaves_a_collector_paused_by_the_caller_paused(collector_on):
    gc.disable()
    with collector_paused():
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()

    assert not gc.isenabled()


def test_nested_pauses_resume_only_at_the_outermost_end(collector_on):
    with collector_paused():
        with collector_paused():
            pass
        assert not gc.isenabled()

    assert gc.isenabled()
