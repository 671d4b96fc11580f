"""Reading a real Samba AD domain controller into the organization's mirror, by its USNs."""

from io import StringIO

import pytest
from django.core.management import call_command

from directory.ad import schema
from directory.constants import DisabledAccounts, HiddenEntries, Kind
from directory.models import Container, Recipient, Tombstone
from tests.ad.administered import Administered

pytestmark = pytest.mark.django_db


@pytest.fixture
def domain(ad_dc) -> Administered:
    return Administered(ad_dc)


def test_it_reads_users_groups_and_contacts_with_their_general_attributes(domain):
    sales = domain.unit("Sales")
    alice = domain.user(
        "alice",
        "alice@branch.example",
        None,
        "--given-name=Alice",
        "--surname=Liddell",
        "--initials=AL",
        "--job-title=Buyer",
        "--company=Branch Ltd",
        "--department=Purchasing",
        "--physical-delivery-office=Room 4",
        "--telephone-number=+44 20 7946 0000",
    )
    domain.modify(
        alice,
        "replace: streetAddress\nstreetAddress: 1 High Street",
        "replace: l\nl: London",
        "replace: st\nst: Greater London",
        "replace: postalCode\npostalCode: EC1A 1AA",
        "replace: co\nco: United Kingdom",
        "replace: proxyAddresses\nproxyAddresses: smtp:alice@branch.example\n"
        "proxyAddresses: SMTP:Alice.Liddell@branch.example",
    )
    buyers = domain.group("Buyers", "buyers@branch.example", sales)
    carol = domain.contact("Carol Partner", "carol@partner.example", sales, givenName="Carol")

    result = domain.scan()

    assert result.full and result.reason == "the first scan of this directory"
    assert domain.mirror() == domain.expected() | {
        # the SMTP: proxy address is the primary one
        domain.guid(alice): (Kind.MAILBOX, "Alice AL. Liddell", "Alice.Liddell@branch.example")
    }
    read = domain.recipient(alice)
    assert (read.first_name, read.last_name, read.initials, read.alias) == (
        "Alice",
        "Liddell",
        "AL.",  # samba-tool's own spelling
        "alice",
    )
    assert (read.title, read.company, read.department, read.office, read.phone) == (
        "Buyer",
        "Branch Ltd",
        "Purchasing",
        "Room 4",
        "+44 20 7946 0000",
    )
    assert (read.address, read.city, read.state, read.postal_code, read.country) == (
        "1 High Street",
        "London",
        "Greater London",
        "EC1A 1AA",
        "United Kingdom",
    )
    group = domain.recipient(buyers)
    assert (group.kind, group.alias, group.primary_smtp) == (
        Kind.DISTRIBUTION_LIST,
        "Buyers",
        "buyers@branch.example",
    )
    contact = domain.recipient(carol)
    assert (contact.kind, contact.target_address, contact.first_name) == (
        Kind.CUSTOM_RECIPIENT,
        "carol@partner.example",
        "Carol",
    )
    # The OU and the Users container are containers, found by their objectGUID.
    assert contact.container.ldap_dn == sales
    assert contact.container.ldap_uuid == domain.guid(sales)
    assert read.container.ldap_dn == domain.dn("CN=Users")
    assert domain.directory.usn_watermark == domain.highest_usn()
    assert domain.directory.last_full_scan_at is not None


def test_a_scan_reads_only_what_changed_after_the_watermark(domain):
    sales = domain.unit("Sales")
    people = [domain.contact(f"Person {n}", f"p{n}@partner.example", sales) for n in range(6)]
    domain.scan()
    assert domain.scan().read == 0

    domain.modify(people[2], "replace: displayName\ndisplayName: Person Two")
    result = domain.scan()

    assert (result.full, result.read, result.updated, result.created) == (False, 1, 1, 0)
    assert domain.recipient(people[2]).display_name == "Person Two"
    assert domain.mirror() == domain.expected()


def test_renames_and_moves_keep_the_recipient_by_its_object_guid(domain):
    sales = domain.unit("Sales")
    support = domain.unit("Support")
    bob = domain.user("bob", "bob@branch.example", sales)
    carol = domain.contact("Carol", "carol@partner.example", sales)
    domain.scan()
    before = {dn: domain.recipient(dn).pk for dn in (bob, carol)}

    domain.rename(carol, "CN=Carol Moved", support)
    domain.rename(sales, "OU=Sales and Marketing")
    domain.scan()

    moved = domain.recipient(f"CN=Carol Moved,{support}")
    assert moved.pk == before[carol]
    assert moved.container.ldap_dn == support
    renamed = domain.dn("OU=Sales and Marketing")
    bob_now = domain.recipient(f"CN=bob,{renamed}")
    assert bob_now.pk == before[bob]
    assert bob_now.container.name == "Sales and Marketing"
    assert bob_now.container.ldap_dn == renamed
    assert domain.mirror() == domain.expected()


