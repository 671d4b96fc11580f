"""Message authenticity: every payload is signed with its organization's Ed25519 key.

The signature covers the recipient address as well as the payload, so a message signed for one
requestor cannot be replayed to another. Private keys stay in the database, encrypted with the
secrets key (interorg_site/encryption.py): they are never logged, shown or returned by anything
here.
"""

import base64
import hashlib
import logging
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.db import IntegrityError, transaction
from django.utils import timezone

from transport.models import SigningKey

log = logging.getLogger(__name__)

CONTEXT = b"interorg-sync/1\n"


class SignatureError(ValueError):
    """A signature that is missing, malformed, made with an unknown key, or wrong."""


def fingerprint(public_key: str) -> str:
    """SHA-256 of the raw public key, hex: what administrators compare out of band."""
    return hashlib.sha256(base64.b64decode(public_key)).hexdigest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _raw(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    if isinstance(key, Ed25519PrivateKey):
        return key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def generate_key(organization_id: int) -> SigningKey:
    """Make a new key pair the organization's active one; earlier keys are retired."""
    private = Ed25519PrivateKey.generate()
    public = _b64(_raw(private.public_key()))
    with transaction.atomic():
        SigningKey.objects.filter(organization_id=organization_id, active=True).update(
            active=False, retired_at=timezone.now()
        )
        key = SigningKey.objects.create(
            organization_id=organization_id,
            public_key=public,
            private_key=_b64(_raw(private)),
            fingerprint=fingerprint(public),
        )
    log.info("organization %s has a new signing key %s", organization_id, key.fingerprint)
    return key


def active_key(organization_id: int) -> SigningKey:
    """The organization's signing key, made on first use (by whichever session signs first:
    two workers sending the organization's first messages at once use the same one)."""
    key = SigningKey.objects.filter(organization_id=organization_id, active=True).first()
    if key is not None:
        return key
    try:
        return generate_key(organization_id)
    except IntegrityError:
        # Another session made the first key meanwhile (the unique index held this one's
        # insert until it committed): that one.
        return SigningKey.objects.get(organization_id=organization_id, active=True)


def _signed_bytes(recipient: str, payload: bytes) -> bytes:
    return CONTEXT + recipient.strip().lower().encode() + b"\n" + payload


def sign(organization_id: int, recipient: str, payload: bytes) -> tuple[str, str]:
    """Return (signature, key fingerprint) for a payload sent to `recipient`."""
    key = active_key(organization_id)
    private = Ed25519PrivateKey.from_private_bytes(base64.b64decode(key.private_key))
    return _b64(private.sign(_signed_bytes(recipient, payload))), key.fingerprint


def verify(
    recipient: str, payload: bytes, signature: str, key_fingerprint: str, trusted: list[str]
) -> None:
    """Check a signature against the public keys trusted for its sender; raise SignatureError."""
    if not signature:
        raise SignatureError("The message is not signed; every InterOrg message must be.")
    keys = {fingerprint(key): key for key in trusted}
    public = keys.get(key_fingerprint)
    if public is None:
        known = ", ".join(sorted(f[:16] for f in keys)) or "none"
        raise SignatureError(
            f"The message is signed with key {key_fingerprint[:16] or '(none)'}, which is not "
            f"a key trusted for its sender (trusted: {known}). Paste the sender's current public "
            "key into its configuration if it rotated its key."
        )
    try:
        raw_signature = base64.b64decode(signature, validate=True)
        Ed25519PublicKey.from_public_bytes(base64.b64decode(public)).verify(
            raw_signature, _signed_bytes(recipient, payload)
        )
    except (InvalidSignature, ValueError):
        raise SignatureError(
            "The signature does not match the message: forged or altered."
        ) from None


def local_public_keys(organization_id: int) -> list[str]:
    """Every key an organization of this installation has signed with, newest first."""
    return list(
        SigningKey.objects.filter(organization_id=organization_id).values_list(
            "public_key", flat=True
        )
    )


def now_ms() -> int:
    """The clock message sequences follow: milliseconds since the epoch."""
    return int(time.time() * 1000)


def next_sequence(last: int) -> int:
    """The first new message sequence number after `last`.

    Sequences follow the clock (milliseconds) as well as the counter, so a sender restored from
    a backup still numbers its messages above everything it sent before, and receivers do not
    take its new messages for replays.
    """
    return max(last + 1, now_ms())
