"""Sending queued message parts over SMTP to a real server on a loopback port."""

import ipaddress
import logging
import ssl
import threading
from datetime import timedelta
from email import policy
from email.parser import BytesParser

import pytest
from aiosmtpd.controller import Controller
from django.db import connections
from django.test import override_settings
from django.utils import timezone

from requestor.cycle import run_cycle
from tests.mail.conftest import MASTER_SMTP, RecordingHandler, smtp_scenario
from transport import mail as mime
from transport.constants import ATTACHMENT_NAME, ATTACHMENT_TYPE, AddressType, Direction, Status
from transport.mail import KEY_HEADER, SIGNATURE_HEADER
from transport.models import Message
from transport.outbox import deliver_pending
from transport.smtp import CLAIM_LEASE, RETRY_MAX, claim, send_queued


@pytest.fixture
def export(db):
    """ORG2's first export, queued for the master's SMTP address."""
    scenario = smtp_scenario()
    run_cycle(scenario["ORG2"].config.pk)
    return Message.objects.get(direction=Direction.OUTBOUND, status=Status.QUEUED)


def parse(data: bytes):
    return BytesParser(policy=policy.default).parsebytes(data)


def make_due(message: Message) -> None:
    """Let the retry time pass."""
    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())


def test_it_sends_one_mime_message_with_the_payload_attached(export, relay):
    relay.start()

    assert send_queued(export.pk) is True

    export.refresh_from_db()
    assert (export.status, export.attempts, export.error) == (Status.SENT, 1, "")
    assert export.address_type == AddressType.SMTP
    [received] = relay.received
    assert received.mail_from == "requestor@org2.example"
    assert received.rcpt_tos == [MASTER_SMTP]
    mail = parse(received.data)
    assert mail["From"] == "requestor@org2.example"
    assert mail["To"] == MASTER_SMTP
    assert mail["Message-ID"] == export.message_id
    assert export.message_id.startswith("<") and export.message_id.endswith("@org2.example>")
    assert mail["Auto-Submitted"] == "auto-generated"
    # A long header may be folded onto a continuation line; the value is the same.
    assert "".join(mail[SIGNATURE_HEADER].split()) == export.signature != ""
    assert mail[KEY_HEADER].strip() == export.key_fingerprint != ""
    parsed = mime.parse(received.data)
    assert (parsed.signature, parsed.key_fingerprint, parsed.message_id, parsed.problem) == (
        export.signature,
        export.key_fingerprint,
        export.message_id,
        "",
    )
    assert mail["Subject"] == (
        f"InterOrg export ORG2 part 1/1 (USN {export.usn_from}-{export.usn_through}]"
    )
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_filename() == ATTACHMENT_NAME
    assert attachment.get_content_type() == ATTACHMENT_TYPE
    assert attachment.get_content() == bytes(export.payload)
    text = mail.get_body(("plain",)).get_content()
    assert "export message from ORG2 (Organization 2)" in text
    assert f"USN range:  ({export.usn_from}, {export.usn_through}]" in text


def test_it_keeps_hostile_names_out_of_the_headers(export, relay):
    export.summary["sender"]["organization"] = "ORG2\r\nBcc: victim@evil.example\r\n"
    export.save(update_fields=["summary"])
    export.organization.display_name = "Evil\r\nX-Injected: yes\u2028"
    export.organization.save(update_fields=["display_name"])
    relay.start()

    assert send_queued(export.pk) is True

    [received] = relay.received
    assert received.rcpt_tos == [MASTER_SMTP]
    mail = parse(received.data)
    assert mail["Bcc"] is None and mail["X-Injected"] is None
    assert mail["Subject"].startswith("InterOrg export ORG2 Bcc: victim@evil.example part 1/1")
    assert not any(char in mail["Subject"] for char in "\r\n\u2028")
    assert "Evil X-Injected: yes" in mail.get_body(("plain",)).get_content()


def test_it_fails_a_sender_address_with_line_breaks_without_sending(export, relay):
    Message.objects.filter(pk=export.pk).update(sender="requestor@org2.example\r\nBcc: x@y.z")
    relay.start()

    assert send_queued(export.pk) is True

    export.refresh_from_db()
    assert export.status == Status.FAILED
    assert "sender address contains control characters" in export.error
    assert relay.received == []


def test_it_retries_while_the_relay_is_down_and_sends_once_when_it_is_up(export, relay):
    assert send_queued(export.pk) is False

    export.refresh_from_db()
    first_id = export.message_id
    assert (export.status, export.attempts) == (Status.QUEUED, 1)
    assert "ConnectionRefusedError" in export.error and "relay 127.0.0.1:" in export.error
    wait = export.next_attempt_at - timezone.now()
    assert timedelta(seconds=25) < wait <= timedelta(seconds=30)
    assert first_id
    # Not due yet: a pass over the queue leaves it alone.
    assert deliver_pending() == 0

    relay.start()
    make_due(export)
    assert deliver_pending() == 1
    assert deliver_pending() == 0

    export.refresh_from_db()
    assert (export.status, export.attempts, export.error) == (Status.SENT, 2, "")
    assert export.next_attempt_at is None
    [received] = relay.received
    assert parse(received.data)["Message-ID"] == first_id == export.message_id


