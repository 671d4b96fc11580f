"""The MIME form of a message, without sockets: whatever arrives is taken apart without a crash."""

import gzip
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transport import mail
from transport.constants import ATTACHMENT_NAME, ATTACHMENT_TYPE


def interorg_mail(payload: bytes = b"") -> bytes:
    message = EmailMessage()
    message["From"] = "requestor@org2.example"
    message["To"] = "master@org1.example"
    message["Message-ID"] = "<1.interorg@org2.example>"
    message[mail.SIGNATURE_HEADER] = "c2lnbmF0dXJl"
    message[mail.KEY_HEADER] = "ab" * 32
    message.set_content("An InterOrg export.")
    payload = payload or gzip.compress(b'{"protocol": 1}', mtime=0)
    maintype, subtype = ATTACHMENT_TYPE.split("/")
    message.add_attachment(payload, maintype, subtype, filename=ATTACHMENT_NAME)
    return message.as_bytes()


VALID = interorg_mail()


def test_it_takes_apart_a_valid_message():
    parsed = mail.parse(VALID)

    assert parsed.problem == ""
    assert parsed.payload == gzip.compress(b'{"protocol": 1}', mtime=0)
    assert (parsed.signature, parsed.key_fingerprint) == ("c2lnbmF0dXJl", "ab" * 32)
    assert parsed.message_id == "<1.interorg@org2.example>"
    assert parsed.from_address == "requestor@org2.example"
    assert parsed.to_addresses == ("master@org1.example",)


def test_a_forwarded_message_is_one_attachment_not_its_contents():
    forward = EmailMessage()
    forward["From"] = "someone@org2.example"
    forward.set_content("Look at this.")
    forward.add_attachment(BytesParser(policy=policy.default).parsebytes(VALID))

    parsed = mail.parse(forward.as_bytes())

    assert parsed.payload is None
    assert parsed.problem == "The attachment is message/rfc822, not interorg.json.gz."


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_any_bytes_are_parsed_without_an_exception(raw):
    parsed = mail.parse(raw)
    assert parsed.problem or parsed.payload is not None


@settings(max_examples=300)
@given(st.integers(0, len(VALID)), st.binary(max_size=64), st.integers(0, len(VALID)))
def test_a_damaged_message_is_parsed_without_an_exception(cut, garbage, at):
    damaged = VALID[:at] + garbage + VALID[at:cut]
    parsed = mail.parse(damaged)
    assert parsed.problem or parsed.payload is not None


@given(st.text(max_size=300))
def test_one_line_leaves_no_line_break_or_control_character(text):
    line = mail.one_line(text)
    assert not mail.CONTROL_CHARACTERS.search(line)
    assert line == line.strip() and len(line) <= 200