def test_deletes_are_found_in_the_deleted_objects_by_usn(domain):
    sales = domain.unit("Sales")
    bob = domain.user("bob", "bob@branch.example", sales)
    carol = domain.contact("Carol", "carol@partner.example", sales)
    domain.scan()
    bob_guid = domain.guid(bob)

    domain.delete(bob)
    result = domain.scan()

    assert (result.full, result.deleted) == (False, 1)
    assert Tombstone.objects.filter(guid=bob_guid).exists()
    assert domain.mirror() == domain.expected()
    assert domain.guid(carol) in domain.mirror()


def test_an_object_that_stops_being_a_recipient_leaves_the_mirror(domain):
    sales = domain.unit("Sales")
    bob = domain.user("bob", "bob@branch.example", sales)
    carol = domain.contact("Carol", "carol@partner.example", sales)
    dave = domain.user("dave", "dave@branch.example", sales)
    domain.scan()

    domain.modify(bob, "delete: mail")
    domain.modify(
        carol,
        f"replace: {schema.MARKER_ATTRIBUTE}\n{schema.MARKER_ATTRIBUTE}: {schema.CONTACT_MARKER}",
    )
    domain.rename(dave, "CN=dave", domain.dn("CN=Computers"))
    result = domain.scan()

    assert (result.full, result.deleted) == (False, 3)
    assert domain.mirror() == domain.expected() == {}


def test_contacts_written_by_interorg_sync_are_never_read(domain):
    imports = domain.unit("InterOrg")
    domain.contact(
        "Imported",
        "imported@org1.example",
        imports,
        **{schema.MARKER_ATTRIBUTE: schema.CONTACT_MARKER, schema.KEY_ATTRIBUTE: "ORG1:imported"},
    )
    domain.add(
        f"dn: OU={schema.HIDDEN_UNIT},{domain.dc.base_dn}\nobjectClass: organizationalUnit\n\n"
    )
    own = domain.contact("Own", "own@partner.example", imports)

    domain.scan()

    assert set(domain.mirror()) == {domain.guid(own)}
    assert not Container.objects.filter(name=schema.HIDDEN_UNIT).exists()


def test_disabled_accounts_are_left_out_or_read_as_the_directory_says(domain):
    sales = domain.unit("Sales")
    bob = domain.user("bob", "bob@branch.example", sales)
    domain.user("dave", "dave@branch.example", sales)
    domain.dc.samba_tool("user", "disable", "bob")

    domain.scan()
    assert domain.guid(bob) not in domain.mirror()

    domain.directory.disabled_accounts = DisabledAccounts.INCLUDE
    domain.directory.save()
    result = domain.scan()
    assert result.full  # the rule changed: everything is compared again
    assert domain.guid(bob) in domain.mirror()

    domain.directory.disabled_accounts = DisabledAccounts.LEAVE_OUT
    domain.directory.save()
    domain.scan()
    domain.dc.samba_tool("user", "enable", "bob")
    assert domain.guid(bob) not in domain.mirror()
    domain.scan()
    assert domain.guid(bob) in domain.mirror()


def test_hidden_recipients_follow_the_directory_s_rule(domain):
    sales = domain.unit("Sales")
    listed = domain.contact("Listed", "listed@partner.example", sales, showInAddressBook=sales)
    unlisted = domain.contact("Unlisted", "unlisted@partner.example", sales)

    domain.scan()  # address_book_only is off: showInAddressBook is not looked at
    assert not Recipient.objects.filter(hidden_from_others=True).exists()

    domain.directory.address_book_only = True
    domain.directory.save()
    domain.scan()
    assert domain.recipient(unlisted).hidden_from_others
    assert not domain.recipient(listed).hidden_from_others

    domain.directory.hidden_entries = HiddenEntries.LEAVE_OUT
    domain.directory.save()
    domain.scan()
    assert set(domain.mirror()) == {domain.guid(listed)}

    domain.modify(unlisted, f"add: showInAddressBook\nshowInAddressBook: {sales}")
    domain.scan()
    assert not domain.recipient(unlisted).hidden_from_others

    domain.directory.hidden_entries = HiddenEntries.INCLUDE
    domain.directory.save()
    domain.modify(listed, "delete: showInAddressBook")
    domain.scan()
    assert not domain.recipient(listed).hidden_from_others


