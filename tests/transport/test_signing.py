"""Authenticity and replay protection: nobody can forge, alter, redirect or replay a message."""

import base64
import io
import time
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.core.management import call_command
from django.test import override_settings

from master.models import AllowedRequestor, GlobalEntry
from requestor.cycle import sync_all
from requestor.export import build_export
from tests.engine.conftest import MASTER_DN
from tests.transport.documents import CORRUPTION_SEED, NOW_MS, seeded_export_doc
from transport import inbox, outbox, signing, wire
from transport.constants import AddressType, Status
from transport.models import Message, SigningKey


@pytest.fixture(autouse=True)
def keys(scenario):
    """Every organization has signed something before: its key exists."""
    return {name: signing.active_key(org.organization.pk) for name, org in scenario.orgs.items()}


def export_payload(org, **changes) -> bytes:
    [(document, _payload)] = build_export(org.config).parts
    return wire.encode(document | changes)


def deliver(sender, recipient, payload, signed_by=None, signed_for=None):
    """Hand a message to the inbox as if it had arrived, signed by an organization's key."""
    signature, key = ("", "")
    if signed_by is not None:
        signature, key = signing.sign(signed_by.pk, signed_for or recipient, payload)
    message = outbox.receive(
        sender, recipient, payload, AddressType.EX, signature=signature, key_fingerprint=key
    )
    inbox.process_pending()
    message.refresh_from_db()
    return message


def test_the_signature_refuses_every_single_byte_corruption(scenario):
    # Including those that decode to the same document (test_wire): every byte as sent is signed.
    organization = scenario["ORG2"].organization
    payload = wire.encode(seeded_export_doc(CORRUPTION_SEED))
    signature, key = signing.sign(organization.pk, MASTER_DN, payload)
    trusted = signing.local_public_keys(organization.pk)
    signing.verify(MASTER_DN, payload, signature, key, trusted)

    for index in range(len(payload)):
        for mask in (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x55, 0xFF):
            corrupt = bytearray(payload)
            corrupt[index] ^= mask
            with pytest.raises(signing.SignatureError, match="forged or altered"):
                signing.verify(MASTER_DN, bytes(corrupt), signature, key, trusted)


def test_it_names_the_key_a_message_is_signed_with_and_the_keys_it_trusts(scenario):
    org2, org3 = scenario["ORG2"].organization, scenario["ORG3"].organization
    payload = wire.encode(seeded_export_doc(CORRUPTION_SEED))
    signature, key = signing.sign(org2.pk, MASTER_DN, payload)
    signing.generate_key(org3.pk)  # ORG3 has two keys now, neither of them ORG2's
    trusted = signing.local_public_keys(org3.pk)
    fingerprints = sorted(signing.fingerprint(public)[:16] for public in trusted)
    assert len(fingerprints) == 2

    def refusal(*args) -> str:
        with pytest.raises(signing.SignatureError) as refused:
            signing.verify(MASTER_DN, payload, *args)
        return str(refused.value)

    untrusted = (
        "The message is signed with key {}, which is not a key trusted for its sender "
        "(trusted: {}). Paste the sender's current public key into its configuration if it "
        "rotated its key."
    )
    known = ", ".join(fingerprints)
    assert refusal(signature, key, trusted) == untrusted.format(key[:16], known)
    assert refusal(signature, key, []) == untrusted.format(key[:16], "none")
    assert refusal(signature, "", trusted) == untrusted.format("(none)", known)
    assert refusal("", key, trusted) == (
        "The message is not signed; every InterOrg message must be."
    )


def test_the_signed_bytes_are_those_the_protocol_documents():
    """docs/protocol.md: the signature covers b"interorg-sync/1\\n" + the lowercased recipient +
    b"\\n" + the payload. Another implementation, or another version, signs exactly that."""
    private = Ed25519PrivateKey.generate()
    public = base64.b64encode(
        private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    ).decode()
    payload = wire.encode(seeded_export_doc(CORRUPTION_SEED))
    documented = b"interorg-sync/1\n" + b"master@hub.example\n" + payload
    signature = base64.b64encode(private.sign(documented)).decode()

    # Whatever the case and spacing the address arrives in.
    signing.verify(
        " Master@HUB.example ", payload, signature, signing.fingerprint(public), [public]
    )
    # A signature over anything else is refused.
    for other in (b"interorg-sync/1\n" + b"MASTER@HUB.EXAMPLE\n" + payload, documented + b"\n"):
        forged = base64.b64encode(private.sign(other)).decode()
        with pytest.raises(signing.SignatureError, match="forged or altered"):
            signing.verify(
                "master@hub.example", payload, forged, signing.fingerprint(public), [public]
            )


