"""Two rules of what leaves an organization (requestor.scope, requestor.export): an imported
contact is never among its own recipients in scope, wherever it sits, and the SMTP rewrite
replaces only the domain, after the last `@` of the address."""

import uuid

from console.crosscheck import in_scope
from directory.constants import GENERAL_ATTRIBUTES, Kind, Role
from directory.models import Recipient
from requestor.export import transform
from requestor.models import ExportedContainer
from requestor.scope import Scope
from tests.engine.conftest import make_org


def test_a_contact_in_an_exported_container_is_not_in_scope(db):
    org = make_org(2, Role.REQUESTOR)
    ExportedContainer.objects.filter(config=org.config).update(custom_recipients=True)
    own = org.add(kind=Kind.CUSTOM_RECIPIENT, alias="partner", primary_smtp="partner@far.example")
    # A contact where only the organization's own recipients should be (moved there by hand,
    # or left in a container that has since been exported).
    contact = org.add(
        kind=Kind.CUSTOM_RECIPIENT,
        alias="imported",
        primary_smtp="imported@org1.example",
        global_key="ORG1:imported",
        origin_organization="ORG1",
    )
    assert contact.container_id == own.container_id == org.recipients.pk

    recipients = Recipient.objects.filter(organization=org.organization)
    in_q = set(recipients.filter(Scope.of(org.config).q()).values_list("alias", flat=True))
    assert in_q == {"partner", *(person.alias for person in org.people if person.pk != contact.pk)}
    # The full cross-check compares the same set with what the master holds.
    assert str(contact.guid) not in in_scope(org.config)
    assert str(own.guid) in in_scope(org.config)


def row(**attrs: str) -> tuple:
    """A row of requestor.export's RECIPIENT_COLUMNS: GUID, kind, USN, container, trust level,
    hidden flag, then the General attributes in their order."""
    values = [attrs.get(name, "") for name in GENERAL_ATTRIBUTES]
    return (uuid.uuid4(), Kind.MAILBOX, 1, 1, 0, False, *values)


def test_the_smtp_rewrite_keeps_everything_before_the_last_at_sign(db):
    scope = Scope(100, {}, " (ORG2)", "Org3.COM")

    quoted = transform(row(display_name="Quoted", primary_smtp='"a@b"@org2.example'), scope)
    plain = transform(row(display_name="Plain", primary_smtp="plain@org2.example"), scope)
    odd = transform(row(display_name="No Domain", primary_smtp="no-domain"), scope)

    assert quoted == {"display_name": "Quoted (ORG2)", "primary_smtp": '"a@b"@org3.com'}
    assert plain == {"display_name": "Plain (ORG2)", "primary_smtp": "plain@org3.com"}
    assert odd == {"display_name": "No Domain (ORG2)", "primary_smtp": "no-domain"}


def test_each_transform_applies_by_itself(db):
    person = row(display_name="Ann", primary_smtp="ann@org2.example")

    assert transform(person, Scope(100, {}, " (ORG2)", "")) == {
        "display_name": "Ann (ORG2)",
        "primary_smtp": "ann@org2.example",
    }
    assert transform(person, Scope(100, {}, "", "org3.com")) == {
        "display_name": "Ann",
        "primary_smtp": "ann@org3.com",
    }


def test_values_leave_cleaned_and_within_their_length_and_empty_ones_stay_home(db):
    attrs = transform(
        row(
            display_name="Ada\r\nLovelace",
            primary_smtp="ada@org2.example",
            address="1 Main St\r\nSpringfield",
            initials="\x00\x07",  # nothing left once cleaned
            title="T" * 70,  # 64 at most
            department="D" * 64,  # exactly the limit: as it is
        ),
        Scope(100, {}, "", ""),
    )

    assert attrs == {
        "display_name": "Ada Lovelace",
        "primary_smtp": "ada@org2.example",
        "address": "1 Main St\nSpringfield",
        "title": "T" * 64,
        "department": "D" * 64,
    }
