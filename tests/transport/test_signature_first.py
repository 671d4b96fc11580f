"""What is checked before a payload is read, and how much reading it may cost: each test fails
under the mistake named in its docstring."""

import gzip
import io
import json
import tracemalloc

import pytest
from django.test import override_settings

from tests.engine.conftest import MASTER_DN
from tests.transport.test_inbox import export_of, processed, receive, state
from transport import signing, wire
from transport.constants import AddressType, Status
from transport.models import SigningKey
from transport.outbox import receive as archive

MIB = 1024 * 1024


def bomb(size: int) -> bytes:
    """A gzip payload that expands to `size` bytes of a JSON-looking document."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0) as out:
        out.write(b'{"protocol": 1, "padding": "')
        chunk = b" " * MIB
        for _ in range(size // MIB):
            out.write(chunk)
        out.write(b'"}')
    return buffer.getvalue()


@pytest.fixture
def decoder_calls(monkeypatch):
    """Every call of the decoder, which none of these messages may reach."""
    calls = []
    for name in ("decompress", "decode"):
        original = getattr(wire, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(wire, name, spy)
    return calls


@pytest.mark.parametrize("signed", ["unsigned", "wrongly signed", "untrusted key"])
def test_a_bomb_without_a_good_signature_is_refused_before_it_is_read(
    scenario, decoder_calls, signed
):
    """Mistake: decompressing or parsing a payload before its signature is checked."""
    org2 = scenario["ORG2"]
    payload = bomb(64 * MIB)
    signature, key = signing.sign(org2.organization.pk, MASTER_DN, payload)
    if signed == "unsigned":
        signature, key = "", ""
    elif signed == "wrongly signed":
        signature, key = signing.sign(org2.organization.pk, MASTER_DN, b"something else")
    else:
        stranger = SigningKey.objects.create(
            organization=scenario["ORG3"].organization,
            public_key="A" * 43 + "=",
            private_key="",
            fingerprint="f" * 64,
            active=False,
        )
        key = stranger.fingerprint
    before = state()

    message = processed(
        archive(
            org2.config.dn,
            MASTER_DN,
            payload,
            AddressType.EX,
            signature=signature,
            key_fingerprint=key,
        )
    )

    assert message.status == Status.REJECTED
    reasons = {
        "unsigned": "The message is not signed",
        "wrongly signed": "The signature does not match the message",
        "untrusted key": "which is not a key trusted for its sender",
    }
    assert reasons[signed] in message.error
    assert decoder_calls == []
    assert state() == before


def test_a_batch_part_signed_again_under_a_new_sequence_is_a_replay(scenario):
    """Mistake: recognizing a replay by its sequence only: a sender (or a thief of its key)
    re-signing an accepted part under a higher sequence would have it applied twice."""
    org2 = scenario["ORG2"]
    document, payload = export_of(org2)
    first = processed(receive(org2.config.dn, MASTER_DN, payload))
    assert first.status == Status.PROCESSED
    before = state()

    again = dict(document, sequence=document["sequence"] + 1000)
    second = processed(receive(org2.config.dn, MASTER_DN, wire.encode(again)))

    assert second.status == Status.REJECTED
    assert second.error.startswith("Replay:")
    assert state() == before


@override_settings(INTERORG_MAX_DECODED_PAYLOAD=16 * MIB)
def test_decompression_stops_at_the_limit_with_memory_near_it():
    """Mistake: inflating the whole payload and only then comparing its size with the limit: a
    bomb of hundreds of MiB would take that much memory first."""
    payload = bomb(512 * MIB)
    assert len(payload) < MIB

    tracemalloc.start()
    try:
        with pytest.raises(wire.WireError, match="refused as a gzip bomb"):
            wire.decode(payload)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # The output buffer and its copy: a small multiple of the limit, not the 512 MiB.
    assert peak < 3 * 16 * MIB, f"peak {peak / MIB:.0f} MiB"


def test_a_document_just_under_the_limit_is_read():
    document = json.dumps({"protocol": 1}).encode()
    with override_settings(INTERORG_MAX_DECODED_PAYLOAD=len(document)):
        assert wire.decompress(gzip.compress(document)) == document
    too_small = override_settings(INTERORG_MAX_DECODED_PAYLOAD=len(document) - 1)
    with too_small, pytest.raises(wire.WireError, match="gzip bomb"):
        wire.decompress(gzip.compress(document))
