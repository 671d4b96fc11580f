"""The first sync_all of the three organizations: who holds what, and what never leaves."""

from directory import changes
from directory.constants import GENERAL_ATTRIBUTES, Kind
from directory.models import Container, Recipient
from master.models import GlobalEntry
from tests.engine.helpers import (
    assert_converged,
    contact_set,
    decoded_outbound,
    outbound,
    synced_fixtures,
)
from transport import wire


def add_edge_cases(scenario):
    """Each organization gets recipients that are just in scope and some that are not, and
    everyone custom attributes that must not leave."""
    org1, org2, org3 = scenario["ORG1"], scenario["ORG2"], scenario["ORG3"]
    org1.add(alias="org1list", display_name="ORG1 All Staff", kind=Kind.DISTRIBUTION_LIST)
    org1.add(
        alias="org1vendor",
        display_name="ORG1 Vendor",
        kind=Kind.CUSTOM_RECIPIENT,
        primary_smtp="vendor@elsewhere.example",
    )
    org2.add(alias="org2edge", display_name="ORG2 Edge", trust_level=50)
    org2.add(alias="org2secret", display_name="ORG2 Secret", trust_level=51)
    org3.add(alias="org3temp", display_name="ORG3 Temp", container=org3.contractors)
    nested = Container.objects.create(
        site=org3.recipients.site, parent=org3.recipients, name="Research"
    )
    org3.add(alias="org3lab", display_name="ORG3 Lab", container=nested)
    for person in Recipient.objects.filter(global_key__isnull=True):
        person.custom_attribute_2 = f"secret2-{person.alias}"
        person.custom_attribute_15 = "payroll-7"
        changes.save_recipient(person)


# The state after the initial sync_all, checked against the oracle; each test reads it.
synced_base, mixed = synced_fixtures(prepare=add_edge_cases)


def test_it_gives_each_organization_exactly_the_others_in_scope_recipients(mixed):
    org1, org2, org3 = mixed["ORG1"], mixed["ORG2"], mixed["ORG3"]
    org1_names = {"ORG1 User 1", "ORG1 User 2", "ORG1 User 3", "ORG1 All Staff"}
    org2_names = {f"{n} (ORG2)" for n in ("ORG2 User 1", "ORG2 User 2", "ORG2 User 3")}
    org2_names.add("ORG2 Edge (ORG2)")
    org3_names = {"ORG3 User 1", "ORG3 User 2", "ORG3 User 3", "ORG3 Lab"}
    assert org1.contact_names() == org2_names | org3_names
    assert org2.contact_names() == org1_names | org3_names
    assert org3.contact_names() == org1_names | org2_names
    assert_converged(mixed)


def test_it_records_provenance_on_every_contact(mixed):
    org1, org2 = mixed["ORG1"], mixed["ORG2"]
    person = Recipient.objects.get(alias="org1user1", global_key__isnull=True)
    contact = org2.contacts().get(primary_smtp="org1user1@org1.example")
    entry = GlobalEntry.objects.get(object_id=person.guid)
    assert contact.kind == Kind.CUSTOM_RECIPIENT
    assert contact.container == org2.imported
    assert contact.origin_organization == "ORG1"
    assert contact.global_key == entry.global_key
    assert contact.master_usn == entry.usn > 0
    assert contact.target_address == "org1user1@org1.example"
    assert contact.title == "Engineer"
    assert contact.custom_attribute_1 == ""
    assert contact.guid != person.guid
    # Imported contacts of ORG1 are never exported, so no org holds a contact of a contact.
    assert not org1.contacts().filter(origin_organization="ORG1").exists()
    assert GlobalEntry.objects.filter(origin="ORG1").count() == 4


def test_it_applies_the_display_name_suffix_and_smtp_rewrite(mixed):
    org1 = mixed["ORG1"]
    assert ("ORG2", "ORG2 User 1 (ORG2)", "org2user1@org2.example") in contact_set(org1)
    from_org3 = {row for row in contact_set(org1) if row[0] == "ORG3"}
    assert {smtp for _, _, smtp in from_org3} == {
        "org3user1@org3.com",
        "org3user2@org3.com",
        "org3user3@org3.com",
        "org3lab@org3.com",
    }
    # The transforms apply to what leaves ORG3, not to ORG3's own directory.
    assert Recipient.objects.get(alias="org3lab", global_key__isnull=True).primary_smtp == (
        "org3lab@org3.example"
    )


def test_it_leaves_out_recipients_beyond_the_scope(mixed):
    everywhere = set(Recipient.objects.filter(global_key__isnull=False).values_list("alias"))
    aliases = {alias for (alias,) in everywhere}
    assert "org2edge" in aliases
    for absent in ("org2secret", "org1vendor", "org3temp"):
        assert absent not in aliases
    assert not Recipient.objects.filter(
        global_key__isnull=False, primary_smtp__in=["vendor@elsewhere.example"]
    ).exists()
    # Nothing the master published came from out of scope either.
    published = {entry.attrs.get("alias") for entry in GlobalEntry.objects.filter(deleted=False)}
    assert published.isdisjoint({"org2secret", "org1vendor", "org3temp"})


def test_it_keeps_custom_attributes_and_other_fields_inside_the_organization(mixed):
    messages = decoded_outbound()
    assert {document.type for _, document in messages} == {"export", "reply"}
    secrets = [f"secret-{alias}" for alias in Recipient.objects.values_list("alias", flat=True)] + [
        "secret2-",
        "payroll-7",
        "trust_level",
        "custom_attribute",
        "target_address",
    ]
    for message, document in messages:
        items = document.changes if document.type == "export" else document.entries
        for item in items:
            assert set(item.attrs) <= set(GENERAL_ATTRIBUTES)
        raw = wire.decompress(bytes(message.payload)).decode()
        for secret in secrets:
            assert secret not in raw, (message.pk, secret)
    assert outbound().count() == len(messages) > 0
