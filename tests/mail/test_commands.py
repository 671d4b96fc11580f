"""`manage.py run_smtpd` as a real process against the test database."""

import os
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from tests.mail.conftest import MASTER_SMTP, Relay, export_mail, free_port, smtp_scenario
from transport.constants import Direction, Status
from transport.models import Message

MANAGE = Path(__file__).resolve().parents[2] / "manage.py"


def database_url() -> str:
    """The test database, for another process."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        if connection.is_in_memory_db():
            pytest.skip("the test database lives in this process' memory")
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def test_run_smtpd_archives_processes_and_stops_on_sigterm(transactional_db):
    url = database_url()
    scenario = smtp_scenario()
    raw, sent = export_mail(scenario["ORG2"])
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "INTERORG_DISPATCH_TASKS": "false"}
    process = subprocess.Popen(
        [sys.executable, str(MANAGE), "run_smtpd", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = process.stdout.readline()
        assert banner, process.communicate(timeout=10)[1]
        assert banner == f"Listening for InterOrg mail on 127.0.0.1:{port} (processing inline).\n"
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("requestor@org2.example", [MASTER_SMTP], raw)
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                client.sendmail("requestor@org2.example", ["nobody@org1.example"], raw)

        received = Message.objects.filter(direction=Direction.INBOUND)
        [message] = received
        assert message.message_id == sent.message_id
        deadline = time.monotonic() + 20
        while received.get().status == Status.RECEIVED and time.monotonic() < deadline:
            time.sleep(0.1)
        message.refresh_from_db()
        assert (message.status, message.error) == (Status.PROCESSED, "")

        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert stdout == "Stopped.\n"


def test_run_smtpd_without_workers_sends_the_replies_itself(transactional_db):
    """A master run without Celery workers (runserver and run_smtpd alone): the reply to an
    export that arrived by SMTP leaves through the relay with no sync command or beat."""
    url = database_url()
    scenario = smtp_scenario()
    raw, sent = export_mail(scenario["ORG2"])
    relay = Relay(free_port()).start()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "INTERORG_DISPATCH_TASKS": "false",
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(relay.controller.port),
        "EMAIL_USE_TLS": "false",
        "EMAIL_USE_SSL": "false",
    }
    process = subprocess.Popen(
        [sys.executable, str(MANAGE), "run_smtpd", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline(), process.communicate(timeout=10)[1]
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            refused = client.sendmail("requestor@org2.example", [MASTER_SMTP], raw)
        assert refused == {}

        replies = Message.objects.filter(
            direction=Direction.OUTBOUND, sender=MASTER_SMTP, recipient="requestor@org2.example"
        )
        # The relay holds the mail a moment before the sender marks its row sent, so the test
        # waits for both: the mail at the relay and the row leaving the queue.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            relay.received and replies.exclude(status=Status.QUEUED).exists()
        ):
            assert process.poll() is None, process.communicate()[1]
            time.sleep(0.1)
        [reply] = replies
        assert (reply.kind, reply.status, reply.error) == ("reply", Status.SENT, "")
        [mail] = relay.received
        assert (mail.mail_from, mail.rcpt_tos) == (MASTER_SMTP, ["requestor@org2.example"])
        assert reply.message_id.encode() in mail.data
        export = Message.objects.get(message_id=sent.message_id, direction=Direction.INBOUND)
        assert export.status == Status.PROCESSED

        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        relay.stop()
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr


def test_run_smtpd_says_so_when_the_port_is_taken(db, relay):
    from django.core.management import CommandError, call_command

    relay.start()
    with pytest.raises(CommandError, match=r"Cannot listen on 127\.0\.0\.1:\d+"):
        call_command("run_smtpd", "--host", "127.0.0.1", "--port", str(relay.controller.port))


def test_poll_imap_keeps_polling_until_sigterm(transactional_db, dovecot):
    from tests.mail.test_imap import Box

    url = database_url()
    box = Box(dovecot)
    box.empty()
    scenario = smtp_scenario()
    raw, sent = export_mail(scenario["ORG2"])
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "INTERORG_DISPATCH_TASKS": "false",
        "INTERORG_IMAP_PASSWORD": dovecot.password,
    }
    process = subprocess.Popen(
        [sys.executable, str(MANAGE), "poll_imap", "--plain", "--interval", "0.2"]
        + ["--host", dovecot.host, "--port", str(dovecot.port), "--user", dovecot.user],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        box.append(raw)
        received = Message.objects.filter(direction=Direction.INBOUND)
        deadline = time.monotonic() + 30
        while not received.filter(status=Status.PROCESSED).exists() and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[1]
            time.sleep(0.1)
        [message] = received
        assert (message.message_id, message.status) == (sent.message_id, Status.PROCESSED)

        assert (box.count("INBOX"), box.count(box.processed)) == (0, 1)

        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        box.client.logout()
    assert process.returncode == 0, stderr
    assert stdout == "INBOX: 1 archived, 1 moved to InterOrg/Processed.\n"
