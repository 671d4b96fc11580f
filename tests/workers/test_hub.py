"""The hub benchmark's path (bench.hub, W6) on two real Celery workers over Redis: every
requestor due at once, as beat sends them, until each organization holds exactly the others'
recipients; then every organization changes some recipients at once."""

import pytest

from bench import hub
from master.models import LedgerEntry
from transport.constants import Status
from transport.models import Message

ORGANIZATIONS, RECIPIENTS, CHANGES = 5, 10, 2


@pytest.fixture
def hub_workers(celery_processes, redis_broker):
    built = hub.build_hub(ORGANIZATIONS, RECIPIENTS)
    processes = celery_processes(redis_broker)
    processes.worker("w1", concurrency=1)
    processes.worker("w2", concurrency=1)
    return built, processes, hub.Broker("redis", redis_broker.url, "celery")


def sync(broker, done) -> int:
    return hub.sync_rounds(hub.schedule_entries(), broker, done, timeout=120).count


def test_it_converges_exactly_and_carries_a_storm_to_every_organization(hub_workers):
    built, processes, broker = hub_workers
    assert len(hub.schedule_entries()) == ORGANIZATIONS

    sync(broker, lambda: not hub.holdings_problems())

    assert hub.holdings_problems() == {}, processes.logs()
    assert hub.names_match()
    marker = "Storm title"
    assert hub.change_recipients(CHANGES, marker) == ORGANIZATIONS * CHANGES
    expected = (ORGANIZATIONS - 1) * CHANGES
    sync(broker, lambda: set(hub.storm_arrivals(marker).values()) == {expected})

    arrived = hub.storm_arrivals(marker)
    assert arrived == {config.organization.name: expected for config in built.configs}
    assert hub.holdings_problems() == {}
    failed = Message.objects.filter(status__in=[Status.FAILED, Status.REJECTED])
    assert list(failed.values_list("error", flat=True)) == []
    usns = list(LedgerEntry.objects.order_by("usn").values_list("usn", flat=True))
    assert usns == list(range(1, len(usns) + 1)), "master USNs skipped or taken twice"
    # Both workers took part.
    for name in ("w1", "w2"):
        assert "succeeded in" in processes.log(name), name


def test_it_reports_what_is_missing(db):
    """The check is not blind: before any sync, every organization and the master are named."""
    built = hub.build_hub(ORGANIZATIONS, RECIPIENTS)
    problems = hub.holdings_problems()
    assert set(problems) == {"master", *(config.organization.name for config in built.configs)}
    assert problems["ORG02"] == f"holds 0 contacts (0 right), expected {4 * RECIPIENTS}"
