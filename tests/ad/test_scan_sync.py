"""An Active Directory organization in a deployment: its cycle reads AD before it exports, so it
syncs like any other organization, and the contacts written to AD are not read back as its own."""

import pytest

from directory.constants import Backend, Role
from directory.models import Container, LdapDirectory, Organization
from master.models import AllowedRequestor, MasterConfig
from requestor.cycle import sync_all
from requestor.models import ExportedContainer, RequestorConfig
from tests.ad.administered import Administered
from tests.engine.conftest import MASTER_DN, make_org

pytestmark = pytest.mark.django_db


@pytest.fixture
def deployment(ad_dc):
    """ORG1 (built-in) is the master; BRANCH keeps its directory in the DC: OU=Staff exported,
    OU=InterOrg for the contacts it imports."""
    org1 = make_org(1, Role.BOTH)
    for _ in range(3):
        org1.add()
    branch = Administered.__new__(Administered)
    branch.dc = ad_dc
    staff, imports = branch.unit("Staff"), branch.unit("InterOrg")
    branch.organization = Organization.objects.create(
        name="BRANCH",
        display_name="Branch",
        role=Role.REQUESTOR,
        mail_domain="branch.example",
        directory_backend=Backend.ACTIVE_DIRECTORY,
    )
    branch.directory = LdapDirectory.objects.create(
        organization=branch.organization, **Administered.server_settings(ad_dc)
    )
    branch.user("ada", "ada@branch.example", staff, "--given-name=Ada", "--surname=Lovelace")
    branch.scan()
    units = {c.ldap_dn: c for c in Container.objects.filter(organization=branch.organization)}
    config = RequestorConfig.objects.create(
        organization=branch.organization,
        address="requestor@branch.example",
        dn="/o=BRANCH/ou=AD/cn=REQUESTOR",
        master_address=MASTER_DN,
        import_container=units[imports],
    )
    ExportedContainer.objects.create(
        config=config, container=units[staff], mailboxes=True, distribution_lists=True
    )
    master = MasterConfig.objects.create(
        organization=org1.organization, address="master@org1.example", dn=MASTER_DN
    )
    for org in (org1.organization, branch.organization):
        dn = RequestorConfig.objects.get(organization=org).dn
        AllowedRequestor.objects.create(master=master, address=dn, organization_name=org.name)
    return org1, branch, staff


def test_an_active_directory_organization_syncs_what_its_cycle_reads(deployment):
    org1, branch, staff = deployment
    sync_all()
    assert ("Ada Lovelace", "ada@branch.example") in set(
        org1.contacts().values_list("display_name", "primary_smtp")
    )

    # A change made in AD after the last scan leaves with the next cycle, read first.
    branch.user("bob", "bob@branch.example", staff)
    sync_all()
    sync_all()
    assert "bob@branch.example" in set(org1.contacts().values_list("primary_smtp", flat=True))
    # What the writer put into AD for ORG1's people is not read back as BRANCH's own.
    written = branch.read(branch.dn("OU=InterOrg"), "(objectClass=contact)", ["mail"])
    assert len(written) == org1.organization.recipients.exportable().count()
    assert branch.mirror() == branch.expected()
    assert {mail for _kind, _name, mail in branch.mirror().values()} == {
        "ada@branch.example",
        "bob@branch.example",
    }
