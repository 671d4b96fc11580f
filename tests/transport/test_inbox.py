"""The inbox and local delivery: messages are archived, checked, dispatched, never half-applied."""

import threading
import uuid
from dataclasses import replace

import pytest
from django.db import connection, transaction

from directory.models import Organization, Recipient
from master import processing
from master.models import AllowedRequestor, GlobalEntry, LedgerEntry, MasterConfig, ReceivedBatch
from requestor.export import build_export
from requestor.models import Conflict, RequestorConfig, Run
from tests.engine.conftest import MASTER_DN
from tests.transport.documents import NOW_MS, export_doc, gz, reply_doc
from transport import inbox, outbox, registry, signing, wire
from transport.constants import AddressType, Direction, Status
from transport.exceptions import MessageDeferred, MessageRejected
from transport.models import Message

NOWHERE_DN = "/o=ORG9/ou=Site9/cn=Recipients/cn=MASTER"


def state() -> dict:
    """Everything a message may change outside the archive's inbound rows."""
    tables = [
        Organization,
        Recipient,
        MasterConfig,
        AllowedRequestor,
        ReceivedBatch,
        GlobalEntry,
        LedgerEntry,
        RequestorConfig,
        Run,
        Conflict,
    ]
    snapshot = {model.__name__: list(model.objects.order_by("pk").values()) for model in tables}
    # A refused message is counted against its sender (master.quarantine), and only that.
    for row in snapshot["AllowedRequestor"]:
        del row["refusals"]
    snapshot["outbound"] = list(
        Message.objects.filter(direction=Direction.OUTBOUND).order_by("pk").values()
    )
    return snapshot


def export_of(org) -> tuple[dict, bytes]:
    """The single part of the organization's next export, as its requestor would send it."""
    [(document, payload)] = build_export(org.config).parts
    return document, payload


def receive(sender: str, recipient: str, payload: bytes) -> Message:
    """Deliver a payload as the agent at `sender` would: signed with its organization's key."""
    signature, key = signing.sign(registry.organization_at(sender), recipient, payload)
    return outbox.receive(
        sender, recipient, payload, AddressType.EX, signature=signature, key_fingerprint=key
    )


def use_export_handler(monkeypatch, handle) -> None:
    """Let `handle` stand in for the master's handler of exports for one test."""
    master = registry.agent_at(MASTER_DN)
    monkeypatch.setitem(registry._agents, "export", replace(master, handle=handle))


def processed(message: Message) -> Message:
    """Run the inbox and return the message as it left it."""
    inbox.process_pending()
    message.refresh_from_db()
    return message


class Looping(BaseException):
    """Raised by a test handler called again for the same message: process_pending loops."""


# --- rejections -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"From: someone\r\n\r\nnot an attachment", "The attachment is not valid gzip data"),
        (gz(b"\xff\xfe"), "The attachment is not valid UTF-8"),
        (gz(b"{oops"), "The attachment is not valid JSON"),
        (gz(b"[]"), "The document must be a JSON object."),
        (wire.encode(export_doc(protocol=2)), "Protocol version 2 is not supported"),
        (wire.encode(export_doc(part=2, parts=1)), "Part 2 of 1 does not exist."),
    ],
    ids=["not-gzip", "not-utf8", "not-json", "array", "protocol-2", "part-2-of-1"],
)
def test_it_rejects_a_malformed_payload_and_changes_nothing(scenario, payload, error):
    before = state()
    message = receive(scenario["ORG2"].config.dn, MASTER_DN, payload)

    message = processed(message)

    assert message.status == Status.REJECTED
    assert message.error.startswith(error)
    assert message.attempts == 1 and message.processed_at is not None
    assert bytes(message.payload) == payload
    assert state() == before


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"sequence": 2**63}, "export.sequence: Input should be less than or equal to"),
        ({"part": 2**31, "parts": 2**31}, "export.part: Input should be less than or equal to"),
        ({"usn_through": 2**64}, "export.usn_through: Input should be less than or equal to"),
    ],
    ids=["sequence", "part", "usn"],
)
def test_it_rejects_numbers_the_archive_could_not_store(scenario, change, error):
    document, _ = export_of(scenario["ORG2"])
    document.update(change)
    before = state()

    message = processed(receive(document["sender"]["address"], MASTER_DN, wire.encode(document)))

    assert message.status == Status.REJECTED
    assert error in message.error
    assert state() == before


