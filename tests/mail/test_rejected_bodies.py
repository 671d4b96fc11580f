"""Mail that is rejected before a signature vouched for it is kept by its headers, size, digest
and reason, not by its body (unless an administrator keeps such bodies, within a bound)."""

import hashlib
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.mail.conftest import MASTER_SMTP, export_mail, free_port, smtp_scenario
from tests.mail.test_imap import JUNK, Box
from transport import archive, imap, inbox
from transport.constants import Direction, Status
from transport.housekeeping import purge_archive
from transport.mail import build_email
from transport.models import Message
from transport.smtp import Receiver

ORG2 = "requestor@org2.example"
STRANGER = "stranger@evil.example"


@pytest.fixture
def scenario(transactional_db):
    return smtp_scenario()


@pytest.fixture
def server(scenario):
    with Receiver("127.0.0.1", free_port(), process_inline=False) as receiver:
        yield receiver


def inbound():
    return Message.objects.filter(direction=Direction.INBOUND).order_by("id")


def junk(size: int, subject: str = "hello") -> bytes:
    """A mail of about `size` bytes that is no InterOrg message (CRLF lines, as on the wire)."""
    head = f"From: {STRANGER}\r\nTo: {MASTER_SMTP}\r\nSubject: {subject}\r\n\r\n".encode()
    line = b"x" * 78 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def send(receiver, sender: str, raw: bytes) -> None:
    import smtplib

    with smtplib.SMTP(receiver.host, receiver.port, timeout=10) as client:
        client.sendmail(sender, [MASTER_SMTP], raw)


def assert_recorded_without_body(message: Message, raw: bytes) -> None:
    assert message.status == Status.REJECTED
    assert bytes(message.payload) == b""
    assert message.body_dropped is True
    assert message.size == len(raw)
    assert message.digest == hashlib.sha256(raw).hexdigest()


def test_mail_from_an_unknown_sender_is_recorded_without_its_body(server):
    raw = junk(200_000)

    send(server, STRANGER, raw)

    [message] = inbound()
    assert_recorded_without_body(message, raw)
    assert f"{STRANGER} may not send to {MASTER_SMTP}" in message.error
    assert "Subject: hello" in message.headers and "xxxx" not in message.headers
    assert archive.usage() == 0


def test_a_broken_mail_from_an_allowed_address_is_recorded_without_its_body(server):
    # The envelope sender proves nothing: only a verified signature vouches for a body.
    raw = junk(50_000)

    send(server, ORG2, raw)

    [message] = inbound()
    assert_recorded_without_body(message, raw)
    assert "no attachment" in message.error


def test_a_signature_failure_drops_the_body_once_it_is_known(server, scenario):
    _raw, sent = export_mail(scenario["ORG2"])
    sent.signature = "A" * 86 + "=="  # well-formed, and not the sender's
    raw = build_email(sent).message().as_bytes(linesep="\r\n")

    send(server, ORG2, raw)
    [message] = inbound()
    assert message.status == Status.RECEIVED and bytes(message.payload)  # not judged yet
    size, digest = message.size, message.digest

    inbox.process_safely(message.pk)

    message.refresh_from_db()
    assert message.status == Status.REJECTED and "signature" in message.error.lower()
    assert bytes(message.payload) == b"" and message.body_dropped
    assert (message.size, message.digest) == (size, digest) and digest
    assert archive.usage() == 0


def test_a_valid_export_keeps_its_body(server, scenario):
    raw, sent = export_mail(scenario["ORG2"])

    send(server, ORG2, raw)
    [message] = inbound()
    inbox.process_safely(message.pk)

    message.refresh_from_db()
    assert message.status == Status.PROCESSED
    assert bytes(message.payload) == bytes(sent.payload) and not message.body_dropped
    assert message.digest == hashlib.sha256(raw).hexdigest()
    assert archive.usage() == message.size


def test_kept_rejected_bodies_stay_within_their_bound_and_their_days(server, settings):
    settings.INTERORG_KEEP_REJECTED_BODIES = True
    settings.INTERORG_KEEP_REJECTED_BODIES_MAX = 150_000
    settings.INTERORG_KEEP_REJECTED_BODIES_DAYS = 2
    first, second, small = junk(100_000, "one"), junk(100_000, "two"), junk(20_000, "three")

    for raw in (first, second, small):
        send(server, STRANGER, raw)

    kept, dropped, also_kept = inbound()
    assert bytes(kept.payload) == first and kept.body_kept_until is not None
    assert_recorded_without_body(dropped, second)  # it would pass the bound
    assert bytes(also_kept.payload) == small
    assert archive.usage() == len(first) + len(small)

    Message.objects.filter(pk=kept.pk).update(body_kept_until=timezone.now() - timedelta(seconds=1))
    purge_archive()

    kept.refresh_from_db()
    assert_recorded_without_body(kept, first)
    assert kept.body_kept_until is None
    assert bytes(Message.objects.get(pk=also_kept.pk).payload) == small


def test_poll_imap_drops_the_body_of_mail_from_an_unknown_sender(dovecot, scenario):
    box = Box(dovecot)
    box.empty()
    try:
        box.append(JUNK)
        imap.poll(box.mailbox())
    finally:
        box.client.logout()

    [message] = inbound()
    assert message.status == Status.REJECTED
    assert bytes(message.payload) == b"" and message.body_dropped
    assert message.digest and message.size > 0
    assert "someone@elsewhere.example may not send" in message.error
    assert "Subject: hello" in message.headers


def test_the_console_shows_a_message_without_its_body(server, client, scenario):
    from django.contrib.auth import get_user_model

    raw = junk(10_000)
    send(server, STRANGER, raw)
    message = inbound().get()
    organization = scenario.master.organization
    Message.objects.filter(pk=message.pk).update(organization=organization)
    user = get_user_model().objects.create_superuser("root", "root@example.org", "pw")
    client.force_login(user)

    url = reverse("console:message", kwargs={"org": organization.name, "pk": message.pk})
    page = client.get(url)

    assert page.status_code == 200
    text = page.content.decode()
    assert "body was not kept" in text
    assert hashlib.sha256(raw).hexdigest() in text
    assert "Subject: hello" in text

    admin_page = client.get(reverse("admin:transport_message_change", args=[message.pk]))
    assert admin_page.status_code == 200
    assert "body was not kept" in admin_page.content.decode()


def test_poll_imap_leaves_mail_in_the_folder_while_the_archive_is_full(dovecot, scenario, settings):
    settings.INTERORG_ARCHIVE_MAX_BYTES = 50_000
    Message.objects.create(
        direction=Direction.INBOUND, status=Status.PROCESSED, size=50_000, payload=b"p" * 50_000
    )
    box = Box(dovecot)
    box.empty()
    try:
        raw, _sent = export_mail(scenario["ORG2"])
        box.append(raw)
        result = imap.poll(box.mailbox())
        assert (result.moved, box.count("INBOX")) == (0, 1)  # kept there for later

        settings.INTERORG_ARCHIVE_MAX_BYTES = 10_000_000
        result = imap.poll(box.mailbox())
        assert (result.moved, box.count("INBOX")) == (1, 0)
    finally:
        box.client.logout()
