"""A hostile sender against the SMTP receiver, on loopback: 200 mails of 64 KB from strangers
and 200 from a forged agent address. Past the limits every answer is a 4xx, and what the
database keeps stays bounded: no body, and at most as many rows as the limits let in.

Run with `-s` to see the figures."""

import smtplib
import time

import pytest
from django.db.models import Sum
from django.db.models.functions import Length

from tests.mail.conftest import MASTER_SMTP, free_port, smtp_scenario
from transport import archive
from transport.constants import Direction
from transport.models import Message
from transport.smtp import Receiver

MAILS = 200
BODY = (b"A" * 78 + b"\r\n") * 820  # 64 KB


@pytest.fixture
def server(transactional_db, settings):
    smtp_scenario()
    settings.INTERORG_SMTPD_SENDER_MESSAGES_PER_HOUR = 30
    settings.INTERORG_SMTPD_UNKNOWN_SENDER_MESSAGES_PER_HOUR = 20
    settings.INTERORG_SMTPD_MESSAGES_PER_HOUR = 100
    with Receiver("127.0.0.1", free_port(), process_inline=False) as receiver:
        yield receiver


def flood(server: Receiver, senders) -> dict[int, int]:
    """Send MAILS mails on one connection; how many got each final code."""
    codes: dict[int, int] = {}
    with smtplib.SMTP(server.host, server.port, timeout=30) as client:
        for n, sender in zip(range(MAILS), senders, strict=False):
            mail = f"From: {sender}\r\nSubject: flood {n}\r\n\r\n".encode() + BODY
            try:
                client.sendmail(sender, [MASTER_SMTP], mail)
                code = 250
            except smtplib.SMTPSenderRefused as exc:
                code = exc.smtp_code
            except smtplib.SMTPRecipientsRefused as exc:
                [(code, _)] = exc.recipients.values()
            except smtplib.SMTPDataError as exc:
                code = exc.smtp_code
            codes[code] = codes.get(code, 0) + 1
    return codes


def stored() -> dict:
    rows = Message.objects.filter(direction=Direction.INBOUND)
    sizes = rows.aggregate(
        payload=Sum(Length("payload")), headers=Sum(Length("headers")), mail=Sum("size")
    )
    return {"rows": rows.count(), **{k: v or 0 for k, v in sizes.items()}}


def report(title: str, codes: dict[int, int], figures: dict, seconds: float) -> None:
    print(
        f"\n{title}: {MAILS} mails of {len(BODY) // 1024} KB in {seconds:.1f} s; answers "
        + ", ".join(f"{code}: {count}" for code, count in sorted(codes.items()))
        + f"; stored {figures['rows']} rows, {figures['payload']} bytes of body, "
        f"{figures['headers']} bytes of headers (of {figures['mail']} bytes received)"
    )


def test_a_flood_from_strangers_stores_no_body_and_bounded_rows(server):
    started = time.monotonic()
    codes = flood(server, (f"spam{n}@evil.example" for n in range(MAILS)))
    figures = stored()
    report("strangers", codes, figures, time.monotonic() - started)

    assert codes.get(250, 0) <= 20
    assert sum(count for code, count in codes.items() if 400 <= code < 500) >= MAILS - 20
    assert set(codes) <= {250, 451, 452}
    assert figures["rows"] <= 20
    assert figures["payload"] == 0 and archive.usage() == 0
    assert figures["headers"] <= 20 * 200


def test_a_flood_from_a_forged_agent_address_stores_no_body(server):
    started = time.monotonic()
    codes = flood(server, ("requestor@org2.example" for _ in range(MAILS)))
    figures = stored()
    report("forged agent", codes, figures, time.monotonic() - started)

    assert codes.get(250, 0) == 30
    assert codes.get(451, 0) == MAILS - 30
    assert figures["rows"] == 30
    assert figures["payload"] == 0  # unsigned, so rejected, so no body
    assert figures["headers"] <= 30 * 200
