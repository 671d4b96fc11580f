"""The tasks themselves, called in this process: thin wrappers with the right retry behaviour."""

from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from requestor.constants import RunStatus, Trigger
from requestor.cycle import CycleRunning, SyncError, run_cycle
from requestor.models import Run
from requestor.tasks import run_requestor_cycle
from transport import outbox
from transport.constants import Direction, Status
from transport.models import Message
from transport.tasks import deliver_message, sweep_messages


class Retried(Exception):
    def __init__(self, **kwargs):
        self.kwargs = kwargs


@pytest.fixture
def retries(monkeypatch):
    """Record what a task asks of retry() instead of sending it again."""

    def fake_retry(**kwargs):
        raise Retried(**kwargs)

    monkeypatch.setattr(deliver_message, "retry", fake_retry)
    monkeypatch.setattr(run_requestor_cycle, "retry", fake_retry)


def queued_export(scenario) -> Message:
    run_cycle(scenario["ORG2"].config.pk)
    return Message.objects.get(direction=Direction.OUTBOUND, status=Status.QUEUED)


def test_it_retries_a_delivery_when_the_message_is_due_again(scenario, monkeypatch, retries):
    message = queued_export(scenario)
    due = timezone.now() + timedelta(minutes=2)

    def temporary_failure(pk):
        Message.objects.filter(pk=pk).update(next_attempt_at=due)
        return False

    monkeypatch.setattr(outbox, "deliver", temporary_failure)

    with pytest.raises(Retried) as retried:
        deliver_message(message.pk)

    assert retried.value.kwargs["eta"] == due


def test_it_leaves_a_distant_retry_to_the_sweep(scenario, monkeypatch, retries):
    message = queued_export(scenario)

    def temporary_failure(pk):
        Message.objects.filter(pk=pk).update(next_attempt_at=timezone.now() + timedelta(hours=2))
        return False

    monkeypatch.setattr(outbox, "deliver", temporary_failure)

    assert deliver_message(message.pk) is False


def test_it_does_not_retry_a_delivered_message(scenario, retries):
    message = queued_export(scenario)

    assert deliver_message(message.pk) is True
    assert deliver_message(message.pk) is False  # a second copy of the task does nothing
    assert Message.objects.get(pk=message.pk).status == Status.SENT


def test_the_sweep_delivers_and_processes_what_no_task_took(scenario):
    run = run_cycle(scenario["ORG2"].config.pk)

    assert sweep_messages() >= 2

    assert Run.objects.get(pk=run.pk).status == RunStatus.OK
    assert not Message.objects.filter(status__in=[Status.QUEUED, Status.RECEIVED]).exists()


def test_it_records_a_scheduled_cycle_and_skips_a_disabled_requestor(scenario):
    config = scenario["ORG2"].config

    run_id = run_requestor_cycle(config.pk, Trigger.SCHEDULE)
    config.enabled = False
    config.save()

    assert Run.objects.get(pk=run_id).trigger == Trigger.SCHEDULE
    assert run_requestor_cycle(config.pk, Trigger.SCHEDULE) is None
    assert run_requestor_cycle(10**9, Trigger.SCHEDULE) is None
    assert Run.objects.count() == 1


@pytest.fixture
def config_held_by_another_cycle(transactional_db):
    """A second session holding ORG2's requestor row, as a cycle in another worker does."""
    from tests.engine.conftest import build_scenario

    scenario = build_scenario(people_per_org=1)
    config = scenario["ORG2"].config
    db = connection.settings_dict
    other = psycopg.connect(
        dbname=db["NAME"], host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"]
    )
    other.execute("SELECT 1 FROM requestor_requestorconfig WHERE id = %s FOR UPDATE", [config.pk])
    yield config
    other.rollback()
    other.close()


@pytest.mark.postgres
def test_it_refuses_a_cycle_already_running_for_the_organization(config_held_by_another_cycle):
    config = config_held_by_another_cycle

    with pytest.raises(CycleRunning, match="ORG2 is already running") as refused:
        run_cycle(config.pk, Trigger.SCHEDULE)

    assert isinstance(refused.value, SyncError)
    assert not Run.objects.exists()
    assert not Message.objects.exists()


@pytest.mark.postgres
def test_it_skips_a_scheduled_cycle_but_retries_execute_now(config_held_by_another_cycle, retries):
    config = config_held_by_another_cycle

    assert run_requestor_cycle(config.pk, Trigger.SCHEDULE) is None
    with pytest.raises(Retried) as retried:
        run_requestor_cycle(config.pk, Trigger.MANUAL)

    assert retried.value.kwargs == {"countdown": 5}
    assert not Run.objects.exists()