def test_it_rejects_a_reply_key_the_database_could_not_store(scenario):
    org2 = scenario["ORG2"]
    # A full reply from the start: everything else about it is applicable.
    document = reply_doc(sender={"organization": "ORG1", "address": MASTER_DN}, full=True, after=0)
    document["entries"][0]["key"] = "ORG3:\x00"
    before = state()

    message = processed(receive(MASTER_DN, org2.config.dn, wire.encode(document)))

    assert message.status == Status.REJECTED
    assert message.error.startswith("Invalid document: reply.entries.0.key: ")
    assert state() == before


def test_it_rejects_a_document_with_an_extra_field_naming_the_field(scenario):
    document, _ = export_of(scenario["ORG2"])
    document["changes"][0]["attrs"]["custom_attribute_1"] = "secret"
    before = state()

    message = processed(receive(document["sender"]["address"], MASTER_DN, wire.encode(document)))

    assert message.status == Status.REJECTED
    assert "export.changes.0.attrs.custom_attribute_1.[key]" in message.error
    assert state() == before


def test_it_rejects_an_unknown_document_type(scenario):
    document, _ = export_of(scenario["ORG2"])
    document["type"] = "status"
    before = state()

    message = processed(receive(document["sender"]["address"], MASTER_DN, wire.encode(document)))

    assert message.status == Status.REJECTED
    assert "Input tag 'status' found using 'type' does not match" in message.error
    assert message.kind == "unknown"
    assert state() == before


def test_it_rejects_a_document_type_no_agent_takes(scenario, monkeypatch):
    monkeypatch.delitem(registry._agents, "export")
    document, payload = export_of(scenario["ORG2"])
    before = state()

    message = processed(receive(document["sender"]["address"], MASTER_DN, payload))

    assert message.status == Status.REJECTED
    assert message.error == f"No agent of this installation receives mail at {MASTER_DN}."
    assert state() == before


def test_it_rejects_a_document_whose_sender_is_not_the_envelope_sender(scenario):
    org2, org3 = scenario["ORG2"], scenario["ORG3"]
    document, payload = export_of(org2)
    before = state()

    message = processed(receive(org3.config.dn, MASTER_DN, payload))

    assert message.status == Status.REJECTED
    assert message.error == (
        f"The document says it is from {org2.config.dn}, "
        f"but the message came from {org3.config.dn}."
    )
    # The archive keeps what the message claimed to be.
    assert message.kind == "export"
    assert message.batch == uuid.UUID(document["batch"])
    assert message.summary["sender"]["address"] == org2.config.dn
    assert message.summary["count"] == len(document["changes"]) > 0
    # Filed with the organization it came to, whose administrators (and quarantine) see it.
    assert message.organization_id == scenario.master.organization_id
    assert state() == before


def test_it_rejects_a_document_of_another_type_than_its_agent_takes(scenario):
    """The master, trusted by a requestor, sends it an export: a requestor takes replies."""
    org2 = scenario["ORG2"]
    document = export_doc(sender={"organization": "ORG1", "address": MASTER_DN})
    before = state()

    message = processed(receive(MASTER_DN, org2.config.dn, wire.encode(document)))

    assert (message.status, message.error) == (
        Status.REJECTED,
        f"The agent at {org2.config.dn} takes reply messages, not export.",
    )
    assert (message.kind, message.organization_id) == ("export", org2.organization.pk)
    assert state() == before


def test_it_accepts_the_envelope_sender_in_another_case(scenario):
    org2 = scenario["ORG2"]
    _, payload = export_of(org2)

    message = processed(receive(org2.config.dn.upper(), MASTER_DN, payload))

    assert message.status == Status.PROCESSED, message.error


@pytest.mark.parametrize("recipient", ["nowhere", "requestor-of-org3"])
def test_it_rejects_a_message_to_an_address_no_agent_owns(scenario, recipient):
    address = NOWHERE_DN if recipient == "nowhere" else scenario["ORG3"].config.dn
    org2 = scenario["ORG2"]
    _, payload = export_of(org2)
    before = state()

    message = processed(receive(org2.config.dn, address, payload))

    assert message.status == Status.REJECTED
    if recipient == "nowhere":
        assert message.error == f"No agent of this installation receives mail at {address}."
    else:
        assert message.error.startswith(f"{org2.config.dn} may not send to {address}")
    assert state() == before


