"""The three organizations converge when ORG2 and ORG3 reach the master over SMTP."""

from requestor.cycle import sync_all
from tests.engine.helpers import assert_converged, refresh
from tests.mail.conftest import MASTER_SMTP, smtp_scenario
from transport.constants import AddressType, Direction, Status
from transport.models import Message


def test_three_organizations_converge_over_smtp(receiver):
    scenario = smtp_scenario()

    # Each round: every requestor's cycle, then outbox.deliver_pending (SMTP to the receiver,
    # which archives) and inbox.process_pending, until a round exchanges nothing.
    rounds = sync_all(max_rounds=6)

    assert rounds[-1].quiet
    assert_converged(refresh(scenario))
    for name in ("ORG2", "ORG3"):
        assert scenario[name].contact_names()  # each holds the others' people
    smtp_out = Message.objects.filter(direction=Direction.OUTBOUND, address_type=AddressType.SMTP)
    smtp_in = Message.objects.filter(direction=Direction.INBOUND, address_type=AddressType.SMTP)
    assert set(smtp_out.values_list("status", flat=True)) == {Status.SENT}
    assert set(smtp_in.values_list("status", flat=True)) == {Status.PROCESSED}
    # Every mail sent arrived once, with its Message-ID, signature and payload unchanged.
    sent = {m.message_id: m for m in smtp_out}
    arrived = {m.message_id: m for m in smtp_in}
    assert sent.keys() == arrived.keys() and len(sent) == smtp_out.count() == smtp_in.count()
    for message_id, out in sent.items():
        copy = arrived[message_id]
        assert (copy.sender, copy.recipient) == (out.sender, out.recipient)
        assert (copy.signature, copy.key_fingerprint) == (out.signature, out.key_fingerprint)
        assert bytes(copy.payload) == bytes(out.payload)
    kinds = set(smtp_in.values_list("recipient", "kind"))
    assert kinds == {
        (MASTER_SMTP, "export"),
        ("requestor@org2.example", "reply"),
        ("requestor@org3.example", "reply"),
    }
    # ORG1's own requestor still talks to its master inside the installation.
    assert not smtp_out.filter(sender__icontains="org1").exclude(sender=MASTER_SMTP).exists()
