"""Rule 3: master USNs are allocated under a lock held to commit, so no requestor skips one."""

import threading
import time

import pytest

from master import processing
from master.models import LedgerEntry, MasterConfig
from requestor.cycle import run_cycle, sync_all
from tests.engine.conftest import build_scenario
from tests.engine.helpers import in_thread
from transport import inbox
from transport.constants import Direction, Status
from transport.models import Message
from transport.outbox import deliver_pending

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def lock_master_without_lock(address: str) -> MasterConfig:
    """What a naive master would do: read the USN counter without holding the row."""
    return MasterConfig.objects.filter(processing._by_address(address)).get()


def process_three_exports_while_one_holds_its_usn(monkeypatch):
    """ORG1's export takes a master USN and stays uncommitted while ORG2's and ORG3's exports
    are processed by other workers; then everything syncs again."""
    scenario = build_scenario()
    sync_all()
    scenario["ORG1"].add(display_name="Late Committer")
    scenario["ORG2"].add(display_name="Early Committer")
    for name in ("ORG1", "ORG2", "ORG3"):
        run_cycle(scenario[name].config.pk)
    deliver_pending()
    inbound = {
        message.sender: message.pk
        for message in Message.objects.filter(direction=Direction.INBOUND, status=Status.RECEIVED)
    }

    holding, release = threading.Event(), threading.Event()
    send_reply = processing.send_reply

    def send_reply_then_hold(master, requestor, batch, *prepared):
        send_reply(master, requestor, batch, *prepared)
        if requestor.organization_name == "ORG1":
            holding.set()
            release.wait(10)

    monkeypatch.setattr(processing, "send_reply", send_reply_then_hold)
    first = in_thread(inbox.process_safely, inbound[scenario["ORG1"].config.dn])
    assert holding.wait(10), "ORG1's export never reached its reply"
    others = [
        in_thread(inbox.process_safely, inbound[scenario[name].config.dn])
        for name in ("ORG2", "ORG3")
    ]
    # Leave the other workers time to run ahead, as they would if nothing held them back.
    time.sleep(0.5)
    release.set()
    for thread in [first, *others]:
        thread.join(20)
    monkeypatch.undo()
    sync_all()
    return scenario


def assert_nothing_skipped(scenario):
    failed = Message.objects.filter(status__in=[Status.FAILED, Status.REJECTED])
    assert list(failed.values_list("error", flat=True)) == []
    usns = list(LedgerEntry.objects.order_by("usn").values_list("usn", flat=True))
    assert usns == list(range(1, len(usns) + 1))
    assert "Late Committer" in scenario["ORG3"].contact_names()
    assert "Early Committer (ORG2)" in scenario["ORG3"].contact_names()
    assert "Late Committer" in scenario["ORG2"].contact_names()


def test_it_serializes_master_usns_with_commit(monkeypatch):
    scenario = process_three_exports_while_one_holds_its_usn(monkeypatch)

    assert_nothing_skipped(scenario)


@pytest.mark.xfail(strict=True, reason="without the row lock two workers take the same USN")
def test_it_would_fail_without_the_lock(monkeypatch):
    monkeypatch.setattr(processing, "lock_master", lock_master_without_lock)

    scenario = process_three_exports_while_one_holds_its_usn(monkeypatch)

    assert_nothing_skipped(scenario)