def test_it_rejects_a_reply_to_the_master(scenario):
    master = scenario.master
    document = reply_doc(sender={"organization": "ORG1", "address": MASTER_DN})
    before = state()

    message = processed(receive(MASTER_DN, master.address, wire.encode(document)))

    assert message.status == Status.REJECTED
    assert message.error.startswith(f"{MASTER_DN} may not send to {master.address}")
    assert state() == before


def test_it_keeps_no_trace_of_a_handler_that_writes_then_rejects(scenario, monkeypatch):
    def handle(message, document):
        processing.handle_export(message, document)
        assert GlobalEntry.objects.exists()  # it did write
        raise MessageRejected("Changed my mind.")

    use_export_handler(monkeypatch, handle)
    org2 = scenario["ORG2"]
    _, payload = export_of(org2)
    before = state()

    message = processed(receive(org2.config.dn, MASTER_DN, payload))

    assert (message.status, message.error) == (Status.REJECTED, "Changed my mind.")
    assert state() == before


def test_it_keeps_no_trace_of_a_handler_that_writes_then_defers(scenario, monkeypatch):
    def handle(message, document):
        processing.handle_export(message, document)
        raise MessageDeferred("Not yet.")

    use_export_handler(monkeypatch, handle)
    org2 = scenario["ORG2"]
    _, payload = export_of(org2)
    before = state()

    message = processed(receive(org2.config.dn, MASTER_DN, payload))

    assert (message.status, message.error) == (Status.DEFERRED, "Not yet.")
    assert message.organization_id == scenario.master.organization_id
    assert state() == before


def test_it_rejects_an_export_from_a_requestor_the_master_does_not_allow(scenario):
    org2 = scenario["ORG2"]
    AllowedRequestor.objects.filter(address=org2.config.dn).update(enabled=False)
    _, payload = export_of(org2)
    before = state()

    message = processed(receive(org2.config.dn, MASTER_DN, payload))

    assert message.status == Status.REJECTED
    assert message.error == f"The requestor {org2.config.dn} is disabled on this master."
    assert state() == before


# --- crashes --------------------------------------------------------------------------------


def test_it_marks_a_message_failed_when_its_handler_crashes_and_rolls_back(scenario, monkeypatch):
    calls = []

    def handle(message, document):
        if calls:
            raise Looping(f"handler called again for message {message.pk}")
        calls.append(message.pk)
        processing.handle_export(message, document)
        assert GlobalEntry.objects.exists() and Message.objects.filter(status=Status.QUEUED)
        raise RuntimeError("disk on fire")

    use_export_handler(monkeypatch, handle)
    org2 = scenario["ORG2"]
    _, payload = export_of(org2)
    before = state()
    message = receive(org2.config.dn, MASTER_DN, payload)

    handled = inbox.process_pending()

    message.refresh_from_db()
    assert handled == 1
    assert calls == [message.pk]
    assert message.status == Status.FAILED
    assert message.error == "Internal error, nothing was applied: RuntimeError: disk on fire"
    assert message.processed_at is not None
    assert state() == before
    assert inbox.process_pending() == 0


def test_it_goes_on_with_other_messages_after_a_crash(scenario, monkeypatch):
    org2, org3 = scenario["ORG2"], scenario["ORG3"]

    def handle(message, document):
        if document.sender.organization == "ORG2":
            raise RuntimeError("ORG2 breaks things")
        processing.handle_export(message, document)

    use_export_handler(monkeypatch, handle)
    first = receive(org2.config.dn, MASTER_DN, export_of(org2)[1])
    second = receive(org3.config.dn, MASTER_DN, export_of(org3)[1])

    assert inbox.process_pending() == 2

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == Status.FAILED
    assert second.status == Status.PROCESSED
    assert set(GlobalEntry.objects.values_list("origin", flat=True)) == {"ORG3"}


# --- duplicates -----------------------------------------------------------------------------


def test_it_rejects_a_duplicate_as_a_replay_and_changes_nothing(scenario):
    org2 = scenario["ORG2"]
    document, payload = export_of(org2)
    first = processed(receive(org2.config.dn, MASTER_DN, payload))
    assert first.status == Status.PROCESSED and first.error == ""
    assert GlobalEntry.objects.filter(origin="ORG2").count() == len(document["changes"])
    before = state()

    copy = processed(receive(org2.config.dn.upper(), MASTER_DN, payload))

    assert copy.status == Status.REJECTED
    assert copy.error.startswith("Replay: ")
    assert f"archived as message {first.pk}" in copy.error
    assert (copy.batch, copy.part) == (first.batch, first.part)
    assert state() == before
    # Mail is delivered twice now and then: a copy is no refusal, and never quarantines.
    assert AllowedRequestor.objects.get(address=org2.config.dn).refusals == 0