def test_a_signature_made_here_verifies_over_the_documented_bytes(scenario):
    organization = scenario["ORG2"].organization.pk
    payload = wire.encode(seeded_export_doc(CORRUPTION_SEED))
    signature, key = signing.sign(organization, " Master@HUB.example", payload)

    public = SigningKey.objects.get(organization_id=organization, fingerprint=key).public_key
    verifier = Ed25519PublicKey.from_public_bytes(base64.b64decode(public))
    verifier.verify(base64.b64decode(signature), b"interorg-sync/1\nmaster@hub.example\n" + payload)


def test_a_signature_that_is_not_strict_base64_is_refused(scenario):
    """Characters outside base64 are not skipped: the header is refused as it came."""
    organization = scenario["ORG2"].organization.pk
    payload = wire.encode(seeded_export_doc(CORRUPTION_SEED))
    signature, key = signing.sign(organization, MASTER_DN, payload)
    trusted = signing.local_public_keys(organization)
    signing.verify(MASTER_DN, payload, signature, key, trusted)

    for bent in (signature[:8] + "!" + signature[8:], signature[:8] + " " + signature[8:]):
        with pytest.raises(signing.SignatureError, match="forged or altered"):
            signing.verify(MASTER_DN, payload, bent, key, trusted)


def test_it_accepts_a_message_signed_by_its_sender(scenario):
    org2 = scenario["ORG2"]

    message = deliver(org2.config.dn, MASTER_DN, export_payload(org2), org2.organization)

    assert message.status == Status.PROCESSED, message.error
    assert GlobalEntry.objects.filter(origin="ORG2").count() == 2


def test_it_rejects_a_sender_not_on_the_allowlist(scenario):
    org2 = scenario["ORG2"]
    AllowedRequestor.objects.filter(address=org2.config.dn).delete()

    message = deliver(org2.config.dn, MASTER_DN, export_payload(org2), org2.organization)

    assert message.status == Status.REJECTED
    assert "may not send to" in message.error
    assert GlobalEntry.objects.count() == 0


def test_it_rejects_a_message_signed_with_another_organizations_key(scenario):
    org2, org3 = scenario["ORG2"], scenario["ORG3"]

    message = deliver(org2.config.dn, MASTER_DN, export_payload(org2), org3.organization)

    assert message.status == Status.REJECTED
    assert "not a key trusted for its sender" in message.error
    assert GlobalEntry.objects.count() == 0


def test_it_rejects_an_unsigned_message(scenario):
    org2 = scenario["ORG2"]

    message = deliver(org2.config.dn, MASTER_DN, export_payload(org2))

    assert message.status == Status.REJECTED
    assert message.error == "The message is not signed; every InterOrg message must be."


def test_it_says_where_the_key_of_an_allowed_sender_from_elsewhere_comes_from(scenario):
    """Allowed, but from another installation and with no key pasted: nothing to verify with."""
    far = "/o=FAR/ou=Site/cn=Recipients/cn=REQUESTOR"
    AllowedRequestor.objects.create(master=scenario.master, address=far, organization_name="FAR")
    org2 = scenario["ORG2"]
    payload = export_payload(org2, sender={"organization": "FAR", "address": far})

    message = deliver(far, MASTER_DN, payload, org2.organization)

    assert (message.status, message.error) == (
        Status.REJECTED,
        f"No public key is configured for {far}; paste the key that `manage.py keys show` "
        "prints in the sender's organization.",
    )
    assert GlobalEntry.objects.count() == 0


