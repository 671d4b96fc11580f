"""Three kinds of directory converging through the master: ORG1 keeps the built-in directory (and
runs the master), ORG2 keeps its directory in OpenLDAP, BRANCH in Active Directory (a real Samba
domain controller). Each sees the others' people: BRANCH's AD users in the others' address books,
and the others' people as AD contacts in BRANCH's import OU, as samba-tool lists them."""

import pytest

from directory.constants import Role
from directory.models import Container
from master.models import AllowedRequestor, MasterConfig
from requestor.cycle import sync_all
from requestor.models import ExportedContainer, RequestorConfig
from tests.ad.domain import Domain
from tests.engine.conftest import MASTER_DN, make_org
from tests.ldap.conftest import make_ldap_org, server, slapd  # noqa: F401

pytestmark = pytest.mark.django_db


def make_ad_org(dc) -> Domain:
    """BRANCH: its people in OU=Staff (exported), the imported contacts in OU=InterOrg."""
    staff = f"OU=Staff,{dc.base_dn}"
    dc.ldap_tool("ldapadd", f"dn: {staff}\nobjectClass: organizationalUnit\n\n")
    branch = Domain(dc, scanned=True)
    config = RequestorConfig.objects.create(
        organization=branch.organization,
        address="requestor@branch.example",
        dn="/o=BRANCH/ou=AD/cn=REQUESTOR",
        master_address=MASTER_DN,
        import_container=branch.container,
    )
    ExportedContainer.objects.create(
        config=config,
        container=Container.objects.get(ldap_dn__iexact=staff),
        mailboxes=True,
        distribution_lists=True,
        custom_recipients=True,
    )
    return branch


@pytest.fixture
def three(db, server, ad_dc):  # noqa: F811
    org1 = make_org(1, Role.BOTH)
    org2 = make_ldap_org(2, server)
    branch = make_ad_org(ad_dc)
    master = MasterConfig.objects.create(
        organization=org1.organization, address="master@org1.example", dn=MASTER_DN
    )
    for name, dn in (("ORG1", org1.config.dn), ("ORG2", org2.org.config.dn)):
        AllowedRequestor.objects.create(master=master, address=dn, organization_name=name)
    AllowedRequestor.objects.create(
        master=master, address="/o=BRANCH/ou=AD/cn=REQUESTOR", organization_name="BRANCH"
    )
    for _ in range(2):
        org1.add()
    org2.add_person("grace", "Grace Hopper", title="Admiral")
    for user, name in (("ada", "Ada Lovelace"), ("alan", "Alan Turing")):
        first, last = name.split()
        ad_dc.samba_tool(
            "user",
            "create",
            user,
            "Passw0rd!x1",
            "--userou=OU=Staff",
            f"--given-name={first}",
            f"--surname={last}",
            f"--mail-address={user}@branch.example",
            "--job-title=Engineer",
        )
    ad_dc.samba_tool(
        "group", "add", "Analysts", "--groupou=OU=Staff", "--mail-address=analysts@branch.example"
    )
    return org1, org2, branch


def ad_contacts(branch: Domain) -> dict[str, dict]:
    """The contacts in BRANCH's import OU, by mail."""
    found = branch.search(branch.imports)
    return {attrs["mail"][0]: {"dn": dn, **attrs} for dn, attrs in found.items()}


def test_an_ad_an_openldap_and_a_builtin_organization_converge(three):
    org1, org2, branch = three

    sync_all()
    sync_all()  # the first round's exports reach the others in the second

    branch_people = {"ada@branch.example", "alan@branch.example", "analysts@branch.example"}
    in_org1 = set(org1.contacts().values_list("primary_smtp", flat=True))
    assert branch_people | {"grace@org2.example"} == in_org1
    in_org2 = set(org2.contacts())
    assert branch_people | {p.primary_smtp for p in org1.people} == in_org2
    assert org2.contacts()["ada@branch.example"]["title"] == ["Engineer"]

    in_ad = ad_contacts(branch)
    assert set(in_ad) == {"grace@org2.example", *(p.primary_smtp for p in org1.people)}
    grace = in_ad["grace@org2.example"]
    assert grace["dn"] == f"CN=Grace Hopper,{branch.imports}"
    assert grace["title"] == ["Admiral"]
    assert grace["proxyAddresses"] == ["SMTP:grace@org2.example"]
    assert grace["adminDescription"] == ["InterOrg Sync contact"]
    assert grace["adminDisplayName"][0].startswith("ORG2:")
    listed = branch.contact_list()
    assert f"CN=Grace Hopper,{branch.imports}" in listed
    assert all(f"CN={p.display_name},{branch.imports}" in listed for p in org1.people)

    # Changes in AD, made with the administrator's tools, reach the others.
    branch.dc.ldap_tool(
        "ldapmodify",
        f"dn: CN=Ada Lovelace,OU=Staff,{branch.dc.base_dn}\nchangetype: modify\n"
        "replace: title\ntitle: Countess\n\n",
    )
    branch.dc.samba_tool("user", "delete", "alan")
    # And a person of ORG2 leaves: BRANCH's contact for her goes to the hidden OU.
    org2.tool.delete(f"uid=grace,{org2.people}")
    sync_all()
    sync_all()

    assert org2.contacts()["ada@branch.example"]["title"] == ["Countess"]
    assert "alan@branch.example" not in org2.contacts()
    assert "alan@branch.example" not in set(org1.contacts().values_list("primary_smtp", flat=True))
    assert "grace@org2.example" not in ad_contacts(branch)
    assert f"CN=Grace Hopper,{branch.imports}" not in branch.contact_list()
