"""Imported contacts written to a real Samba AD domain controller as `contact` objects.

The mirror's contacts are made here directly (as the requestor's import makes them); what AD
holds is read back with samba-tool and ldapsearch, as an administrator would.
"""

import re
import subprocess

import pytest
from django.utils import timezone

from directory import changes
from directory.ad import publish, schema
from directory.backends import DirectoryUnavailable
from directory.models import LdapDirectory, Recipient
from requestor.factories import RequestorConfigFactory
from tests.ad.domain import Domain, extend_with_exchange

pytestmark = pytest.mark.django_db


@pytest.fixture
def domain(ad_dc):
    return Domain(ad_dc)


def test_contacts_are_written_as_ad_contacts_that_samba_tool_lists(domain):
    alice = domain.contact(
        "alice",
        "Alice Example",
        title="Engineer",
        company="Org One",
        department="R&D",
        office="B12",
        phone="+1 (555) 0100",
        address="1 Main Street\nBuilding 2",
        city="Springfield",
        state="IL",
        postal_code="62701",
        country="United States",
        initials="AE",
        target_address="alice@mail.org1.example",
    )
    domain.contact("bob", "Bob, Jr. <Ops>", origin="ORG3")

    result = domain.publish()

    assert (result.added, result.problems) == (2, [])
    dn = f"CN=Alice Example,{domain.imports}"
    assert dn in " ".join(domain.contact_list())
    assert "Bob" in domain.dc.samba_tool("contact", "list")
    written = domain.ours()["ORG1:alice"]
    assert written["dn"] == dn
    assert written["objectClass"][-1] == "contact"
    expected = {
        "displayName": "Alice Example",
        "givenName": "Alice",
        "sn": "Example",
        "initials": "AE",
        "title": "Engineer",
        "company": "Org One",
        "department": "R&D",
        "physicalDeliveryOfficeName": "B12",
        "telephoneNumber": "+1 (555) 0100",
        "streetAddress": "1 Main Street\nBuilding 2",
        "l": "Springfield",
        "st": "IL",
        "postalCode": "62701",
        "co": "United States",
        "mail": "alice@org1.example",
        "proxyAddresses": "SMTP:alice@org1.example",
        "legacyExchangeDN": f"{alice.container.dn}/cn=alice",
        "adminDescription": "InterOrg Sync contact",
        "adminDisplayName": "ORG1:alice",
        "description": "Imported by InterOrg Sync from ORG1",
    }
    assert {name: written[name] for name in expected} == {
        name: [value] for name, value in expected.items()
    }
    # Samba's schema has no Exchange attributes: none is written.
    assert "targetAddress" not in written and "mailNickname" not in written
    bob = domain.ours()["ORG3:bob"]
    assert bob["dn"] == f"CN=Bob\\, Jr. \\<Ops\\>,{domain.imports}"
    assert bob["cn"] == ["Bob, Jr. <Ops>"]

    directory = LdapDirectory.objects.get(pk=domain.directory.pk)
    assert directory.published_usn == alice.usn + 1 and directory.publish_problems == []
    assert domain.publish().changes == 0  # nothing new
    assert domain.publish(force=True).changes == 0  # and nothing to do when forced