def test_it_rejects_an_altered_payload(scenario):
    org2 = scenario["ORG2"]
    payload = export_payload(org2)
    signature, key = signing.sign(org2.organization.pk, MASTER_DN, payload)
    altered = export_payload(org2, usn_through=99)

    message = outbox.receive(
        org2.config.dn, MASTER_DN, altered, AddressType.EX, signature=signature, key_fingerprint=key
    )
    inbox.process_pending()
    message.refresh_from_db()

    assert message.status == Status.REJECTED
    assert message.error == "The signature does not match the message: forged or altered."


def test_it_rejects_a_reply_redirected_to_another_requestor(scenario):
    sync_all()
    org2, org3 = scenario["ORG2"], scenario["ORG3"]
    reply = Message.objects.filter(recipient=org2.config.dn, direction="out").last()

    message = outbox.receive(
        MASTER_DN,
        org3.config.dn,
        bytes(reply.payload),
        AddressType.EX,
        signature=reply.signature,
        key_fingerprint=reply.key_fingerprint,
    )
    inbox.process_pending()
    message.refresh_from_db()

    assert message.status == Status.REJECTED
    assert message.error == "The signature does not match the message: forged or altered."


def test_it_trusts_only_the_configured_key_when_one_is_set(scenario):
    org2, org3 = scenario["ORG2"], scenario["ORG3"]
    allowed = AllowedRequestor.objects.get(address=org2.config.dn)
    allowed.public_key = signing.active_key(org3.organization.pk).public_key
    allowed.save()

    refused = deliver(org2.config.dn, MASTER_DN, export_payload(org2), org2.organization)
    allowed.public_key = signing.active_key(org2.organization.pk).public_key
    allowed.save()
    accepted = deliver(org2.config.dn, MASTER_DN, export_payload(org2), org2.organization)

    assert refused.status == Status.REJECTED
    assert accepted.status == Status.PROCESSED, accepted.error


def test_it_keeps_syncing_after_a_key_rotation(scenario):
    sync_all()
    old = signing.active_key(scenario["ORG2"].organization.pk)

    new = signing.generate_key(scenario["ORG2"].organization.pk)
    person = scenario["ORG2"].add(display_name="After Rotation")
    sync_all()

    assert new.fingerprint != old.fingerprint
    assert Message.objects.filter(key_fingerprint=new.fingerprint, status="processed").exists()
    assert "After Rotation (ORG2)" in scenario["ORG1"].contact_names()
    assert person.guid


def test_it_rejects_a_replayed_message(scenario):
    org2 = scenario["ORG2"]
    payload = export_payload(org2)
    first = deliver(org2.config.dn, MASTER_DN, payload, org2.organization)
    before = GlobalEntry.objects.count()

    again = deliver(org2.config.dn, MASTER_DN, payload, org2.organization)

    assert first.status == Status.PROCESSED
    assert again.status == Status.REJECTED
    assert again.error.startswith(f"Replay: message {first.sequence} from {org2.config.dn}")
    assert GlobalEntry.objects.count() == before


@override_settings(INTERORG_REPLAY_WINDOW_SECONDS=60)
def test_it_rejects_a_message_older_than_the_replay_window(scenario):
    org2 = scenario["ORG2"]
    now = int(time.time() * 1000)
    stale = export_payload(org2, sequence=now - 10 * 60 * 1000)
    current = deliver(
        org2.config.dn, MASTER_DN, export_payload(org2, sequence=now), org2.organization
    )

    old = deliver(org2.config.dn, MASTER_DN, stale, org2.organization)

    assert current.status == Status.PROCESSED, current.error
    assert old.status == Status.REJECTED
    assert old.error.startswith("Stale: ")


@override_settings(INTERORG_REPLAY_WINDOW_SECONDS=60)
def test_a_message_exactly_as_old_as_the_replay_window_is_accepted(scenario, monkeypatch):
    org2 = scenario["ORG2"]
    now = signing.now_ms()
    monkeypatch.setattr(signing, "now_ms", lambda: now)

    def sent_at(sequence: int) -> Message:
        payload = export_payload(org2, sequence=sequence, batch=str(uuid.uuid4()))
        return deliver(org2.config.dn, MASTER_DN, payload, org2.organization)

    too_old, oldest = sent_at(now - 60_001), sent_at(now - 60_000)

    assert oldest.status == Status.PROCESSED, oldest.error
    assert (too_old.status, too_old.error) == (
        Status.REJECTED,
        f"Stale: message {now - 60_001} from {org2.config.dn} was written more than the replay "
        "window (60 s) ago, by the clock its sequence follows (if the sender's clock is "
        "behind, set it right).",
    )


