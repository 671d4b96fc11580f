"""A mixed deployment: ORG1 keeps the built-in directory, ORG2 and ORG3 keep theirs in slapd."""

from directory import changes
from directory.models import Container, LdapDirectory, Recipient, Tombstone
from requestor.constants import RunStatus
from requestor.cycle import sync_all
from requestor.models import RequestorConfig, Run
from tests.ldap.conftest import person_ldif
from transport import holds
from transport.models import Hold


def test_mixed_deployment_converges(mixed):
    org2, org3 = mixed.org2, mixed.org3
    org2.add_person("ada", "Ada Lovelace", title="Analyst", telephoneNumber="+44 20 1234")
    org3.add_person("alan", "Alan Turing")
    org3.tool.add(
        f"dn: cn=Staff,ou=Groups,{org3.suffix}\nobjectClass: groupOfNames\n"
        f"objectClass: extensibleObject\ncn: Staff\nmail: staff@org3.example\n"
        f"member: uid=alan,{org3.people}\n\n"
    )
    sync_all()
    org1 = mixed.scenario["ORG1"]
    names = set(org1.contacts().values_list("display_name", "primary_smtp"))
    assert ("Ada Lovelace (ORG2)", "ada@org2.example") in names
    assert ("Alan Turing", "alan@org3.com") in names
    assert ("Staff", "staff@org3.com") in names
    in_org2 = org2.contacts()
    assert set(in_org2) == {
        *(p.primary_smtp for p in org1.people),
        "alan@org3.com",
        "staff@org3.com",
    }
    alan = in_org2["alan@org3.com"]
    assert alan["dn"] == f"uid=alan,{org2.imports}"
    assert alan["employeeType"] == ["InterOrg Sync contact"]
    assert alan["employeeNumber"][0].startswith("ORG3:")
    assert alan["mailRoutingAddress"] == ["alan@org3.com"]
    in_org3 = org3.contacts()
    assert in_org3["ada@org2.example"]["title"] == ["Analyst"]
    assert in_org3["ada@org2.example"]["displayName"] == ["Ada Lovelace (ORG2)"]


def test_ldap_tool_changes_propagate(mixed):
    org2, org3 = mixed.org2, mixed.org3
    ada = org2.add_person("ada", "Ada Lovelace")
    grace = org2.add_person("grace", "Grace Hopper")
    org2.add_person("edsger", "Edsger Dijkstra")
    sync_all()
    assert {"ada@org2.example", "grace@org2.example", "edsger@org2.example"} <= set(org3.contacts())

    org2.tool.modify(
        f"dn: {ada}\nchangetype: modify\nreplace: displayName\n"
        "displayName: Ada King\n-\nreplace: title\ntitle: Countess\n\n"
    )
    org2.tool.delete(grace)
    org2.tool.add(
        person_ldif(
            f"uid=barbara,{org2.people}", "barbara", "barbara@org2.example", "Barbara Liskov"
        )
    )
    # Moved out of what ORG2 exports: gone for the others, though still in ORG2's directory.
    org2.tool.rename(f"uid=edsger,{org2.people}", "uid=edsger", f"ou=Groups,{org2.suffix}")
    org2.tool.modify(
        f"dn: cn=nobody,{org2.people}\nchangetype: add\nobjectClass: person\n"
        "cn: nobody\nsn: nobody\n\n"
    )  # not a recipient: no mail
    sync_all()

    contacts = org3.contacts()
    assert contacts["ada@org2.example"]["displayName"] == ["Ada King (ORG2)"]
    assert contacts["ada@org2.example"]["title"] == ["Countess"]
    assert "grace@org2.example" not in contacts
    assert "barbara@org2.example" in contacts
    org1 = mixed.scenario["ORG1"]
    assert set(org1.contacts().values_list("primary_smtp", flat=True)) >= {
        "ada@org2.example",
        "barbara@org2.example",
    }
    assert not org1.contacts().filter(primary_smtp__in=["grace@org2.example"]).exists()
    assert Tombstone.objects.filter(organization=org2.org.organization, imported=False).count() == 1