def test_changes_renames_moves_hides_and_deletes_follow_the_mirror(domain):
    alice = domain.contact("alice", "Alice Example", phone="100")
    bob = domain.contact("bob", "Bob Builder")
    carol = domain.contact("carol", "Carol Singer")
    dave = domain.contact("dave", "Dave Gone")
    erin = domain.contact("erin", "Erin Hidden")
    domain.publish()
    guids = {
        key: domain.search(attrs["dn"], "(objectClass=*)")[attrs["dn"]]["objectGUID"]
        for key, attrs in domain.ours().items()
    }

    alice.phone = ""
    alice.title = "Lead"
    changes.save_recipient(alice)
    bob.display_name = "Robert Builder"
    changes.save_recipient(bob)
    carol.container = domain.other
    changes.save_recipient(carol)
    changes.delete_recipients([dave])
    changes.hide_contacts(domain.organization.pk, [erin])
    result = domain.publish()

    assert result.problems == []
    assert (result.renamed, result.deleted) == (3, 1)
    ours = domain.ours()
    assert set(ours) == {"ORG1:alice", "ORG1:bob", "ORG1:carol", "ORG1:erin"}
    assert "telephoneNumber" not in ours["ORG1:alice"]
    assert ours["ORG1:alice"]["title"] == ["Lead"]
    assert ours["ORG1:bob"]["dn"] == f"CN=Robert Builder,{domain.imports}"
    assert ours["ORG1:bob"]["displayName"] == ["Robert Builder"]
    assert ours["ORG1:carol"]["dn"] == f"CN=Carol Singer,{domain.partners}"
    assert ours["ORG1:carol"]["legacyExchangeDN"] == [f"{domain.other.dn}/cn=carol"]
    hidden = schema.hidden_unit_dn(domain.dc.base_dn)
    assert ours["ORG1:erin"]["dn"] == f"CN=Erin Hidden,{hidden}"
    assert "hidden since" in ours["ORG1:erin"]["description"][0]
    listed = domain.contact_list()
    assert f"CN=Dave Gone,{domain.imports}" not in listed
    assert f"CN=Robert Builder,{domain.imports}" in listed
    # Moved and renamed, not deleted and added again: the same objects.
    for key in ("ORG1:bob", "ORG1:carol", "ORG1:erin"):
        dn = ours[key]["dn"]
        assert domain.search(dn, "(objectClass=*)")[dn]["objectGUID"] == guids[key]

    # The hidden contact comes back: the same object, back in the import OU.
    erin.hidden_at = None
    changes.save_recipient(erin)
    assert domain.publish().renamed == 1
    dn = f"CN=Erin Hidden,{domain.imports}"
    assert domain.ours()["ORG1:erin"]["dn"] == dn
    assert domain.search(dn, "(objectClass=*)")[dn]["objectGUID"] == guids["ORG1:erin"]


def test_a_new_contact_takes_the_name_of_one_that_went_in_the_same_publish(domain):
    old = domain.contact("alice", "Alice Example")
    domain.publish()
    changes.delete_recipients([old])
    domain.contact("alice2", "Alice Example", origin="ORG3")
    result = domain.publish()
    assert (result.added, result.deleted, result.problems) == (1, 1, [])
    assert set(domain.ours()) == {"ORG3:alice2"}


def test_contacts_of_one_name_are_told_apart_by_alias(domain):
    domain.contact("alice", "Alice Example")
    domain.contact("alice.e", "Alice Example", origin="ORG3")
    assert domain.publish().added == 2
    names = {key: attrs["cn"][0] for key, attrs in domain.ours().items()}
    assert names == {"ORG1:alice": "Alice Example", "ORG3:alice.e": "Alice Example (alice.e)"}


def test_names_swapped_between_two_contacts_are_renamed_in_turn(domain):
    one = domain.contact("one", "First Name")
    two = domain.contact("two", "Second Name")
    three = domain.contact("three", "Third Name")
    domain.publish()
    # one takes two's name, two takes three's, three a new one: a chain.
    one.display_name, two.display_name, three.display_name = (
        "Second Name",
        "Third Name",
        "Fourth Name",
    )
    for contact in (one, two, three):
        changes.save_recipient(contact)
    result = domain.publish()
    assert (result.renamed, result.problems) == (3, [])
    names = {key: attrs["cn"][0] for key, attrs in domain.ours().items()}
    assert names == {
        "ORG1:one": "Second Name",
        "ORG1:two": "Third Name",
        "ORG1:three": "Fourth Name",
    }


def test_objects_it_did_not_write_are_never_touched(domain):
    dc = domain.dc
    # An administrator's own contact with the name our contact would take, in the import OU,
    # and another one that even carries a key of ours but not the marker.
    dc.samba_tool(
        "contact",
        "create",
        "Alice Example",
        "--ou=OU=InterOrg",
        "--mail-address=own@branch.example",
    )
    dc.ldap_tool(
        "ldapadd",
        f"dn: CN=Stray,{domain.imports}\nobjectClass: contact\n"
        f"adminDisplayName: ORG1:gone\nmail: stray@branch.example\n\n",
    )
    domain.contact("alice", "Alice Example")
    domain.contact("bob", "Bob Builder")

    result = domain.publish()

    assert result.added == 1 and result.deleted == 0
    assert len(result.problems) == 1
    assert f"CN=Alice Example,{domain.imports}" in result.problems[0]
    assert "Already exists" in result.problems[0]
    directory = LdapDirectory.objects.get(pk=domain.directory.pk)
    assert directory.publish_problems == result.problems
    found = domain.search(domain.imports)
    own = found[f"CN=Alice Example,{domain.imports}"]
    assert own["mail"] == ["own@branch.example"] and "adminDescription" not in own
    assert found[f"CN=Stray,{domain.imports}"]["mail"] == ["stray@branch.example"]

    # Our contact renamed onto another name of the administrator's: refused too, it stays.
    dc.samba_tool("contact", "create", "Bobby Admin", "--ou=OU=InterOrg")
    bob = Recipient.objects.get(global_key="ORG1:bob")
    bob.display_name = "Bobby Admin"
    changes.save_recipient(bob)
    result = domain.publish()
    assert any("CN=Bob Builder" in p and "Already exists" in p for p in result.problems)
    assert domain.ours()["ORG1:bob"]["dn"] == f"CN=Bob Builder,{domain.imports}"
    # Its attributes are brought up to date where it is.
    assert domain.ours()["ORG1:bob"]["displayName"] == ["Bobby Admin"]
    admins = domain.search(domain.imports)[f"CN=Bobby Admin,{domain.imports}"]
    assert "adminDescription" not in admins and "displayName" not in admins