@override_settings(INTERORG_REPLAY_WINDOW_SECONDS=60)
def test_a_message_exactly_the_replay_window_behind_the_newest_accepted_is_accepted(
    scenario, monkeypatch
):
    """A sender whose clock runs ahead of this one: its messages are also measured against the
    newest one accepted from it."""
    org2 = scenario["ORG2"]
    now = signing.now_ms()
    monkeypatch.setattr(signing, "now_ms", lambda: now)
    ahead = now + 10 * 60_000

    def sent_at(sequence: int) -> Message:
        payload = export_payload(org2, sequence=sequence, batch=str(uuid.uuid4()))
        return deliver(org2.config.dn, MASTER_DN, payload, org2.organization)

    newest = sent_at(ahead)
    too_old, oldest = sent_at(ahead - 60_001), sent_at(ahead - 60_000)

    assert newest.status == Status.PROCESSED, newest.error
    assert oldest.status == Status.PROCESSED, oldest.error
    assert (too_old.status, too_old.error) == (
        Status.REJECTED,
        f"Stale: message {ahead - 60_001} from {org2.config.dn} is older than the replay "
        f"window (60 s) behind the newest accepted, {ahead}.",
    )


def test_a_new_batch_under_a_sequence_already_accepted_is_a_replay(scenario):
    org2 = scenario["ORG2"]
    first = deliver(
        org2.config.dn, MASTER_DN, export_payload(org2, sequence=NOW_MS), org2.organization
    )
    payload = export_payload(org2, sequence=NOW_MS, batch=str(uuid.uuid4()))

    again = deliver(org2.config.dn, MASTER_DN, payload, org2.organization)

    assert first.status == Status.PROCESSED, first.error
    assert (again.status, again.error) == (
        Status.REJECTED,
        f"Replay: message {NOW_MS} from {org2.config.dn} was already accepted (archived as "
        f"message {first.pk}); nothing to do.",
    )


def test_it_numbers_messages_above_everything_sent_before_a_restore():
    clock = int(time.time() * 1000)

    assert signing.next_sequence(5) >= clock
    assert signing.next_sequence(clock + 10_000) == clock + 10_001


@pytest.mark.django_db
def test_it_shows_and_rotates_keys_without_printing_the_private_key(scenario):
    org2 = scenario["ORG2"].organization
    out = io.StringIO()

    call_command("keys", "show", "ORG2", stdout=out)
    first = SigningKey.objects.get(organization=org2, active=True)
    call_command("keys", "rotate", "org2", stdout=out)
    call_command("keys", "list", stdout=out)

    second = SigningKey.objects.get(organization=org2, active=True)
    text = out.getvalue()
    assert first.public_key in text and second.public_key in text
    assert second.fingerprint in text and first.fingerprint != second.fingerprint
    assert first.private_key not in text and second.private_key not in text
    assert SigningKey.objects.get(pk=first.pk).retired_at is not None


def test_it_never_shows_a_private_key_in_the_admin(scenario, admin_client):
    key = signing.active_key(scenario["ORG1"].organization.pk)

    pages = [
        admin_client.get("/admin/transport/signingkey/"),
        admin_client.get(f"/admin/transport/signingkey/{key.pk}/change/"),
    ]

    assert all(page.status_code == 200 for page in pages)
    assert all(key.private_key.encode() not in page.content for page in pages)
    assert key.fingerprint[:16].encode() in pages[0].content


def test_a_rotation_retires_the_active_key_only(scenario):
    """Each key keeps the time it was retired at: rotating again leaves older keys alone."""
    organization = scenario["ORG2"].organization.pk
    first = signing.active_key(organization)
    signing.generate_key(organization)
    retired = SigningKey.objects.get(pk=first.pk).retired_at
    assert retired is not None

    newest = signing.generate_key(organization)

    keys = SigningKey.objects.filter(organization_id=organization)
    assert list(keys.filter(active=True)) == [newest]
    assert keys.get(pk=first.pk).retired_at == retired