def test_unit_rename_keeps_recipients_and_scope(mixed):
    org2, org3 = mixed.org2, mixed.org3
    org2.add_person("ada", "Ada Lovelace")
    sync_all()
    org2.tool.rename(org2.people, "ou=Staff")
    sync_all()
    assert "ada@org2.example" in org3.contacts()
    ada = Recipient.objects.get(primary_smtp="ada@org2.example", global_key=None)
    assert ada.container.name == "Staff"
    assert ada.container.ldap_dn == f"ou=Staff,{org2.suffix}"
    assert ada.dn.endswith("/cn=Staff/cn=ada")


def test_a_unit_moved_out_of_an_exported_one_takes_its_people_out_of_the_others(mixed):
    org2, org3 = mixed.org2, mixed.org3
    sales = f"ou=Sales,{org2.people}"
    org2.tool.add(f"dn: {sales}\nobjectClass: organizationalUnit\nou: Sales\n\n")
    org2.tool.add(person_ldif(f"uid=sam,{sales}", "sam", "sam@org2.example", "Sam Sales"))
    sync_all()
    assert "sam@org2.example" in org3.contacts()

    # The whole unit moves in LDAP: its entries change DN, not their modifyTimestamp.
    org2.tool.rename(sales, "ou=Sales", org2.suffix)
    sync_all()

    assert "sam@org2.example" not in org3.contacts()
    assert not mixed.scenario["ORG1"].contacts().filter(primary_smtp="sam@org2.example").exists()

    org2.tool.rename(f"ou=Sales,{org2.suffix}", "ou=Sales", org2.people)
    sync_all()
    assert "sam@org2.example" in org3.contacts()


def test_entries_it_did_not_create_are_left_alone(mixed):
    org2, org3 = mixed.org2, mixed.org3
    # An administrator's own entry inside the import unit, with the address a contact will have.
    org3.tool.add(person_ldif(f"uid=mine,{org3.imports}", "mine", "mine@org3.example", "Mine"))
    org2.add_person("ada", "Ada Lovelace")
    org2.add_person("mine", "Someone Else")
    sync_all()
    mine = org3.tool.search(f"uid=mine,{org3.imports}", "(objectClass=*)", "*")[0][1]
    assert mine["cn"] == ["Mine"] and "employeeType" not in mine
    contact = org3.contacts()["mine@org2.example"]
    assert contact["dn"] != f"uid=mine,{org3.imports}"
    assert contact["uid"][0].startswith("mine-")

    # A plain entry (no mail, so no recipient) holds the RDN the next contact wants.
    org3.tool.add(
        f"dn: uid=bob,{org3.imports}\nobjectClass: inetOrgPerson\nuid: bob\ncn: Bob\nsn: B\n\n"
    )
    org2.add_person("bob", "Bob Kahn")
    sync_all()
    directory = LdapDirectory.objects.get(organization=org3.org.organization)
    assert any("uid=bob" in p and "Already exists" in p for p in directory.publish_problems)
    bob = org3.tool.search(f"uid=bob,{org3.imports}", "(objectClass=*)", "*")[0][1]
    assert bob == {"objectClass": ["inetOrgPerson"], "uid": ["bob"], "cn": ["Bob"], "sn": ["B"]}


def test_custom_recipients_and_trust_level_kept_beside_the_entry(mixed):
    org2, org3 = mixed.org2, mixed.org3
    org2.tool.add(
        person_ldif(
            f"uid=vendor,{org2.people}",
            "vendor",
            "vendor@org2.example",
            "Vendor Desk",
            objectClass="inetLocalMailRecipient",
            mailRoutingAddress="desk@vendor.example",
        )
    )
    ada = org2.add_person("ada", "Ada Lovelace")
    sync_all()
    vendor = Recipient.objects.get(global_key=None, primary_smtp="vendor@org2.example")
    assert (vendor.kind, vendor.target_address) == ("custom_recipient", "desk@vendor.example")
    assert "vendor@org2.example" in org3.contacts()

    # Above ORG2's trust level: no longer exported, and an LDAP change does not reset it.
    mirrored = Recipient.objects.get(global_key=None, primary_smtp="ada@org2.example")
    mirrored.trust_level = org2.org.config.trust_level + 1
    changes.save_recipient(mirrored)
    sync_all()
    assert "ada@org2.example" not in org3.contacts()
    org2.tool.modify(f"dn: {ada}\nchangetype: modify\nreplace: title\ntitle: Countess\n\n")
    sync_all()
    mirrored.refresh_from_db()
    assert (mirrored.title, mirrored.trust_level) == ("Countess", org2.org.config.trust_level + 1)
    assert "ada@org2.example" not in org3.contacts()