def test_a_domain_controller_stopped_half_way_is_completed_by_the_next_publish(domain, monkeypatch):
    for number in range(150):
        domain.contact(f"user{number}", f"User {number}")
    submitted = 0
    real_submit = publish.Pipeline.submit

    def submit_then_stop(self, *args):
        nonlocal submitted
        submitted += 1
        if submitted == 100:
            domain.dc.stop()  # the real server goes away with operations in flight
        return real_submit(self, *args)

    monkeypatch.setattr(publish.Pipeline, "submit", submit_then_stop)
    with pytest.raises(DirectoryUnavailable, match="cannot be reached"):
        domain.publish()
    monkeypatch.undo()
    assert LdapDirectory.objects.get(pk=domain.directory.pk).last_error
    domain.dc.start()
    written = len(domain.ours())
    assert 0 < written < 150

    result = domain.publish()

    assert (result.added, result.problems) == (150 - written, [])
    keys = [attrs[schema.KEY_ATTRIBUTE][0] for attrs in domain.search(domain.imports).values()]
    assert len(keys) == len(set(keys)) == 150
    assert not LdapDirectory.objects.get(pk=domain.directory.pk).last_error


def test_the_queries_do_not_grow_with_the_contacts(domain, django_assert_max_num_queries):
    for number in range(3):
        domain.contact(f"few{number}", f"Few {number}")
    with django_assert_max_num_queries(10) as few:
        domain.publish()
    for number in range(60):
        domain.contact(f"many{number}", f"Many {number}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert domain.publish().added == 60


def test_a_name_is_one_line_of_at_most_64_characters():
    assert publish.contact_name("  Tab\there\nnewline ", "alias", "K:1") == "Tab here newline"
    assert publish.contact_name("", "alias", "K:1") == "alias"
    assert len(publish.contact_name("x" * 300, "a", "K")) == 64
    assert re.fullmatch(r"CN=\\#1\\, two,OU=X", publish.contact_dn("#1, two", "OU=X"))


# docs/ad.md's grant of List Contents and Read Property on the Deleted Objects container, run
# with Samba's own Python on the domain controller (its database, as root).
GRANT_DELETED_OBJECTS = """
import sys
import ldb
from samba.auth import system_session
from samba.dcerpc import security
from samba.ndr import ndr_pack, ndr_unpack
from samba.param import LoadParm
from samba.samdb import SamDB

lp = LoadParm()
lp.load(sys.argv[1])
samdb = SamDB(url=lp.samdb_url(), session_info=system_session(), lp=lp)
[user] = samdb.search(samdb.domain_dn(), expression=f"(sAMAccountName={sys.argv[2]})",
                      attrs=["objectSid"])
sid = ndr_unpack(security.dom_sid, user["objectSid"][0])
dn = f"CN=Deleted Objects,{samdb.domain_dn()}"
[found] = samdb.search(dn, scope=ldb.SCOPE_BASE, attrs=["nTSecurityDescriptor"],
                       controls=["show_deleted:1"])
sddl = ndr_unpack(security.descriptor, found["nTSecurityDescriptor"][0]).as_sddl()
owner, dacl = sddl.split("D:", 1)
flags = dacl[: len(dacl) - len(dacl.lstrip("PAIRNO"))]
sddl = f"{owner}D:{flags}(A;;LCRP;;;{sid}){dacl[len(flags):]}"
descriptor = security.descriptor.from_sddl(sddl, security.dom_sid(samdb.get_domain_sid()))
message = ldb.Message(ldb.Dn(samdb, dn))
message["nTSecurityDescriptor"] = ldb.MessageElement(
    ndr_pack(descriptor), ldb.FLAG_MOD_REPLACE, "nTSecurityDescriptor")
samdb.modify(message, controls=["show_deleted:1"])
"""
CONTACT_CLASS = "5cb41ed0-0e4c-11d0-a286-00aa003049e2"  # the schemaIDGUID of `contact`


def test_a_bind_account_with_the_delegated_rights_is_enough(domain, tmp_path):
    dc = domain.dc
    dc.samba_tool("user", "create", "interorg", "Syncer-Passw0rd!")
    sid = re.search(
        r"objectSid: (S-[0-9-]+)",
        dc.samba_tool("user", "show", "interorg", "--attributes=objectSid"),
    ).group(1)
    LdapDirectory.objects.filter(pk=domain.directory.pk).update(
        bind_dn="interorg@branch.example", password="Syncer-Passw0rd!"
    )
    alice = domain.contact("alice", "Alice Example")
    bob = domain.contact("bob", "Bob Builder")
    refused = domain.publish()
    assert refused.added == 0 and "Insufficient access" in refused.problems[0]

    hidden = schema.hidden_unit_dn(dc.base_dn)
    dc.ldap_tool("ldapadd", f"dn: {hidden}\nobjectClass: organizationalUnit\n\n")
    for unit in (domain.imports, domain.partners, hidden):
        dc.samba_tool(
            "dsacl",
            "set",
            f"--objectdn={unit}",
            f"--sddl=(OA;CI;CCDC;{CONTACT_CLASS};;{sid})"
            f"(OA;CIIO;RPWPCRLCLORCSDDT;;{CONTACT_CLASS};{sid})",
        )
    assert domain.publish(force=True).added == 2
    bob.container = domain.other
    bob.display_name = "Robert Builder"
    changes.save_recipient(bob)
    changes.hide_contacts(domain.organization.pk, [alice])
    result = domain.publish()
    assert (result.renamed, result.problems) == (2, [])
    changes.delete_recipients([bob])
    assert domain.publish().deleted == 1
    assert set(domain.ours()) == {"ORG1:alice"}

    # Without a grant on the Deleted Objects container, deletions are invisible to the account.
    script = tmp_path / "grant.py"
    script.write_text(GRANT_DELETED_OBJECTS)
    dc.samba_tool("user", "create", "gone", "Passw0rd!x1", "--mail-address=gone@branch.example")
    dc.samba_tool("user", "delete", "gone")

    def tombstones() -> list[str]:
        from ldap.controls import LDAPControl

        from directory.ldap.connection import connected, search

        directory = LdapDirectory.objects.get(pk=domain.directory.pk)
        with connected(directory) as conn:
            found = search(
                conn,
                dc.base_dn,
                "(&(isDeleted=TRUE)(objectClass=user))",
                ["cn"],
                controls=(LDAPControl("1.2.840.113556.1.4.417", True, None),),
            )
            return [dn for dn, _attrs in found if "gone" in dn]

    assert tombstones() == []
    subprocess.run(
        ["/usr/bin/python3", str(script), str(dc.conf), "interorg"], check=True, timeout=60
    )
    assert len(tombstones()) == 1


def test_a_plain_account_that_cannot_see_deleted_objects_still_finds_the_deletes(ad_dc, tmp_path):
    """AD shows deleted objects only to accounts granted List contents on Deleted Objects: to
    another, the deletes would never appear. The scan finds that out by deleting a probe of its
    own, then lists every recipient to find the deletes (and says so), until the grant lets it
    read only the changes again."""
    from directory.ad.scan import DELETES_RECHECK, scan

    domain = Domain(ad_dc, scanned=True)
    assert LdapDirectory.objects.get(pk=domain.directory.pk).deletes_read == "tombstones"
    RequestorConfigFactory(organization=domain.organization, import_container=domain.container)
    ad_dc.samba_tool("user", "create", "interorg", "Syncer-Passw0rd!")
    sid = re.search(
        r"objectSid: (S-[0-9-]+)",
        ad_dc.samba_tool("user", "show", "interorg", "--attributes=objectSid"),
    ).group(1)
    ad_dc.samba_tool(
        "dsacl",
        "set",
        f"--objectdn={domain.imports}",
        f"--sddl=(OA;CI;CCDC;{CONTACT_CLASS};;{sid})"
        f"(OA;CIIO;RPWPCRLCLORCSDDT;;{CONTACT_CLASS};{sid})",
    )
    LdapDirectory.objects.filter(pk=domain.directory.pk).update(
        bind_dn="interorg@branch.example", password="Syncer-Passw0rd!"
    )
    script = tmp_path / "grant.py"
    script.write_text(GRANT_DELETED_OBJECTS)

    def mirrored() -> set[str]:
        return set(
            Recipient.objects.filter(organization=domain.organization).values_list(
                "alias", flat=True
            )
        )

    def comes_and_goes(name: str) -> tuple[bool, bool]:
        """Whether the scan as the account sees a new user, then its deletion (read as such
        from its tombstone: no full comparison, when the account sees them)."""
        ad_dc.samba_tool(
            "user",
            "create",
            name,
            "Passw0rd!x1",
            "--userou=OU=Partners",
            f"--mail-address={name}@branch.example",
        )
        scan(domain.organization.pk)
        seen = name in mirrored()
        ad_dc.samba_tool("user", "delete", name)
        result = scan(domain.organization.pk)
        blind = LdapDirectory.objects.get(pk=domain.directory.pk).deletes_read == "listing"
        # Blind, the user it read last being gone could also be a database put back.
        assert result.full == blind, result.reason
        return seen, name not in mirrored()

    # Another account: one full comparison, which finds it blind to deleted objects.
    assert comes_and_goes("first") == (True, True)
    directory = LdapDirectory.objects.get(pk=domain.directory.pk)
    assert directory.deletes_read == "listing"
    assert "does not see deleted objects" in directory.deletes_note
    assert any("listing every recipient" in line for line in directory.scan_problems)
    # A delete of any other object than the one read last: found by the listing alone.
    for name in ("third", "fourth"):
        ad_dc.samba_tool(
            "user", "create", name, "Passw0rd!x1", f"--mail-address={name}@branch.example"
        )
    scan(domain.organization.pk)
    assert {"third", "fourth"} <= mirrored()
    ad_dc.samba_tool("user", "delete", "third")
    result = scan(domain.organization.pk)
    assert not result.full and result.deleted == 1
    assert "third" not in mirrored() and "fourth" in mirrored()

    subprocess.run(
        ["/usr/bin/python3", str(script), str(ad_dc.conf), "interorg"], check=True, timeout=60
    )
    LdapDirectory.objects.filter(pk=directory.pk).update(
        deletes_checked_at=directory.deletes_checked_at - DELETES_RECHECK
    )
    assert comes_and_goes("second") == (True, True)
    directory = LdapDirectory.objects.get(pk=domain.directory.pk)
    assert (directory.deletes_read, directory.deletes_note) == ("tombstones", "")
    assert not any("listing every recipient" in line for line in directory.scan_problems)


def test_exchange_attributes_are_written_where_the_schema_has_them():
    values = {"display_name": "Ann Lee", "alias": "ann", "primary_smtp": "ann@org1.example"}
    exchange = frozenset(publish.EXCHANGE_OPTIONAL)
    entry = publish.contact_entry(
        values, "ann@mail.org1.example", "ORG1:ann", "ORG1", "/o=X/cn=ann", available=exchange
    )
    assert entry["mailNickname"] == ["ann"]
    assert entry["targetAddress"] == ["SMTP:ann@mail.org1.example"]
    assert "msExchHideFromAddressLists" not in entry
    hidden = publish.contact_entry(
        values, "", "ORG1:ann", "ORG1", "/o=X/cn=ann", hidden_at=timezone.now(), available=exchange
    )
    assert hidden["msExchHideFromAddressLists"] == ["TRUE"]
    assert hidden["targetAddress"] == ["SMTP:ann@org1.example"]
    plain = publish.contact_entry(values, "", "ORG1:ann", "ORG1", "/o=X/cn=ann")
    assert not set(publish.EXCHANGE_OPTIONAL) & set(plain)


def test_a_domain_with_exchanges_schema_gets_its_attributes_too(ad_dc):
    extend_with_exchange(ad_dc)
    domain = Domain(ad_dc)
    ann = domain.contact("ann", "Ann Lee", target_address="ann@mail.org1.example")
    assert domain.publish().problems == []
    written = domain.ours()["ORG1:ann"]
    assert written["mailNickname"] == ["ann"]
    assert written["targetAddress"] == ["SMTP:ann@mail.org1.example"]
    assert "msExchHideFromAddressLists" not in written

    changes.hide_contacts(domain.organization.pk, [ann])
    assert domain.publish().renamed == 1
    assert domain.ours()["ORG1:ann"]["msExchHideFromAddressLists"] == ["TRUE"]
    ann.hidden_at = None
    changes.save_recipient(ann)
    domain.publish()
    assert "msExchHideFromAddressLists" not in domain.ours()["ORG1:ann"]