def test_it_doubles_the_wait_after_each_failure_up_to_an_hour(export, relay):
    waits = []
    for _ in range(3):
        make_due(export)
        assert send_queued(export.pk) is False
        export.refresh_from_db()
        waits.append(round((export.next_attempt_at - timezone.now()).total_seconds()))
    assert waits == [30, 60, 120]

    Message.objects.filter(pk=export.pk).update(attempts=30)
    make_due(export)
    send_queued(export.pk)
    export.refresh_from_db()
    assert round((export.next_attempt_at - timezone.now()).total_seconds()) == RETRY_MAX


@pytest.mark.parametrize(
    ("rcpt_reply", "data_reply", "status"),
    [
        ("550 5.1.1 No such user", None, Status.FAILED),
        ("553 5.1.3 Bad recipient", None, Status.FAILED),
        (None, "554 5.7.1 Content refused", Status.FAILED),
        ("451 4.3.0 Try later", None, Status.QUEUED),
        (None, "452 4.3.1 Disk full", Status.QUEUED),
    ],
)
def test_it_fails_on_5xx_and_retries_on_4xx(export, relay, rcpt_reply, data_reply, status):
    relay.handler.rcpt_reply, relay.handler.data_reply = rcpt_reply, data_reply
    relay.start()

    send_queued(export.pk)

    export.refresh_from_db()
    assert export.status == status
    reply = rcpt_reply or data_reply
    assert reply.split(" ", 1)[0] in export.error and reply.rsplit(" ", 1)[-1] in export.error
    assert (export.next_attempt_at is None) == (status == Status.FAILED)
    assert relay.received == []


def test_a_claimed_message_is_not_taken_again_until_its_lease_ends(export):
    first = claim(export.pk)
    assert first is not None and first.attempts == 1
    assert claim(export.pk) is None
    assert send_queued(export.pk) is False

    # The worker died mid-send: after the lease, another one sends it, same Message-ID.
    Message.objects.filter(pk=export.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    second = claim(export.pk)
    assert second.attempts == 2
    assert second.message_id == first.message_id
    export.refresh_from_db()
    assert export.next_attempt_at > timezone.now() + CLAIM_LEASE - timedelta(minutes=1)


def test_two_workers_never_send_a_message_twice(transactional_db, relay):
    scenario = smtp_scenario()
    run_cycle(scenario["ORG2"].config.pk)
    export = Message.objects.get(direction=Direction.OUTBOUND, status=Status.QUEUED)
    relay.start()
    barrier = threading.Barrier(4)
    results = []

    def worker():
        try:
            barrier.wait()
            results.append(send_queued(export.pk))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False, False, False, True]
    assert len(relay.received) == 1
    export.refresh_from_db()
    assert (export.status, export.attempts) == (Status.SENT, 1)


class RejectingAuthenticator:
    def __call__(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult

        return AuthResult(success=False, handled=False)


def test_the_relay_password_appears_in_no_error_or_log(export, relay_port, smtp_settings, caplog):
    password = "hunter2-relay-secret"
    controller = Controller(
        object(),
        hostname="127.0.0.1",
        port=relay_port,
        authenticator=RejectingAuthenticator(),
        auth_require_tls=False,
    )
    controller.start()
    try:
        with (
            override_settings(EMAIL_HOST_USER="agent", EMAIL_HOST_PASSWORD=password),
            caplog.at_level(logging.DEBUG),
        ):
            assert send_queued(export.pk) is False
    finally:
        controller.stop()

    export.refresh_from_db()
    assert export.status == Status.QUEUED
    assert "SMTPAuthenticationError: 535" in export.error
    assert password not in export.error
    assert password not in caplog.text


def test_a_signature_that_would_break_the_headers_fails_without_sending(export, relay):
    Message.objects.filter(pk=export.pk).update(signature="abc\r\nBcc: x@evil.example")
    relay.start()

    assert send_queued(export.pk) is True

    export.refresh_from_db()
    assert export.status == Status.FAILED
    assert "BadHeaderError" in export.error
    assert relay.received == []


def self_signed(tmp_path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.test")])
    now = timezone.now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "relay.pem", tmp_path / "relay.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


def test_it_uses_starttls_and_logs_in_as_configured(export, relay_port, tmp_path, monkeypatch):
    from aiosmtpd.smtp import AuthResult

    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", cert)  # the relay's certificate is the trusted one
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = RecordingHandler()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=relay_port,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        authenticator=lambda server, session, envelope, mechanism, data: AuthResult(
            success=(data.login, data.password) == (b"agent", b"relay-pass")
        ),
    )
    controller.start()
    try:
        with override_settings(
            EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=relay_port,
            EMAIL_USE_TLS=True,
            EMAIL_HOST_USER="agent",
            EMAIL_HOST_PASSWORD="relay-pass",
        ):
            assert send_queued(export.pk) is True
    finally:
        controller.stop()

    [received] = handler.received
    assert (received.tls, received.authenticated) == (True, True)
    assert parse(received.data)["Message-ID"] == Message.objects.get(pk=export.pk).message_id


def test_an_ex_sender_cannot_send_by_smtp(export, relay):
    Message.objects.filter(pk=export.pk).update(sender="/o=ORG2/ou=Site2/cn=Recipients/cn=REQ")
    relay.start()

    assert send_queued(export.pk) is True

    export.refresh_from_db()
    assert export.status == Status.FAILED
    assert "is not an SMTP address" in export.error
    assert export.message_id.endswith("@interorg.invalid>")
    assert relay.received == []