def test_export_all_reads_the_whole_directory_again(mixed):
    org2 = mixed.org2
    org2.add_person("ada", "Ada Lovelace")
    sync_all()
    directory = LdapDirectory.objects.get(organization=org2.org.organization)
    assert directory.high_water
    org2.org.config.export_all_recipients()
    directory.refresh_from_db()
    assert directory.high_water == ""
    usn = Recipient.objects.get(global_key=None, primary_smtp="ada@org2.example").usn
    sync_all()
    ada = Recipient.objects.get(global_key=None, primary_smtp="ada@org2.example")
    assert ada.usn == usn  # read again, found unchanged: no new USN
    assert "ada@org2.example" in mixed.org3.contacts()


def test_a_held_reply_leaves_the_ldap_contacts_alone_until_approved(mixed):
    org2, org3 = mixed.org2, mixed.org3
    people = [org2.add_person(f"p{n}", f"Person {n}") for n in range(4)]
    sync_all()
    assert {f"p{n}@org2.example" for n in range(4)} <= set(org3.contacts())
    RequestorConfig.objects.filter(organization__name="ORG3").update(import_delete_limit=2)
    for dn in people[:3]:
        org2.tool.delete(dn)

    sync_all(max_rounds=2)

    run = Run.objects.filter(config__organization__name="ORG3").first()
    assert run.status == RunStatus.HELD
    # Nothing was written to ORG3's server: not in the mirror, not in LDAP.
    assert {f"p{n}@org2.example" for n in range(4)} <= set(org3.contacts())
    holds.approve(Hold.objects.get(decision=Hold.Decision.PENDING).pk)
    sync_all(max_rounds=2)
    remaining = set(org3.contacts())
    assert "p3@org2.example" in remaining
    assert not {f"p{n}@org2.example" for n in range(3)} & remaining


def test_a_contact_hidden_in_ldap_comes_back_as_the_same_entry(mixed):
    org2, org3 = mixed.org2, mixed.org3
    org2.add_person("ada", "Ada Lovelace")
    sync_all()
    hidden_unit = f"ou=InterOrg Sync hidden contacts,{org3.suffix}"

    def entry_of_ada(base: str) -> tuple[str, str]:
        found = org3.tool.search(base, "(mail=ada@org2.example)", "entryUUID", "description")
        assert len(found) == 1, found
        return found[0][1]["entryUUID"][0], found[0][1]["description"][0]

    def hide_ada(hidden: bool) -> None:
        ada = Recipient.objects.get(organization__name="ORG2", primary_smtp="ada@org2.example")
        ada.hidden_from_others = hidden
        changes.save_recipient(ada)
        sync_all()

    before, _ = entry_of_ada(org3.imports)
    hide_ada(True)  # a delete for the others: hidden for ORG3's grace period

    assert "ada@org2.example" not in org3.contacts()
    hidden, description = entry_of_ada(hidden_unit)
    assert hidden == before and "hidden since" in description
    # The hidden unit is not taken for a container of ORG3.
    assert not Container.objects.filter(name="InterOrg Sync hidden contacts").exists()

    hide_ada(False)

    back, description = entry_of_ada(org3.imports)
    assert back == before and "hidden" not in description
    assert not org3.tool.search(hidden_unit, "(mail=ada@org2.example)", "dn")
