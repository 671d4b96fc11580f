"""TLS on both receivers: STARTTLS and AUTH on `run_smtpd`'s receiver, and the CA file
`poll_imap` trusts (against a Dovecot with a throwaway self-signed certificate)."""

import smtplib
import ssl

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from tests.mail.conftest import IMAP_PASSWORD, MASTER_SMTP, free_port, running_dovecot
from tests.mail.conftest import smtp_scenario as build_smtp_scenario
from tests.mail.test_imap import JUNK, Box
from tests.mail.test_outbound import self_signed
from transport import imap
from transport.constants import Direction
from transport.models import Message
from transport.smtp import Receiver

ORG2 = "requestor@org2.example"
TEXT = b"Subject: hi\r\n\r\nhello\r\n"


@pytest.fixture
def certificate(tmp_path):
    return self_signed(tmp_path)


@pytest.fixture
def secured(transactional_db, settings, certificate):
    """The receiver with STARTTLS required and AUTH as `agent` / `smtp-pass`."""
    build_smtp_scenario()
    cert, key = certificate
    settings.INTERORG_SMTPD_TLS_CERT_FILE, settings.INTERORG_SMTPD_TLS_KEY_FILE = cert, key
    settings.INTERORG_SMTPD_REQUIRE_STARTTLS = True
    settings.INTERORG_SMTPD_AUTH_USER = "agent"
    settings.INTERORG_SMTPD_AUTH_PASSWORD = "smtp-pass"
    with Receiver("127.0.0.1", free_port(), process_inline=False) as receiver:
        yield receiver


def test_it_offers_starttls_and_takes_nothing_before_it(secured):
    with smtplib.SMTP(secured.host, secured.port, timeout=10) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")  # no password over a clear connection
        code, _ = client.mail(ORG2)
        assert code == 530


def test_after_starttls_it_wants_the_password(secured, certificate):
    cert, _key = certificate
    context = ssl.create_default_context(cafile=cert)
    with smtplib.SMTP(secured.host, secured.port, timeout=10) as client:
        client.starttls(context=context)
        client.ehlo()
        assert client.has_extn("auth")
        code, _ = client.mail(ORG2)
        assert code == 530  # authentication required
        client.rset()
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("agent", "wrong")
        client.login("agent", "smtp-pass")
        client.sendmail(ORG2, [MASTER_SMTP], TEXT)

    assert Message.objects.filter(direction=Direction.INBOUND).count() == 1


def test_a_certificate_it_cannot_read_is_a_clear_error(transactional_db, settings, tmp_path):
    settings.INTERORG_SMTPD_TLS_CERT_FILE = str(tmp_path / "missing.pem")
    settings.INTERORG_SMTPD_TLS_KEY_FILE = str(tmp_path / "missing.key")
    with pytest.raises(ImproperlyConfigured, match="missing.pem"):
        Receiver("127.0.0.1", free_port(), process_inline=False)


@pytest.fixture
def tls_dovecot(certificate):
    cert, key = certificate
    with running_dovecot(f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}") as server:
        yield server


def tls_mailbox(server, **options) -> imap.Mailbox:
    return imap.Mailbox(
        host=server.host,
        port=server.port,
        security="starttls",
        user=server.user,
        password=server.password,
        **options,
    )


def test_poll_imap_trusts_the_ca_file_it_is_given(tls_dovecot, certificate, transactional_db):
    build_smtp_scenario()
    box = Box(tls_dovecot)
    box.append(JUNK)
    cert, _key = certificate

    with pytest.raises(ssl.SSLCertVerificationError):
        imap.poll(tls_mailbox(tls_dovecot))  # the system's CAs do not know this certificate
    result = imap.poll(tls_mailbox(tls_dovecot, ca_file=cert))

    assert result.moved == 1
    box.client.logout()


def test_the_poll_imap_command_takes_a_ca_file(
    tls_dovecot, certificate, transactional_db, monkeypatch, settings, tmp_path
):
    build_smtp_scenario()
    cert, _key = certificate
    monkeypatch.setenv("INTERORG_IMAP_PASSWORD", IMAP_PASSWORD)
    box = Box(tls_dovecot)
    box.append(JUNK)
    args = [
        *("--host", tls_dovecot.host, "--port", str(tls_dovecot.port), "--starttls"),
        *("--user", tls_dovecot.user, "--once", "--no-process-inline"),
    ]

    call_command("poll_imap", *args, "--ca-file", cert)
    box.append(JUNK.replace(b"junk-1", b"junk-2"))
    settings.INTERORG_IMAP_CA_FILE = cert
    call_command("poll_imap", *args)

    assert Message.objects.filter(direction=Direction.INBOUND).count() == 2
    box.client.logout()
