"""The SMTP receiver's limits, over real SMTP conversations on loopback: per sender and in all,
concurrent connections, and the size of the archive (with its alert)."""

import smtplib
import socket

import pytest
from django.contrib.auth import get_user_model
from django.core import mail as django_mail
from django.urls import reverse

from console import alerts
from console.models import AlertEvent
from tests.mail.conftest import MASTER_SMTP, export_mail, free_port, smtp_scenario
from transport import archive
from transport.constants import Direction, Status
from transport.models import Message
from transport.smtp import Receiver

ORG2 = "requestor@org2.example"
STRANGER = "stranger@evil.example"
TEXT = b"Subject: hi\r\n\r\nhello\r\n"


@pytest.fixture
def scenario(transactional_db):
    return smtp_scenario()


@pytest.fixture
def start_receiver(scenario):
    started = []

    def start() -> Receiver:
        receiver = Receiver("127.0.0.1", free_port(), process_inline=False).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


def smtp(receiver: Receiver) -> smtplib.SMTP:
    return smtplib.SMTP(receiver.host, receiver.port, timeout=10)


def attempt(client: smtplib.SMTP, sender: str, data: bytes = TEXT) -> int:
    """Send one mail on an open connection; the SMTP code that decided it."""
    try:
        client.sendmail(sender, [MASTER_SMTP], data)
    except smtplib.SMTPSenderRefused as exc:
        return exc.smtp_code
    except smtplib.SMTPRecipientsRefused as exc:
        [(code, _)] = exc.recipients.values()
        return code
    except smtplib.SMTPDataError as exc:
        return exc.smtp_code
    return 250


def inbound():
    return Message.objects.filter(direction=Direction.INBOUND)


def test_a_sender_over_its_hourly_count_gets_451_and_others_do_not(start_receiver, settings):
    settings.INTERORG_SMTPD_SENDER_MESSAGES_PER_HOUR = 3
    server = start_receiver()

    with smtp(server) as client:
        codes = [attempt(client, ORG2) for _ in range(5)]
        other = attempt(client, "requestor@org3.example")

    assert codes == [250, 250, 250, 451, 451]
    assert other == 250
    assert inbound().count() == 4


def test_all_senders_together_are_limited_too(start_receiver, settings):
    settings.INTERORG_SMTPD_MESSAGES_PER_HOUR = 2
    server = start_receiver()

    with smtp(server) as client:
        codes = [attempt(client, f"requestor@org{n}.example") for n in (2, 3, 2)]

    assert codes == [250, 250, 451]


def test_a_sender_over_its_hourly_volume_gets_a_4xx(start_receiver, settings):
    settings.INTERORG_SMTPD_SENDER_BYTES_PER_HOUR = 35_000
    server = start_receiver()
    big = b"Subject: big\r\n\r\n" + (b"z" * 78 + b"\r\n") * 125  # about 10 KB

    with smtp(server) as client:
        codes = [attempt(client, ORG2, big) for _ in range(4)]

    assert codes[:3] == [250, 250, 250]
    assert 400 <= codes[3] < 500


def test_unknown_senders_together_are_limited_before_their_data(start_receiver, settings):
    settings.INTERORG_SMTPD_UNKNOWN_SENDER_MESSAGES_PER_HOUR = 2
    server = start_receiver()

    with smtp(server) as client:
        codes = [attempt(client, f"spam{n}@evil.example") for n in range(4)]
        allowed = attempt(client, ORG2)

    assert codes == [250, 250, 451, 451]
    assert allowed == 250  # an allowed agent is not held up by strangers


def greeting(receiver: Receiver) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection((receiver.host, receiver.port), timeout=10)
    return sock, sock.recv(1024)


def test_connections_beyond_the_maximum_get_421(start_receiver, settings):
    settings.INTERORG_SMTPD_MAX_CONNECTIONS = 2
    server = start_receiver()

    first, hello_first = greeting(server)
    second, hello_second = greeting(server)
    third, hello_third = greeting(server)
    try:
        assert hello_first.startswith(b"220") and hello_second.startswith(b"220")
        assert hello_third.startswith(b"421 4.7.0")
        assert third.recv(1024) == b""  # and closed
    finally:
        third.close()
        second.close()

    # A slot freed is taken again.
    for _ in range(50):
        fourth, hello_fourth = greeting(server)
        fourth.close()
        if hello_fourth.startswith(b"220"):
            break
    assert hello_fourth.startswith(b"220")
    first.close()


def test_a_full_archive_answers_452_and_an_almost_full_one_alerts(
    scenario, start_receiver, settings, monkeypatch, client
):
    monkeypatch.setattr("transport.smtp.ARCHIVE_RECOUNT_SECONDS", 0)  # no cached figure
    alerts.set_recipients(scenario.master.organization, ["ops@example.org"], False)
    settings.INTERORG_ALERT_HOLD_DOWN_MINUTES = 0
    settings.INTERORG_ARCHIVE_MAX_BYTES = 100_000
    settings.INTERORG_ARCHIVE_ALERT_PERCENT = 80
    raw, _sent = export_mail(scenario["ORG2"])
    filler = Message.objects.create(
        direction=Direction.INBOUND,
        status=Status.PROCESSED,
        sender=ORG2,
        recipient=MASTER_SMTP,
        size=70_000,
        payload=b"p" * 70_000,
    )
    alerts.check_alerts()
    assert not AlertEvent.objects.filter(state=alerts.ARCHIVE_FULL).exists()

    Message.objects.filter(pk=filler.pk).update(size=99_900, payload=b"p" * 99_900)
    server = start_receiver()
    with smtp(server) as conversation:
        refused = attempt(conversation, ORG2, raw)  # its payload would pass the cap
    Message.objects.filter(pk=filler.pk).update(size=85_000, payload=b"p" * 85_000)
    with smtp(server) as conversation:
        accepted = attempt(conversation, ORG2, raw)

    assert (refused, accepted) == (452, 250)
    assert archive.usage() > 85_000
    events = alerts.check_alerts()
    [event, *_] = [e for e in events if e.state == alerts.ARCHIVE_FULL]
    assert "INTERORG_ARCHIVE_MAX_BYTES" in event.reason
    assert any("archive" in message.subject for message in django_mail.outbox)

    # Staff see the figure on the dashboard.
    client.force_login(get_user_model().objects.create_superuser("root", "r@example.org", "x"))
    page = client.get(reverse("console:dashboard")).content.decode()
    assert 'id="message-archive"' in page and f"{archive.usage() * 100 // 100_000}%" in page
