"""The requestor's import rules: conflicts, aliases, and hands off what it did not make."""

import re

import pytest

from directory import changes
from directory.constants import Kind
from directory.models import Recipient
from master.models import GlobalEntry
from requestor import importer
from requestor.cycle import sync_all
from requestor.models import Conflict, ImportedChange
from tests.engine.helpers import (
    assert_converged,
    assert_no_duplicates,
    cycle,
    messages_for,
    synced_fixtures,
)
from tests.transport.documents import reply_doc
from transport import wire
from transport.constants import Direction, Status
from transport.exceptions import MessageRejected
from transport.models import Message

synced_base, synced = synced_fixtures()


def local(alias: str) -> Recipient:
    return Recipient.objects.get(alias=alias, global_key__isnull=True)


def partner_desk(org, address: str) -> Recipient:
    """A custom recipient the organization made itself for a partner's address."""
    return org.add(
        alias="partnerdesk",
        display_name="Partner Desk",
        kind=Kind.CUSTOM_RECIPIENT,
        primary_smtp=address,
        container=org.contractors,
    )


def test_it_reports_an_address_taken_by_a_local_recipient_as_a_conflict(synced):
    org1, org2 = synced["ORG1"], synced["ORG2"]
    mine = partner_desk(org1, "newhire@org2.example")
    mine_before = Recipient.objects.filter(pk=mine.pk).values().get()
    newhire = org2.add(alias="newhire", display_name="New Hire")

    cycle(org2)
    run = cycle(org1)

    conflict = Conflict.objects.get(config=org1.config)
    assert conflict.address == "newhire@org2.example"
    assert conflict.origin == "ORG2"
    assert conflict.display_name == "New Hire (ORG2)"
    assert conflict.local_recipient == mine
    assert "belongs to a recipient of this organization" in conflict.reason
    assert conflict.global_key == GlobalEntry.objects.get(object_id=newhire.guid).global_key
    assert run.conflicts == 1 and run.imported == 0
    assert not org1.contacts().filter(primary_smtp__iexact="newhire@org2.example").exists()
    assert Recipient.objects.filter(pk=mine.pk).values().get() == mine_before
    assert_no_duplicates()
    # Only ORG1 has the clash; the others import the entry.
    cycle(synced["ORG3"])
    assert synced["ORG3"].contacts().filter(primary_smtp="newhire@org2.example").exists()


def test_it_imports_the_entry_once_the_conflict_is_gone(synced):
    org1, org2 = synced["ORG1"], synced["ORG2"]
    mine = partner_desk(org1, "newhire@org2.example")
    org2.add(alias="newhire", display_name="New Hire")
    sync_all()
    assert Conflict.objects.filter(config=org1.config).exists()

    changes.delete_recipients([mine])
    org1.config.import_all_recipients()
    run = cycle(org1)

    assert not Conflict.objects.filter(config=org1.config).exists()
    assert org1.contacts().filter(primary_smtp="newhire@org2.example").count() == 1
    assert run.imported == 1 and run.conflicts == 0
    assert_converged(synced)


def test_it_reports_two_origins_with_one_address_as_a_conflict(synced):
    synced["ORG1"].add(alias="helpdesk1", primary_smtp="help@shared.example")
    synced["ORG2"].add(alias="helpdesk2", primary_smtp="help@shared.example")

    sync_all()

    org3 = synced["ORG3"]
    assert org3.contacts().filter(primary_smtp="help@shared.example").count() == 1
    conflict = Conflict.objects.get(config=org3.config)
    assert conflict.address == "help@shared.example"
    assert conflict.local_recipient is None
    holder = org3.contacts().get(primary_smtp="help@shared.example")
    assert conflict.global_key != holder.global_key
    # ORG1 and ORG2 each hold the other's help desk: no clash there.
    assert synced["ORG1"].contacts().filter(primary_smtp="help@shared.example").count() == 0
    assert_no_duplicates()


def test_it_sets_aside_an_entry_without_a_valid_address_and_takes_unusual_valid_ones(synced):
    """An address the plain pattern does not match is judged by Django's validator: an
    internationalized domain passes, a string that is no address is set aside with the reason."""
    org1, org2 = synced["ORG1"], synced["ORG2"]
    org2.add(alias="annlee", primary_smtp="ann.lee@bücher.example")
    broken = org2.add(alias="broken")
    broken.primary_smtp = "no address at all"
    changes.save_recipient(broken)

    cycle(org2)
    cycle(org1)

    assert org1.contacts().filter(primary_smtp="ann.lee@bücher.example").exists()
    conflict = Conflict.objects.get(config=org1.config)
    assert conflict.reason == "The entry has no valid primary SMTP address ('no address at all')."
    assert not org1.contacts().filter(alias="broken").exists()


def test_it_gives_a_contact_a_unique_alias_when_its_alias_is_taken(synced):
    org1, org2 = synced["ORG1"], synced["ORG2"]
    mine = org1.add(alias="newhire", primary_smtp="someone.else@org1.example")
    person = org2.add(alias="newhire", display_name="New Hire")

    cycle(org2)
    cycle(org1)

    contact = org1.contacts().get(primary_smtp="newhire@org2.example")
    assert contact.alias.startswith("newhire-")
    mine.refresh_from_db()
    assert (mine.alias, mine.primary_smtp) == ("newhire", "someone.else@org1.example")
    aliases = Recipient.objects.filter(organization=org1.organization).values_list(
        "alias", flat=True
    )
    assert len({alias.lower() for alias in aliases}) == len(aliases)
    # Kept on later updates too.
    person.title = "Promoted"
    changes.save_recipient(person)
    cycle(org2)
    cycle(org1)
    contact.refresh_from_db()
    assert contact.title == "Promoted"
    assert contact.alias.startswith("newhire-")


