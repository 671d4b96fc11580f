"""The three-organization scenario: ORG1 (master and requestor), ORG2 and ORG3 (requestors).

All agents live in this installation and address each other by EX DN, as the master org's
requestor does in the original tool.
"""

from dataclasses import dataclass, field

import pytest

from directory import changes
from directory.constants import Kind, Role
from directory.models import Container, Organization, Recipient, Site
from master.models import AllowedRequestor, MasterConfig
from requestor.models import ExportedContainer, RequestorConfig

MASTER_DN = "/o=ORG1/ou=Site1/cn=Recipients/cn=MASTER"


@dataclass
class Org:
    """One organization of the scenario, with its containers and requestor."""

    organization: Organization
    recipients: Container
    contractors: Container
    imported: Container
    config: RequestorConfig
    people: list[Recipient] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.organization.name

    def refresh(self) -> "Org":
        self.config.refresh_from_db()
        return self

    def contacts(self):
        """The contacts in the address book (not those hidden for their grace period)."""
        return Recipient.objects.filter(
            organization=self.organization, global_key__isnull=False, hidden_at__isnull=True
        )

    def hidden(self):
        """The contacts hidden for their grace period."""
        return Recipient.objects.filter(organization=self.organization, hidden_at__isnull=False)

    def contact_names(self) -> set[str]:
        return set(self.contacts().values_list("display_name", flat=True))

    def add(self, container: Container | None = None, **values) -> Recipient:
        number = Recipient.objects.filter(organization=self.organization).count() + 1
        alias = values.pop("alias", f"{self.name.lower()}user{number}")
        defaults = {
            "display_name": f"{self.name} User {number}",
            "alias": alias,
            "primary_smtp": f"{alias}@{self.organization.mail_domain}",
            "first_name": "User",
            "last_name": str(number),
            "title": "Engineer",
            "kind": Kind.MAILBOX,
            "custom_attribute_1": f"secret-{alias}",
        }
        defaults.update(values)
        recipient = Recipient(container=container or self.recipients, **defaults)
        recipient.full_clean()
        changes.save_recipient(recipient)
        self.people.append(recipient)
        return recipient


def make_org(number: int, role: str, **options) -> Org:
    name = f"ORG{number}"
    organization = Organization.objects.create(
        name=name,
        display_name=f"Organization {number}",
        role=role,
        mail_domain=f"{name}.example".lower(),
    )
    site = Site.objects.create(organization=organization, name=f"Site{number}")
    recipients = Container.objects.create(site=site, name="Recipients")
    contractors = Container.objects.create(site=site, name="Contractors")
    imported = Container.objects.create(site=site, name="InterOrg")
    config = RequestorConfig.objects.create(
        organization=organization,
        address=f"requestor@{organization.mail_domain}",
        dn=f"/o={name}/ou=Site{number}/cn=Recipients/cn=REQUESTOR",
        master_address=MASTER_DN,
        import_container=imported,
        **options,
    )
    ExportedContainer.objects.create(
        config=config, container=recipients, mailboxes=True, distribution_lists=True
    )
    return Org(organization, recipients, contractors, imported, config)


@dataclass
class Scenario:
    master: MasterConfig
    orgs: dict[str, Org]

    def __getitem__(self, name: str) -> Org:
        return self.orgs[name]

    def others(self, name: str) -> list[Org]:
        return [org for key, org in self.orgs.items() if key != name]


def build_scenario(people_per_org: int = 3) -> Scenario:
    org1 = make_org(1, Role.BOTH)
    org2 = make_org(2, Role.REQUESTOR, append_display_name=" (ORG2)", trust_level=50)
    org3 = make_org(3, Role.REQUESTOR, modify_smtp_domain="org3.com", trust_level=10)
    master = MasterConfig.objects.create(
        organization=org1.organization, address="master@org1.example", dn=MASTER_DN
    )
    for org in (org1, org2, org3):
        AllowedRequestor.objects.create(
            master=master, address=org.config.dn, organization_name=org.name
        )
        for _ in range(people_per_org):
            org.add()
    return Scenario(master, {"ORG1": org1, "ORG2": org2, "ORG3": org3})


@pytest.fixture
def scenario(db) -> Scenario:
    return build_scenario()
