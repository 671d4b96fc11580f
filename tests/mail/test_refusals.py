"""An export the mail system refuses for good (a 5xx from the relay, or a bounce afterwards)
fails its run at once with the reason; a temporary failure does not."""

import smtplib

import pytest

from console.status import State, organization_status
from requestor.constants import RunStatus
from requestor.cycle import run_cycle
from requestor.models import Run
from tests.mail.conftest import smtp_scenario
from transport.constants import Direction, MessageKind, Status
from transport.models import Message
from transport.smtp import send_queued


@pytest.fixture
def export(db):
    """ORG2's first export, queued for the master's SMTP address, and its run."""
    scenario = smtp_scenario()
    run = run_cycle(scenario["ORG2"].config.pk)
    message = Message.objects.get(direction=Direction.OUTBOUND, status=Status.QUEUED)
    return scenario, run, message


def test_a_5xx_from_the_relay_fails_the_run_with_the_reason(export, relay):
    scenario, run, message = export
    relay.handler.rcpt_reply = "550 5.1.1 <master@org1.example>: Recipient address rejected"
    relay.start()

    send_queued(message.pk)

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "could not reach the master" in run.error and "550" in run.error
    status = organization_status(scenario["ORG2"].organization)
    assert status.state == State.FAILING and "Recipient address rejected" in status.reason


def test_a_4xx_from_the_relay_leaves_the_run_waiting(export, relay):
    _scenario, run, message = export
    relay.handler.rcpt_reply = "451 4.3.0 Try again later"
    relay.start()

    send_queued(message.pk)

    run.refresh_from_db()
    assert run.status == RunStatus.WAITING


def bounce_for(message: Message, action: str = "failed", status: str = "5.1.1") -> bytes:
    """A delivery report as Postfix writes one (RFC 3464), about `message`."""
    return (
        "From: MAILER-DAEMON@relay.example\r\n"
        f"To: {message.sender}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <bounce-1@relay.example>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n"
        "--B\r\nContent-Type: text/plain\r\n\r\n"
        "This is the mail system at host relay.example.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; relay.example\r\n\r\n"
        f"Final-Recipient: rfc822; {message.recipient}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{message.recipient}>: mailbox unavailable\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: {message.sender}\r\nTo: {message.recipient}\r\n"
        f"Message-ID: {message.message_id}\r\n"
        "--B--\r\n"
    ).encode()


def deliver_bounce(port: int, message: Message, **kwargs) -> None:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail("", [message.sender], bounce_for(message, **kwargs))


def test_a_bounce_fails_the_run_with_the_diagnostic(export, receiver, relay_port):
    scenario, run, message = export
    assert send_queued(message.pk)  # accepted by the relay (here: the receiver itself)
    message.refresh_from_db()

    deliver_bounce(relay_port, message)

    message.refresh_from_db()
    run.refresh_from_db()
    assert message.status == Status.FAILED
    assert message.error.startswith("Bounced by relay.example: 5.1.1")
    assert run.status == RunStatus.FAILED and "mailbox unavailable" in run.error
    report = Message.objects.get(kind=MessageKind.BOUNCE)
    assert (report.status, report.summary["bounce_for"]) == (Status.PROCESSED, message.pk)


def test_a_delay_report_fails_nothing(export, receiver, relay_port):
    _scenario, run, message = export
    send_queued(message.pk)
    message.refresh_from_db()

    deliver_bounce(relay_port, message, action="delayed", status="4.4.1")

    run.refresh_from_db()
    assert run.status == RunStatus.WAITING
    assert Message.objects.get(pk=message.pk).status == Status.SENT


def test_a_bounce_for_a_message_never_sent_changes_nothing(export, receiver, relay_port):
    _scenario, run, message = export
    stranger = Message(sender=message.sender, recipient=message.recipient, message_id="<x@y>")

    deliver_bounce(relay_port, stranger)

    report = Message.objects.get(kind=MessageKind.BOUNCE)
    assert report.status == Status.REJECTED
    assert Run.objects.get(pk=run.pk).status == RunStatus.WAITING
