"""Local USNs: every change of an organization's directory takes the next one, deletes too."""

import pytest
from django.db import transaction

from directory import changes
from directory.constants import Kind
from directory.factories import RecipientFactory
from directory.models import Organization, Recipient, Tombstone, allocate_usns

pytestmark = pytest.mark.django_db


def org_usn(org) -> int:
    return Organization.objects.get(pk=org.pk).usn


def test_it_gives_each_create_change_and_delete_the_next_usn(container):
    seen = []
    first = RecipientFactory(container=container)
    seen.append(first.usn)
    second = RecipientFactory(container=container)
    seen.append(second.usn)
    first.title = "Buyer"
    changes.save_recipient(first)
    seen.append(first.usn)
    changes.save_recipient(second, update_fields=["title"])
    seen.append(Recipient.objects.get(pk=second.pk).usn)
    changes.delete_recipients([second])
    seen.append(Tombstone.objects.get().usn)
    assert seen == [1, 2, 3, 4, 5]
    assert org_usn(container.organization) == 5


def test_it_counts_usns_of_each_organization_separately(container, other_container):
    mine = [RecipientFactory(container=container).usn for _ in range(3)]
    theirs = [RecipientFactory(container=other_container).usn for _ in range(2)]
    RecipientFactory(container=container)
    assert mine == [1, 2, 3]
    assert theirs == [1, 2]
    assert org_usn(container.organization) == 4
    assert org_usn(other_container.organization) == 2


def test_it_leaves_a_tombstone_when_a_recipient_is_deleted(container):
    dl = RecipientFactory(container=container, kind=Kind.DISTRIBUTION_LIST)
    guid = dl.guid
    changes.delete_recipients([dl])
    tombstone = Tombstone.objects.get()
    assert (tombstone.guid, tombstone.kind, tombstone.container) == (guid, dl.kind, container)
    assert tombstone.organization == container.organization
    assert tombstone.usn == org_usn(container.organization) == 2
    assert not tombstone.imported


def test_it_marks_the_tombstone_of_an_imported_contact(container):
    contact = RecipientFactory(
        container=container,
        kind=Kind.CUSTOM_RECIPIENT,
        origin_organization="ORG2",
        global_key="ORG2:4f1c",
    )
    changes.delete_recipients([contact])
    assert Tombstone.objects.get().imported


def test_it_leaves_tombstones_when_a_queryset_is_deleted(container, other_container):
    own = RecipientFactory.create_batch(2, container=container)
    contact = RecipientFactory(container=container, global_key="ORG3:1", origin_organization="ORG3")
    theirs = RecipientFactory(container=other_container)
    RecipientFactory(container=container)  # stays
    doomed = [*own, contact, theirs]

    changes.delete_recipients(Recipient.objects.filter(pk__in=[r.pk for r in doomed]))

    tombstones = {t.guid: t for t in Tombstone.objects.all()}
    assert set(tombstones) == {r.guid for r in doomed}
    mine = sorted(t.usn for t in tombstones.values() if t.organization == container.organization)
    assert mine == [5, 6, 7]
    assert tombstones[theirs.guid].usn == 2
    assert [g for g, t in tombstones.items() if t.imported] == [contact.guid]
    assert org_usn(container.organization) == 7
    assert Recipient.objects.count() == 1


def test_it_leaves_nothing_behind_when_the_transaction_fails(container):
    recipient = RecipientFactory(container=container)
    pk = recipient.pk
    with pytest.raises(RuntimeError), transaction.atomic():
        changes.delete_recipients([recipient])
        RecipientFactory(container=container)
        raise RuntimeError("crash mid-way")
    assert list(Recipient.objects.values_list("pk", flat=True)) == [pk]
    assert not Tombstone.objects.exists()
    assert org_usn(container.organization) == 1


@pytest.mark.django_db(transaction=True)
def test_it_refuses_to_allocate_outside_a_transaction(org):
    with pytest.raises(RuntimeError, match="inside transaction.atomic"):
        allocate_usns(org.pk)


def test_it_allocates_a_block_of_consecutive_usns(org):
    with transaction.atomic():
        assert allocate_usns(org.pk, 10) == 1
        assert allocate_usns(org.pk) == 11
    assert org_usn(org) == 11


def own_usn(org) -> int:
    return Organization.objects.get(pk=org.pk).own_usn


def test_the_own_usn_follows_own_changes_and_deletes_only(container):
    """The organization's own USN is the last one an own recipient or its tombstone took: the
    export side is checked once the master acknowledged it. Contacts leave it alone."""
    person = RecipientFactory(container=container)
    contact = RecipientFactory(
        container=container, global_key="ORG2:4f1c", origin_organization="ORG2"
    )
    assert own_usn(container.organization) == person.usn
    changes.delete_recipients([contact])
    assert own_usn(container.organization) == person.usn < org_usn(container.organization)
    changes.delete_recipients(Recipient.objects.filter(pk=person.pk))
    assert own_usn(container.organization) == org_usn(container.organization)


def test_touch_restates_the_organizations_own_recipients_only(container, other_container):
    mine = RecipientFactory(container=container)
    contact = RecipientFactory(container=container, global_key="ORG2:1", origin_organization="ORG2")
    theirs = RecipientFactory(container=other_container)
    before = {r.pk: r.usn for r in Recipient.objects.all()}
    organization = container.organization_id

    assert changes.touch(organization, Recipient.objects.none()) == 0
    assert changes.touch(organization, Recipient.objects.all()) == 1

    after = {r.pk: r.usn for r in Recipient.objects.all()}
    assert after[mine.pk] == org_usn(container.organization) > before[mine.pk]
    assert (after[contact.pk], after[theirs.pk]) == (before[contact.pk], before[theirs.pk])


def test_deleting_says_how_many_went(container):
    person = RecipientFactory(container=container)
    assert changes.delete_recipients([]) == 0
    assert changes.delete_recipients(Recipient.objects.filter(pk=person.pk)) == 1
    assert changes.delete_recipients(Recipient.objects.filter(pk=person.pk)) == 0
