"""The SMTP receiver of `run_smtpd`, spoken to by smtplib and by swaks (an independent client)."""

import hashlib
import shutil
import smtplib
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections, transaction

from tests.mail.conftest import MASTER_SMTP, export_mail, free_port, smtp_scenario
from transport import inbox
from transport import mail as mime
from transport.constants import ATTACHMENT_NAME, ATTACHMENT_TYPE, Direction, Status
from transport.mail import KEY_HEADER, SIGNATURE_HEADER
from transport.models import Message
from transport.smtp import Receiver

ORG2 = "requestor@org2.example"


@pytest.fixture
def scenario(transactional_db):
    return smtp_scenario()


@pytest.fixture
def start_receiver(transactional_db):
    """Start the project's receiver on a free loopback port; stopped after the test."""
    started = []

    def start(**options) -> Receiver:
        options.setdefault("process_inline", False)
        receiver = Receiver("127.0.0.1", free_port(), **options).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def server(start_receiver, scenario):
    return start_receiver()


def inbound():
    return Message.objects.filter(direction=Direction.INBOUND).order_by("id")


def smtp(receiver: Receiver) -> smtplib.SMTP:
    return smtplib.SMTP(receiver.host, receiver.port, timeout=10)


def swaks(receiver: Receiver, *args: str) -> subprocess.CompletedProcess:
    if shutil.which("swaks") is None:
        pytest.skip("swaks is not installed; run bin/ensure-test-tools")
    return subprocess.run(
        ["swaks", "--server", f"{receiver.host}:{receiver.port}", "--timeout", "10", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_for(condition, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# --- refused at the door ----------------------------------------------------------------------


def test_it_refuses_an_address_that_is_no_agent_here_with_550(server):
    with smtp(server) as client, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        client.sendmail(ORG2, ["postmaster@org1.example"], b"Subject: hi\r\n\r\nhello\r\n")
    [(code, _)] = refused.value.recipients.values()
    assert code == 550

    result = swaks(server, "--from", ORG2, "--to", "someone@org9.example")
    assert result.returncode == 24, result.stdout  # no RCPT accepted
    assert "<** 550 5.1.1" in result.stdout
    assert not inbound().exists()


def test_it_accepts_every_agent_address_of_the_installation(server):
    for address in (MASTER_SMTP, ORG2, "REQUESTOR@ORG3.EXAMPLE"):
        result = swaks(server, "--from", ORG2, "--to", address, "--quit-after", "RCPT")
        assert result.returncode == 0, result.stdout


def test_it_refuses_oversize_mail_with_552(start_receiver, scenario, tmp_path):
    server = start_receiver(data_size_limit=4096)
    big = b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n" * 100 + (b"y" * 76 + b"\r\n") * 100

    # smtplib announces the size (SIZE=) and is refused at MAIL FROM.
    with smtp(server) as client, pytest.raises(smtplib.SMTPSenderRefused) as refused:
        client.sendmail(ORG2, [MASTER_SMTP], big)
    assert refused.value.smtp_code == 552

    # swaks does not announce it: the data is read, discarded and refused.
    body = tmp_path / "body.txt"
    body.write_text(("z" * 76 + "\n") * 120)
    result = swaks(server, "--from", ORG2, "--to", MASTER_SMTP, "--body", f"@{body}")
    assert result.returncode == 26, result.stdout  # mail not accepted after data
    assert "<** 552" in result.stdout
    assert not inbound().exists()


# --- archived, then rejected ------------------------------------------------------------------


def test_mail_without_attachment_is_archived_and_rejected(server):
    result = swaks(server, "--from", ORG2, "--to", MASTER_SMTP, "--body", "just text")
    assert result.returncode == 0, result.stdout

    [message] = inbound()
    assert (message.status, message.sender, message.recipient) == (
        Status.REJECTED,
        ORG2,
        MASTER_SMTP,
    )
    assert "The mail has no attachment" in message.error
    # Not its body: no signature vouches for it. Its header, size and digest are kept.
    assert bytes(message.payload) == b"" and message.body_dropped
    assert f"From: {ORG2}" in message.headers and message.size > len(b"just text")
    assert len(message.digest) == 64
    assert message.processed_at is not None


def test_mail_with_two_attachments_is_archived_and_rejected(server, tmp_path):
    first, second = tmp_path / ATTACHMENT_NAME, tmp_path / "notes.txt"
    first.write_bytes(b"\x1f\x8b not really gzip")
    second.write_text("hello")
    result = swaks(
        server,
        *("--from", ORG2, "--to", MASTER_SMTP),
        *("--attach-type", ATTACHMENT_TYPE, "--attach", f"@{first}"),
        *("--attach", f"@{second}"),
    )
    assert result.returncode == 0, result.stdout

    [message] = inbound()
    assert message.status == Status.REJECTED
    assert f"2 attachments ({ATTACHMENT_NAME}, notes.txt)" in message.error
    assert bytes(message.payload) == b"" and message.body_dropped


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x00\x01\x02\xff\xfe garbage \x80\x81\r\n\r\n\xc3\x28", "no attachment"),
        (b"", "no attachment"),
        (
            b"From: requestor@org2.example\r\nContent-Type: multipart/mixed\r\n\r\n"
            b"--x\r\n--x--\r\n",
            "no attachment",
        ),
        (
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
            b"Content-Type: application/gzip; name=interorg.json.gz\r\n"
            b"Content-Disposition: attachment; filename=interorg.json.gz\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n!!!not*base64\r\n--b--\r\n",
            "damaged",
        ),
        (
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
            b"Content-Disposition: attachment; filename=evil.exe\r\n\r\nMZ\r\n--b--\r\n",
            "The attachment is evil.exe, not interorg.json.gz",
        ),
        (
            b"X-InterOrg-Signature: not base64 at all!\r\n\r\nbody\r\n",
            "X-InterOrg-Signature header is not a base64 signature",
        ),
        (
            b"X-InterOrg-Key: " + b"f" * 65 + b"\r\n\r\nbody\r\n",
            "X-InterOrg-Key header is not a key fingerprint",
        ),
    ],
)
def test_malformed_mail_is_archived_and_rejected_with_a_reason(server, data, error):
    with smtp(server) as client:
        client.sendmail(ORG2, [MASTER_SMTP], data)

    [message] = inbound()
    assert message.status == Status.REJECTED
    assert error in message.error
    # Recorded by the digest and size of what came over the wire (smtplib ends the last line
    # with CRLF), not by its body.
    sent = data if data.endswith(b"\r\n") else data + b"\r\n"
    assert (message.digest, message.size) == (hashlib.sha256(sent).hexdigest(), len(sent))
    assert bytes(message.payload) == b"" and message.body_dropped


def test_a_mail_that_cannot_be_archived_gets_a_temporary_error(server, monkeypatch):
    def broken(*args):
        raise RuntimeError("database is down")

    monkeypatch.setattr("transport.smtp.accept_mime", broken)
    with smtp(server) as client, pytest.raises(smtplib.SMTPDataError) as failed:
        client.sendmail(ORG2, [MASTER_SMTP], b"Subject: x\r\n\r\ny\r\n")
    assert failed.value.smtp_code == 451  # the sender keeps it and tries again
    assert not inbound().exists()


# --- valid exports ------------------------------------------------------------------------------


def test_a_valid_export_is_archived_before_250_then_processed(server, scenario):
    raw, sent = export_mail(scenario["ORG2"])

    with smtp(server) as client:
        client.ehlo()
        client.mail(ORG2)
        client.rcpt(MASTER_SMTP)
        code, reply = client.data(raw)
        assert code == 250
        # The client has its 250: the message is committed in the archive already.
        [message] = inbound()
        assert reply.decode() == f"2.0.0 OK: archived as message {message.pk}"

    assert message.status == Status.RECEIVED
    assert (message.sender, message.recipient) == (ORG2, MASTER_SMTP)
    assert bytes(message.payload) == bytes(sent.payload)
    assert (message.signature, message.key_fingerprint, message.message_id) == (
        sent.signature,
        sent.key_fingerprint,
        sent.message_id,
    )
    inbox.process_pending()
    message.refresh_from_db()
    assert (message.status, message.error, message.kind) == (Status.PROCESSED, "", "export")


def test_the_same_message_id_twice_is_archived_once(server, scenario):
    raw, _ = export_mail(scenario["ORG2"])
    replies = []
    for _ in range(2):  # a sender that never heard the first 250 sends again
        with smtp(server) as client:
            client.ehlo()
            client.mail(ORG2)
            client.rcpt(MASTER_SMTP)
            replies.append(client.data(raw))

    [message] = inbound()
    assert replies[0] == replies[1] == (250, f"2.0.0 OK: archived as message {message.pk}".encode())


def test_one_mail_for_two_agents_is_archived_for_each(server, scenario):
    raw, _ = export_mail(scenario["ORG2"])
    with smtp(server) as client:
        client.sendmail(ORG2, [MASTER_SMTP, "requestor@org3.example"], raw)

    assert list(inbound().values_list("recipient", flat=True)) == [
        MASTER_SMTP,
        "requestor@org3.example",
    ]


def test_an_export_composed_by_swaks_is_processed_inline(start_receiver, scenario, tmp_path):
    server = start_receiver(process_inline=True)
    _, sent = export_mail(scenario["ORG2"])
    payload = tmp_path / "payload.gz"
    payload.write_bytes(bytes(sent.payload))

    result = swaks(
        server,
        *("--from", ORG2, "--to", MASTER_SMTP),
        *("--header", f"Message-Id: {sent.message_id}"),
        *("--add-header", f"{SIGNATURE_HEADER}: {sent.signature}"),
        *("--add-header", f"{KEY_HEADER}: {sent.key_fingerprint}"),
        *("--body", "An InterOrg export."),
        *("--attach-type", ATTACHMENT_TYPE, "--attach-name", ATTACHMENT_NAME),
        *("--attach", f"@{payload}"),
    )
    assert result.returncode == 0, result.stdout
    assert "<-  250 2.0.0 OK: archived as message" in result.stdout

    [message] = inbound()
    assert bytes(message.payload) == bytes(sent.payload)
    assert message.message_id == sent.message_id
    wait_for(lambda: inbound().get().status != Status.RECEIVED)
    message.refresh_from_db()
    assert (message.status, message.error) == (Status.PROCESSED, "")
    # The master answered, and with no workers to send it the receiver sent the reply itself.
    replies = Message.objects.filter(direction=Direction.OUTBOUND, recipient=ORG2, kind="reply")
    wait_for(lambda: replies.filter(status=Status.SENT).exists())


@pytest.mark.postgres
def test_two_copies_arriving_at_once_are_archived_once(transactional_db):
    """The relay delivers the same mail twice at the same moment: both writers race past the
    look-up for an earlier copy, and the unique constraint keeps one."""
    smtp_scenario()
    raw = (
        b"From: requestor@org2.example\r\nTo: master@org1.example\r\n"
        b"Message-ID: <twice@org2.example>\r\nSubject: x\r\n\r\nno attachment\r\n"
    )
    start = threading.Barrier(2)

    def archive() -> int:
        try:
            start.wait(timeout=10)
            with transaction.atomic():
                message = mime.accept_mime(raw, "requestor@org2.example", "master@org1.example")
                time.sleep(0.3)  # hold the row, so that the other insert has to wait for it
            return message.pk
        finally:
            connections.close_all()

    with ThreadPoolExecutor(2) as pool:
        pks = [future.result(timeout=30) for future in [pool.submit(archive) for _ in range(2)]]

    assert pks[0] == pks[1]
    assert Message.objects.filter(message_id="<twice@org2.example>").count() == 1