def test_colliding_aliases_get_distinct_fallbacks_of_full_length(synced):
    """Each contact whose alias is taken gets the alias cut to leave room for a hash of its
    own key: as long as an alias may be (64), and different for each contact."""
    org1 = synced["ORG1"]
    long_alias = "a" * 64
    org1.add(alias=long_alias, primary_smtp="local@org1.example")
    for name in ("ORG2", "ORG3"):
        synced[name].add(alias=long_alias, primary_smtp=f"far@{name.lower()}.example")
        cycle(synced[name])
    cycle(org1)

    aliases = sorted(
        org1.contacts().filter(alias__startswith="a" * 55).values_list("alias", flat=True)
    )
    assert len(aliases) == 2 and aliases[0] != aliases[1]
    for alias in aliases:
        assert len(alias) == 64 and re.fullmatch(r"a{55}-[0-9a-f]{8}", alias)


def test_it_never_touches_recipients_it_did_not_create(synced):
    org1 = synced["ORG1"]
    # A contact an administrator made by hand inside the import container.
    by_hand = org1.add(
        alias="byhand",
        display_name="By Hand",
        kind=Kind.CUSTOM_RECIPIENT,
        primary_smtp="byhand@partner.example",
        container=org1.imported,
    )
    fields = ["pk", "usn", "display_name", "primary_smtp", "alias", "container_id", "title"]
    own = set(Recipient.objects.filter(global_key__isnull=True).values_list(*fields))
    for org in synced.orgs.values():
        org.config.import_all_recipients()
        org.config.export_all_recipients()
    gone = local("org2user1").pk
    changes.delete_recipients(Recipient.objects.filter(pk=gone))

    sync_all()

    after = set(Recipient.objects.filter(global_key__isnull=True).values_list(*fields))
    assert after == {row for row in own if row[0] != gone}
    assert by_hand.pk in {row[0] for row in after}
    assert_converged(synced)


def test_it_applies_a_reply_only_from_its_own_master(synced):
    """The inbox refuses a sender the requestor does not trust before any of this runs; the
    importer checks again under the requestor's lock, so a reply that got past the inbox just
    before an administrator pointed the requestor at a new master is refused, not applied."""
    org2 = synced["ORG2"]
    before = set(org2.contacts().values_list("pk", "display_name", "master_usn"))
    master_usn = org2.config.master_usn
    impostor = synced["ORG3"].config.dn
    message = Message(
        direction=Direction.INBOUND,
        status=Status.RECEIVED,
        sender=impostor,
        recipient=org2.config.dn.upper(),  # received at its DN, whatever the case
    )
    document = wire.decode(
        wire.encode(
            reply_doc(
                in_reply_to=str(org2.config.last_export_batch),
                epoch=str(org2.config.master_epoch),
                after=master_usn,
                through=master_usn + 10,
                entries=[],
            )
        )
    )

    with pytest.raises(MessageRejected) as refused:
        importer.handle_reply(message, document)

    assert str(refused.value) == (
        "Replies are accepted only from this requestor's master, "
        f"{org2.config.master_address}; this one came from {impostor}."
    )
    assert message.organization_id == org2.organization.pk
    assert set(org2.contacts().values_list("pk", "display_name", "master_usn")) == before
    assert org2.refresh().config.master_usn == master_usn


def test_it_refuses_replies_without_an_import_container(synced):
    org3 = synced["ORG3"]
    org3.config.import_container = None
    org3.config.save()
    before = set(org3.contacts().values_list("pk", "display_name"))
    person = local("org1user1")
    person.display_name = "Not Imported"
    changes.save_recipient(person)

    sync_all(max_rounds=2)  # ORG3's runs never complete: sync_all would use all its rounds

    rejected = messages_for(org3, status=Status.REJECTED)
    assert rejected.exists()
    assert rejected.first().error == (
        "No container for importing is set; choose one on the Import Config page."
    )
    assert set(org3.contacts().values_list("pk", "display_name")) == before
    assert "Not Imported" in synced["ORG2"].contact_names()


def test_its_history_names_each_contact_and_says_what_an_update_changed(synced):
    """The import history's row of each entry: who and which address for every change, and
    the attributes only for an update (nothing in that column for an addition or a hiding)."""
    org1, org2 = synced["ORG1"], synced["ORG2"]
    newhire = org2.add(alias="newhire", display_name="New Hire")
    key = f"ORG2:{newhire.guid}"

    def rows() -> list[tuple]:
        return list(
            ImportedChange.objects.filter(organization=org1.organization, global_key=key)
            .order_by("pk")
            .values_list("op", "origin", "display_name", "primary_smtp", "detail")
        )

    cycle(org2)
    cycle(org1)
    newhire.display_name = "New Hire-Smith"
    changes.save_recipient(newhire)
    cycle(org2)
    cycle(org1)
    changes.delete_recipients([newhire])
    cycle(org2)
    cycle(org1)

    address = "newhire@org2.example"
    assert rows() == [
        ("added", "ORG2", "New Hire (ORG2)", address, ""),
        ("updated", "ORG2", "New Hire-Smith (ORG2)", address, "display_name"),
        ("hidden", "ORG2", "New Hire-Smith (ORG2)", address, ""),
    ]