def test_bad_objects_are_reported_and_left_as_they_were(domain):
    sales = domain.unit("Sales")
    domain.contact("Nomail", "x@y.example", sales)
    nomail = f"CN=Nomail,{sales}"
    domain.modify(nomail, "delete: mail")
    bad = domain.contact("Bad", "bad@partner.example", sales)
    hostile = domain.contact("Hostile", "hostile@partner.example", sales)
    domain.scan()
    before = domain.recipient(bad).usn

    domain.modify(bad, "replace: mail\nmail: not an address")
    domain.modify(
        hostile, "replace: displayName\ndisplayName:: " + "PHNjcmlwdD4KYWxlcnQoMSk8L3NjcmlwdD4="
    )
    result = domain.scan()

    assert any(p.startswith(f"{nomail}: left out, it has no mail") for p in result.problems)
    assert any(p.startswith(f"{bad}: left out, its mail") for p in result.problems)
    assert domain.directory.scan_problems == result.problems
    # The bad one stays as the mirror had it; the hostile name is read made safe.
    assert domain.recipient(bad).primary_smtp == "bad@partner.example"
    assert domain.recipient(bad).usn == before
    name = domain.recipient(hostile).display_name
    assert "\n" not in name and name.startswith("<script>")


def test_an_object_left_out_for_a_taken_address_is_read_once_it_is_free(domain):
    sales = domain.unit("Sales")
    first = domain.contact("First", "shared@partner.example", sales)
    domain.scan()
    second = domain.contact("Second", "shared@partner.example", sales)
    result = domain.scan()
    assert any("another recipient has shared@partner.example" in p for p in result.problems)
    assert domain.directory.retry_guids == [str(domain.guid(second))]

    domain.modify(first, "replace: mail\nmail: first@partner.example")
    domain.scan()

    assert domain.mirror() == domain.expected()
    assert domain.directory.retry_guids == []


def test_only_the_units_listed_are_read(domain):
    sales = domain.unit("Sales")
    east = domain.unit("East", sales)
    other = domain.unit("Other")
    inside = domain.contact("Inside", "inside@partner.example", east)
    domain.contact("Outside", "outside@partner.example", other)
    domain.user("bob", "bob@branch.example")
    domain.directory.unit_dns = sales
    domain.directory.save()

    domain.scan()

    assert set(domain.mirror()) == {domain.guid(inside)}
    assert domain.recipient(inside).container.parent.ldap_dn == sales

    # A unit moved into the scope brings what it held, unchanged since the last scan.
    domain.rename(other, "OU=Other", sales)
    result = domain.scan()
    assert result.full and "came into the scope" in result.reason
    assert len(domain.mirror()) == 2

    # And moved out of it, takes it away.
    domain.rename(f"OU=Other,{sales}", "OU=Other", domain.dc.base_dn)
    result = domain.scan()
    assert set(domain.mirror()) == {domain.guid(inside)}


def test_an_object_moved_out_of_a_base_dn_below_the_domain_leaves(ad_dc):
    corp = f"OU=Corp,{ad_dc.base_dn}"
    ad_dc.ldap_tool("ldapadd", f"dn: {corp}\nobjectClass: organizationalUnit\n\n")
    domain = Administered(ad_dc, base_dn=corp)
    staff = domain.unit("Staff", corp)
    elsewhere = domain.unit("Elsewhere")
    ada = domain.contact("Ada", "ada@partner.example", staff)
    domain.contact("Outside", "outside@partner.example", elsewhere)
    domain.scan()
    assert set(domain.mirror()) == {domain.guid(ada)}

    domain.rename(ada, "CN=Ada", elsewhere)
    result = domain.scan()

    assert (result.full, result.deleted) == (False, 1)
    assert domain.mirror() == {}


def test_the_command_line_scans_active_directory_by_its_usns(domain):
    domain.contact("Carol", "carol@partner.example", domain.unit("Sales"))
    out = StringIO()

    call_command("ldap", "scan", domain.organization.name, stdout=out)

    assert "created 1" in out.getvalue()
    assert "compared in full: the first scan of this directory" in out.getvalue()
    assert len(domain.mirror()) == 1


def test_the_command_line_check_reports_the_domain_controller(domain):
    domain.contact("Carol", "carol@partner.example", domain.unit("Sales"))
    out = StringIO()

    call_command("ldap", "check", domain.organization.name, stdout=out)

    text = out.getvalue()
    assert "1 recipients" in text or "1 recipient" in text
    assert "dc1.branch.example" in text and "highest committed USN" in text
    assert "Show Deleted control supported" in text
