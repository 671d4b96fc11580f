"""Rules of what leaves an organization (requestor.scope, requestor.export): an imported contact
is never among its own recipients in scope, wherever it sits; the SMTP rewrite replaces only the
domain, after the last `@` of the address; an export holds the organization's own changes up to
the USN it read, the whole scope when it is the first."""

import itertools
import uuid

from console.crosscheck import in_scope
from directory import changes
from directory.constants import GENERAL_ATTRIBUTES, Kind, Role
from directory.models import Container, Recipient, Tombstone
from requestor.export import build_export, collect_changes, transform
from requestor.models import ExportedContainer, RequestorConfig
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


def test_an_export_holds_the_organizations_own_changes_up_to_the_usn_it_read(db):
    org2, org3 = make_org(2, Role.REQUESTOR), make_org(3, Role.REQUESTOR)
    ann = org2.add(alias="ann")
    out = org2.add(container=org2.contractors, alias="out")  # not exported
    gone = org2.add(alias="gone")
    contact = org2.add(
        container=org2.imported,
        kind=Kind.CUSTOM_RECIPIENT,
        alias="imported",
        global_key="ORG1:imported",
        origin_organization="ORG1",
    )
    changes.delete_recipients([gone])
    changes.delete_recipients([contact])  # never exported, nor its deletion
    late = org2.add(alias="late")  # committed after the export read the USN
    changes.delete_recipients([late])
    for _ in range(5):
        org3.add()  # another organization's changes, at the same local USNs
    changes.delete_recipients(org3.people[:1])
    tombstones = Tombstone.objects.filter(organization=org2.organization).order_by("usn")
    assert (ann.usn, out.usn, gone.usn, contact.usn) == (1, 2, 3, 4)
    assert [(t.guid, t.usn, t.imported) for t in tombstones] == [
        (gone.guid, 5, False),
        (contact.guid, 6, True),
        (late.guid, 8, False),
    ]
    config, scope = org2.config, Scope.of(org2.config)

    def listed(requestor_usn: int) -> list[tuple[str, str, int]]:
        config.requestor_usn = requestor_usn
        return [(c["id"], c["op"], c["usn"]) for c in collect_changes(config, scope, through=6)]

    # The first export states the scope as it stands: upserts only.
    assert listed(0) == [(str(ann.guid), "upsert", 1)]
    # Later ones state every change since, in scope or not: what left it is deleted.
    assert listed(1) == [(str(out.guid), "delete", 2), (str(gone.guid), "delete", 5)]
    assert listed(6) == []


def test_a_container_inside_itself_leaves_the_scope_whole(db):
    """A loop of containers (written around the console, say by an LDAP server) is followed
    once round: the containers in it take the kinds of the exported ones among them."""
    org = make_org(2, Role.REQUESTOR)
    inner = Container.objects.create(site=org.recipients.site, parent=org.recipients, name="In")
    Container.objects.filter(pk=org.recipients.pk).update(parent=inner)
    kinds = {Kind.MAILBOX, Kind.DISTRIBUTION_LIST}

    assert Scope.of(org.config).kinds == {org.recipients.pk: kinds, inner.pk: kinds}


def test_the_parts_of_an_export_cover_its_usns_one_after_another(db):
    org = make_org(2, Role.REQUESTOR, max_message_size=16 * 1024)
    for number in range(300):
        org.add(alias=f"bulk{number}", title="T" * 60, department=f"Department {number}")
    changes.delete_recipients(org.people[:10])  # tombstones: deletes come last
    config = RequestorConfig.objects.get(pk=org.config.pk)

    full = build_export(config)
    assert len(full.parts) >= 3
    assert {(part["usn_from"], part["usn_through"]) for part, _ in full.parts} == {(0, 310)}

    config.requestor_usn = 5
    export = build_export(config)
    documents = [document for document, _ in export.parts]
    assert len(documents) >= 3
    assert (documents[0]["usn_from"], documents[-1]["usn_through"]) == (5, 310)
    for before, after in itertools.pairwise(documents):
        assert before["usn_through"] == before["changes"][-1]["usn"] == after["usn_from"]
    first = documents[0]["sequence"]
    assert [(d["part"], d["parts"], d["sequence"]) for d in documents] == [
        (number, len(documents), first + number - 1) for number in range(1, len(documents) + 1)
    ]


def test_an_export_tells_the_master_what_its_organization_holds_of_it(db):
    org = make_org(2, Role.REQUESTOR)
    epoch = uuid.uuid4()
    RequestorConfig.objects.filter(pk=org.config.pk).update(
        master_usn=42, master_epoch=epoch, master_fingerprint="ab" * 16
    )
    config = RequestorConfig.objects.get(pk=org.config.pk)

    def header(**fields) -> tuple:
        for name, value in fields.items():
            setattr(config, name, value)
        document = build_export(config).parts[0][0]
        return document["master_usn"], document["master_epoch"], document["master_fingerprint"]

    assert header() == (42, str(epoch), "ab" * 16)
    # A full reply is asked for with master USN 0, and no fingerprint to check.
    assert header(full_reply_pending=True) == (0, str(epoch), None)
    assert header(full_reply_pending=False, master_fingerprint="") == (42, str(epoch), None)
    assert header(master_epoch=None) == (42, None, None)
