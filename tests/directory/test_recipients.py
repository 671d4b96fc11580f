"""Validation of recipients: addresses, aliases, trust levels, custom recipients."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from directory import changes
from directory.constants import Kind
from directory.factories import RecipientFactory

pytestmark = pytest.mark.django_db

DUPLICATE = "Another recipient of this organization has that"


def test_it_accepts_a_valid_mailbox(container):
    recipient = RecipientFactory.build(container=container, primary_smtp="Jane.Doe@org1.example")
    recipient.full_clean()
    changes.save_recipient(recipient)
    assert recipient.organization == container.organization


@pytest.mark.parametrize("address", ["jane", "jane@", "@org1.example", "jane doe@org1.example"])
def test_it_rejects_an_invalid_smtp_address(container, address):
    recipient = RecipientFactory.build(container=container, primary_smtp=address)
    with pytest.raises(ValidationError) as exc:
        recipient.full_clean()
    assert "primary_smtp" in exc.value.message_dict


@pytest.mark.parametrize(
    ("changed", "kept"),
    [("primary_smtp", {"alias": "someone-else"}), ("alias", {"primary_smtp": "x@org1.example"})],
)
def test_it_rejects_a_duplicate_in_the_organization_ignoring_case(container, changed, kept):
    first = RecipientFactory(container=container)
    twin = RecipientFactory.build(
        container=container, **{changed: getattr(first, changed).upper()}, **kept
    )
    with pytest.raises(ValidationError, match=DUPLICATE):
        twin.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        changes.save_recipient(twin)


def test_it_allows_the_same_address_and_alias_in_another_organization(container, other_container):
    first = RecipientFactory(container=container)
    twin = RecipientFactory.build(
        container=other_container, alias=first.alias, primary_smtp=first.primary_smtp
    )
    twin.full_clean()
    changes.save_recipient(twin)
    assert twin.organization != first.organization


@pytest.mark.parametrize("level", [0, 100])
def test_it_accepts_trust_levels_at_the_limits(container, level):
    RecipientFactory.build(container=container, trust_level=level).full_clean()


@pytest.mark.parametrize("level", [-1, 101, 5000])
def test_it_rejects_a_trust_level_out_of_range(container, level):
    recipient = RecipientFactory.build(container=container, trust_level=level)
    with pytest.raises(ValidationError) as exc:
        recipient.full_clean()
    assert "trust_level" in exc.value.message_dict
    with pytest.raises(IntegrityError), transaction.atomic():
        changes.save_recipient(recipient)


def test_it_gives_a_custom_recipient_its_smtp_address_as_target(container):
    contact = RecipientFactory.build(container=container, kind=Kind.CUSTOM_RECIPIENT)
    contact.full_clean()
    assert contact.target_address == contact.primary_smtp


def test_it_rejects_a_target_address_on_a_mailbox(container):
    mailbox = RecipientFactory.build(container=container, target_address="elsewhere@example.com")
    with pytest.raises(ValidationError) as exc:
        mailbox.full_clean()
    assert "target_address" in exc.value.message_dict


def test_it_keeps_distribution_list_members(container):
    people = RecipientFactory.create_batch(3, container=container)
    dl = RecipientFactory(container=container, kind=Kind.DISTRIBUTION_LIST, members=people)
    assert set(dl.members.all()) == set(people)
    assert list(people[0].member_of.all()) == [dl]


def test_it_names_a_recipient_by_its_dn(container):
    recipient = RecipientFactory(container=container, alias="jdoe")
    assert recipient.dn == "/o=ORG1/ou=Site1/cn=Recipients/cn=jdoe"


def test_new_recipients_get_guids_in_the_order_they_are_made(container):
    # Version 7 GUIDs, each greater than the one before, whether a recipient is saved alone
    # (the console, the API, a scan) or written in bulk (an import's contacts), so that their
    # unique index grows at its right edge.
    organization = container.organization
    alone = []
    for number in range(3):
        recipient = RecipientFactory.build(
            container=container, primary_smtp=f"alone{number}@org1.example"
        )
        changes.save_recipient(recipient)
        alone.append(recipient.guid)
    fields = ["organization_id", "container_id", "kind", "display_name", "alias", "primary_smtp"]
    rows = [
        (organization.pk, container.pk, Kind.MAILBOX, f"Bulk {n}", f"bulk{n}", f"bulk{n}@x.example")
        for n in range(50)
    ]
    first = changes.allocate_usns(organization.pk, len(rows))
    rows = [(*row, first + n) for n, row in enumerate(rows)]
    fields.append("usn")
    changes.insert_recipients(organization.pk, fields, rows)
    bulk = list(
        organization.recipients.filter(alias__startswith="bulk")
        .order_by("usn")
        .values_list("guid", flat=True)
    )

    made = [*alone, *bulk]
    assert len(made) == 53
    assert {guid.version for guid in made} == {7}
    assert made == sorted(made)
    assert len(set(made)) == len(made)
