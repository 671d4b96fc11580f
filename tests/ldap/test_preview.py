"""The preview of an LDAP organization's next cycle reads LDAP and writes nothing to it."""

from directory.models import LdapDirectory, Recipient
from requestor.cycle import sync_all
from requestor.preview import preview_cycle
from tests.engine.helpers import cycle, deliver, queue_cycle, queued
from transport.outbox import deliver_locally


def test_a_preview_applies_a_waiting_reply_without_writing_it_to_ldap(
    mixed, django_capture_on_commit_callbacks
):
    org1, org2 = mixed.scenario["ORG1"], mixed.org2
    org2.add_person("ada", "Ada Lovelace")
    sync_all()
    org1.add(alias="later", display_name="Later Still", primary_smtp="later@org1.example")
    cycle(org1)
    queue_cycle(org2.org)
    deliver(list(queued()))
    (reply,) = queued(recipient=org2.org.config.dn)
    deliver_locally(reply.pk)
    # And a change in LDAP itself, which only a scan sees:
    org2.add_person("grace", "Grace Hopper")
    in_ldap = org2.contacts()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        preview = preview_cycle(org2.org.config.pk)

    assert callbacks == []
    assert org2.contacts() == in_ldap
    (grace,) = [change for change in preview.changes if change.address == "grace@org2.example"]
    assert (grace.op, grace.reason, grace.name) == ("add", "new", "Grace Hopper (ORG2)")
    (waiting,) = preview.replies
    assert [(c.op, c.address) for c in waiting.changes] == [("add", "later@org1.example")]
    mirror = Recipient.objects.filter(organization=org2.org.organization)
    assert not mirror.filter(primary_smtp__in=["grace@org2.example", "later@org1.example"])


def test_a_preview_leaves_contacts_waiting_to_be_written_to_ldap_unwritten(mixed):
    org1, org2 = mixed.scenario["ORG1"], mixed.org2
    sync_all()
    org1.add(alias="late", display_name="Late Arrival", primary_smtp="late@org1.example")
    cycle(org1)
    cycle(org2.org)  # imported into the mirror; written to LDAP after commit, or next cycle
    assert "late@org1.example" not in org2.contacts()

    preview_cycle(org2.org.config.pk)

    assert "late@org1.example" not in org2.contacts()
    cycle(org2.org)
    assert "late@org1.example" in org2.contacts()


def test_a_preview_says_the_cycle_would_fail_while_ldap_is_down(mixed, server):
    sync_all()
    server.stop()

    preview = preview_cycle(mixed.org2.org.config.pk)

    assert any(
        note.startswith("The next cycle would fail now") and "cannot be reached" in note
        for note in preview.notes
    )
    # The failure is not recorded either: the preview changes nothing.
    assert LdapDirectory.objects.get(organization=mixed.org2.org.organization).last_error == ""