def test_a_message_the_inbox_is_done_with_is_never_processed_again(scenario):
    """Asked again for a message it processed, rejected or deferred (a task delivered twice, a
    sweep racing a task), the inbox does nothing: the applied export is not taken for its own
    replay, the refusal is not counted twice, the early part waits for the parts before it."""
    org2 = scenario["ORG2"]
    _, payload = export_of(org2)
    done = processed(receive(org2.config.dn, MASTER_DN, payload))
    copy = processed(receive(org2.config.dn, MASTER_DN, payload))
    epoch = uuid.uuid4()
    RequestorConfig.objects.filter(pk=org2.config.pk).update(master_epoch=epoch)
    applied = processed(
        receive(MASTER_DN, org2.config.dn, master_reply(epoch, 0, 5, str(uuid.uuid4()), 1))
    )
    early = processed(
        receive(MASTER_DN, org2.config.dn, master_reply(epoch, 9, 12, str(uuid.uuid4()), 2))
    )
    assert [m.status for m in (done, copy, applied, early)] == [
        Status.PROCESSED,
        Status.REJECTED,
        Status.PROCESSED,
        Status.DEFERRED,
    ]
    before = state()
    rows = list(Message.objects.order_by("pk").values())

    for message in (done, copy, applied, early):
        assert inbox.process_message(message.pk) is False
        assert inbox.process_message(message.pk, wait=False) is False

    assert list(Message.objects.order_by("pk").values()) == rows
    assert state() == before


def test_it_does_not_count_a_rejected_copy_as_the_original(scenario):
    org2 = scenario["ORG2"]
    allowed = AllowedRequestor.objects.filter(address=org2.config.dn)
    allowed.update(enabled=False)
    _, payload = export_of(org2)
    first = processed(receive(org2.config.dn, MASTER_DN, payload))
    assert first.status == Status.REJECTED
    allowed.update(enabled=True)

    second = processed(receive(org2.config.dn, MASTER_DN, payload))

    assert (second.status, second.error) == (Status.PROCESSED, "")
    assert GlobalEntry.objects.filter(origin="ORG2").exists()


# --- deferred messages ----------------------------------------------------------------------


def reply_entries(usns: range) -> list[dict]:
    return [
        {
            "key": f"ORG3:{uuid.UUID(int=usn)}",
            "origin": "ORG3",
            "op": "upsert",
            "kind": "mailbox",
            "usn": usn,
            "attrs": {"display_name": f"Remote {usn}", "primary_smtp": f"remote{usn}@org3.com"},
        }
        for usn in usns
    ]


def master_reply(
    epoch: uuid.UUID, after: int, through: int, batch: str, part: int, sequence: int = 0
) -> bytes:
    return wire.encode(
        reply_doc(
            sender={"organization": "ORG1", "address": MASTER_DN},
            batch=batch,
            part=part,
            parts=2,
            sequence=sequence or NOW_MS + part,
            epoch=str(epoch),
            after=after,
            through=through,
            ack=0,
            entries=reply_entries(range(after + 1, through + 1)),
        )
    )


def test_it_defers_a_part_that_comes_early_and_retries_it(scenario):
    org2 = scenario["ORG2"]
    epoch, batch = uuid.uuid4(), str(uuid.uuid4())
    RequestorConfig.objects.filter(pk=org2.config.pk).update(master_epoch=epoch)
    before = state()

    late = processed(receive(MASTER_DN, org2.config.dn, master_reply(epoch, 5, 9, batch, 2)))

    assert late.status == Status.DEFERRED
    assert late.error == "Waiting for master USNs (0, 5] before this part."
    assert late.organization_id == org2.organization.pk
    assert state() == before

    assert inbox.retry_deferred(scenario["ORG3"].organization.pk) == 0
    assert inbox.retry_deferred(org2.organization.pk) == 1
    late.refresh_from_db()
    assert late.status == Status.RECEIVED
    assert processed(late).status == Status.DEFERRED  # still nothing to fill the gap

    early = processed(receive(MASTER_DN, org2.config.dn, master_reply(epoch, 0, 5, batch, 1)))

    late.refresh_from_db()
    assert (early.status, late.status) == (Status.PROCESSED, Status.PROCESSED)
    assert late.error == ""  # applied: no longer waiting for anything
    assert org2.refresh().config.master_usn == 9
    assert org2.contact_names() == {f"Remote {usn}" for usn in range(1, 10)}


