"""Two rules the shared synced scenario's convergence check would catch first, each with a test
of its own on a scenario of its own: each fails under the mistake named in its docstring."""

import uuid

from django.db import transaction

from master import processing
from master.models import AllowedRequestor, MasterConfig, ReceivedBatch
from requestor.cycle import run_cycle
from requestor.export import build_export
from requestor.models import RequestorConfig
from tests.engine.helpers import queued
from transport import wire
from transport.constants import MessageKind
from transport.inbox import pump


def test_a_reply_never_holds_the_requestors_own_entries(scenario):
    """Mistake: answering a requestor with every entry, its own included. (A scenario of its
    own, not the synced one: that one's convergence check would catch the mistake first.)"""
    for org in scenario.orgs.values():
        run_cycle(org.config.pk)
    pump()
    for name in ("ORG1", "ORG2", "ORG3"):
        org = scenario[name]
        RequestorConfig.objects.get(pk=org.config.pk).import_all_recipients()
        with transaction.atomic():
            master = MasterConfig.objects.select_for_update().get()
            requestor = AllowedRequestor.objects.get(organization_name=name)
            batch = ReceivedBatch.objects.create(
                requestor=requestor, batch=uuid.uuid4(), parts=1, received_parts=[1]
            )
            processing.send_reply(master, requestor, batch)
            master.save(update_fields=["sequence"])
        [reply] = queued(kind=MessageKind.REPLY, recipient=requestor.address)
        document = wire.decode(bytes(reply.payload))
        origins = {entry.origin for entry in document.entries}
        assert document.full and origins == {"ORG1", "ORG2", "ORG3"} - {name}, name
        reply.delete()


def test_a_recipient_exactly_at_the_trust_threshold_is_exported(scenario):
    """Mistake: a trust level below the threshold only (< instead of <=), in the full export
    (a query) or in the incremental one (a check per row)."""
    org2 = scenario["ORG2"]  # threshold 50
    RequestorConfig.objects.filter(pk=org2.config.pk).update(requestor_usn=1)
    at = org2.add(alias="at50", display_name="At The Threshold", trust_level=50)
    above = org2.add(alias="at51", display_name="Above The Threshold", trust_level=51)

    incremental = build_export(RequestorConfig.objects.get(pk=org2.config.pk))
    RequestorConfig.objects.get(pk=org2.config.pk).export_all_recipients()
    full = build_export(RequestorConfig.objects.get(pk=org2.config.pk))

    for export in (incremental, full):
        ops = {c["id"]: c["op"] for doc, _ in export.parts for c in doc["changes"]}
        assert ops.get(str(at.guid)) == "upsert", export.full
        assert ops.get(str(above.guid)) in (None, "delete"), export.full
