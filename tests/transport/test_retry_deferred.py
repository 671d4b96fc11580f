"""After a reply part is applied, the parts of the organization that waited for it get another
go (transport.inbox.retry_deferred): exactly those, each handed to the task that processes it."""

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections, transaction

from directory.factories import OrganizationFactory
from interorg_site.celery import app
from requestor.models import RequestorConfig
from tests.engine.conftest import MASTER_DN
from tests.transport.test_inbox import master_reply, processed, receive
from transport import inbox
from transport.constants import Direction, Status
from transport.models import Message


def test_it_hands_over_the_deferred_parts_of_the_organization_only(
    scenario, settings, monkeypatch, django_capture_on_commit_callbacks
):
    org2, org3 = scenario["ORG2"], scenario["ORG3"]
    epoch, batch = uuid.uuid4(), str(uuid.uuid4())
    RequestorConfig.objects.filter(pk=org2.config.pk).update(master_epoch=epoch)
    # ORG2 has applied a part before (processed), and one came early (deferred).
    done = processed(receive(MASTER_DN, org2.config.dn, master_reply(epoch, 0, 5, batch, 1)))
    late = processed(
        receive(MASTER_DN, org2.config.dn, master_reply(epoch, 9, 12, str(uuid.uuid4()), 2))
    )
    assert (done.status, late.status) == (Status.PROCESSED, Status.DEFERRED)
    # Tasks run: each is processed at once, in this process.
    settings.INTERORG_DISPATCH_TASKS = True
    monkeypatch.setitem(app.conf, "task_always_eager", True)

    with django_capture_on_commit_callbacks(execute=True) as tasks:
        assert inbox.retry_deferred(org3.organization.pk) == 0
        assert inbox.retry_deferred(org2.organization.pk) == 1

    assert len(tasks) == 1
    late.refresh_from_db()
    done.refresh_from_db()
    # Its task processed it again: still waiting for USNs (5, 9].
    assert (late.status, late.error) == (
        Status.DEFERRED,
        "Waiting for master USNs (5, 9] before this part.",
    )
    assert done.status == Status.PROCESSED


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_part_another_worker_finishes_meanwhile_is_not_put_back_to_wait():
    """retry_deferred reads the deferred parts, then hands them back: a part another worker
    processes in between (its own retry, say) stays as that worker left it, never received
    again (it would be applied a second time)."""
    organization = OrganizationFactory()
    part = Message.objects.create(
        direction=Direction.INBOUND,
        status=Status.DEFERRED,
        organization=organization,
        sender="a@example.org",
        recipient="b@example.org",
    )
    finishing, finished = threading.Event(), threading.Event()

    def other_worker() -> None:
        try:
            with transaction.atomic():
                Message.objects.filter(pk=part.pk).update(status=Status.PROCESSED)
                finishing.set()
                finished.wait(timeout=30)
                time.sleep(0.3)  # retry_deferred has read the part as deferred meanwhile
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        worker = pool.submit(other_worker)
        finishing.wait(timeout=30)
        finished.set()
        inbox.retry_deferred(organization.pk)  # its update waits for the worker's commit
        worker.result(timeout=30)

    part.refresh_from_db()
    assert part.status == Status.PROCESSED