# --- local delivery -------------------------------------------------------------------------


def queue_export(org, recipient: str) -> Message:
    document, payload = export_of(org)
    return outbox.queue(org.organization.pk, org.config.dn, recipient, document, payload)


def test_it_delivers_an_ex_addressed_message_to_an_inbound_copy(scenario):
    org2 = scenario["ORG2"]
    sent = queue_export(org2, MASTER_DN)
    assert (sent.status, sent.address_type) == (Status.QUEUED, AddressType.EX)

    assert outbox.deliver_pending() == 1

    sent.refresh_from_db()
    assert (sent.status, sent.attempts, sent.error) == (Status.SENT, 1, "")
    [copy] = Message.objects.filter(direction=Direction.INBOUND)
    assert (copy.sender, copy.recipient) == (org2.config.dn, MASTER_DN)
    assert (copy.status, copy.address_type) == (Status.RECEIVED, AddressType.EX)
    assert bytes(copy.payload) == bytes(sent.payload) and copy.size == sent.size
    assert outbox.deliver_pending() == 0
    assert processed(copy).status == Status.PROCESSED


def test_it_hands_smtp_addressed_messages_to_the_smtp_sender(scenario, mailoutbox):
    org2 = scenario["ORG2"]
    document, payload = export_of(org2)
    sent = outbox.queue(
        org2.organization.pk, org2.config.address, scenario.master.address, document, payload
    )

    assert outbox.deliver_pending() == 1

    sent.refresh_from_db()
    assert (sent.status, sent.address_type) == (Status.SENT, AddressType.SMTP)
    assert [m.to for m in mailoutbox] == [[scenario.master.address]]
    assert not Message.objects.filter(direction=Direction.INBOUND).exists()


def test_it_fails_an_ex_address_no_local_agent_owns(scenario):
    sent = queue_export(scenario["ORG2"], NOWHERE_DN)

    assert outbox.deliver_pending() == 1

    sent.refresh_from_db()
    assert sent.status == Status.FAILED
    assert sent.error == (
        f"No agent of this installation has the EX address {NOWHERE_DN}; "
        "use the agent's SMTP address for another installation."
    )
    assert not Message.objects.filter(direction=Direction.INBOUND).exists()
    assert outbox.deliver_pending() == 0


def test_it_runs_a_whole_exchange_through_delivery_and_the_inbox(scenario):
    org2 = scenario["ORG2"]
    queue_export(org2, MASTER_DN)

    # The export and the reply, each delivered and processed; then nothing moves.
    assert inbox.pump() == 4
    assert inbox.pump() == 0

    statuses = set(Message.objects.values_list("direction", "status"))
    assert statuses == {
        (Direction.OUTBOUND, Status.SENT),
        (Direction.INBOUND, Status.PROCESSED),
    }
    # ORG2's export reached the master, and the master's reply brought ORG1's and ORG3's people.
    assert GlobalEntry.objects.filter(origin="ORG2").count() == 2
    reply = Message.objects.get(direction=Direction.INBOUND, kind="reply")
    # What the archive says of a message: its fields and how many items, not the items.
    assert reply.summary["count"] == len(list(wire.iter_items(bytes(reply.payload), "entries")))
    assert reply.summary["type"] == "reply" and "entries" not in reply.summary
    export = Message.objects.get(direction=Direction.INBOUND, kind="export")
    assert export.summary["count"] == 2 and "changes" not in export.summary


# --- concurrency ----------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_it_leaves_a_message_another_worker_holds_to_that_worker():
    message = outbox.receive("someone@org2.example", MASTER_DN, b"not gzip", AddressType.SMTP)
    locked, release, outcome = threading.Event(), threading.Event(), {}

    def other_worker():
        try:
            with transaction.atomic():
                Message.objects.select_for_update().get(pk=message.pk)
                locked.set()
                # Without the fix process_pending spins until this lock goes away.
                outcome["released_by_test"] = release.wait(timeout=30)
        finally:
            connection.close()

    worker = threading.Thread(target=other_worker)
    worker.start()
    try:
        assert locked.wait(timeout=30)
        handled = inbox.process_pending()
        message.refresh_from_db()
    finally:
        release.set()
        worker.join()

    assert outcome["released_by_test"], "process_pending waited for the other worker's lock"
    assert handled == 0
    assert message.status == Status.RECEIVED
    assert processed(message).status == Status.REJECTED
