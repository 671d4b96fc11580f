"""The console's test world: ORG1 (master and requestor), ORG2 and ORG3 (requestors), all in
this installation, and the fixed personas: the administrator and the operator of ORG2, an
outsider who administers ORG3 only, and an anonymous visitor."""

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from console.constants import ConsoleRole
from console.models import OrganizationRole
from directory.constants import Role
from directory.factories import ContainerFactory, OrganizationFactory, RecipientFactory, SiteFactory
from master.models import AllowedRequestor, MasterConfig
from requestor.models import ExportedContainer, RequestorConfig

MASTER_DN = "/o=ORG1/ou=Site1/cn=Recipients/cn=MASTER"
PASSWORD = "correct-horse-battery-staple"


@dataclass
class Org:
    """One organization of the world with its containers and requestor."""

    organization: object
    recipients: object
    imported: object
    config: RequestorConfig

    @property
    def name(self) -> str:
        return self.organization.name


@dataclass
class World:
    org1: Org
    org2: Org
    org3: Org
    master: MasterConfig


def make_org(number: int, role: str = Role.REQUESTOR, people: int = 2) -> Org:
    organization = OrganizationFactory(
        name=f"ORG{number}",
        display_name=f"Organization {number}",
        role=role,
        mail_domain=f"org{number}.example",
    )
    site = SiteFactory(organization=organization, name=f"Site{number}")
    recipients = ContainerFactory(site=site, name="Recipients")
    imported = ContainerFactory(site=site, name="InterOrg Contacts")
    config = RequestorConfig.objects.create(
        organization=organization,
        address=f"requestor@org{number}.example",
        dn=f"/o=ORG{number}/ou=Site{number}/cn=Recipients/cn=REQUESTOR",
        master_address=MASTER_DN,
        import_container=imported,
    )
    ExportedContainer.objects.create(config=config, container=recipients)
    for n in range(people):
        RecipientFactory(
            container=recipients,
            alias=f"person{n}.org{number}",
            display_name=f"Person {n} of ORG{number}",
            primary_smtp=f"person{n}@org{number}.example",
        )
    return Org(organization, recipients, imported, config)


def make_world() -> World:
    org1 = make_org(1, Role.BOTH)
    org2 = make_org(2)
    org3 = make_org(3)
    master = MasterConfig.objects.create(
        organization=org1.organization, address="master@org1.example", dn=MASTER_DN
    )
    for org in (org1, org2, org3):
        AllowedRequestor.objects.create(
            master=master, address=org.config.dn, organization_name=org.name
        )
    return World(org1, org2, org3, master)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """The personas log in many times: a fast hasher keeps the suite quick."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(db) -> World:
    return make_world()


def make_user(username: str, roles: dict | None = None, **extra):
    user = get_user_model().objects.create_user(username, password=PASSWORD, **extra)
    for organization, role in (roles or {}).items():
        OrganizationRole.objects.create(user=user, organization=organization, role=role)
    return user


@pytest.fixture
def administrator(world):
    return make_user("alice", {world.org2.organization: ConsoleRole.ADMINISTRATOR})


@pytest.fixture
def operator(world):
    return make_user("oscar", {world.org2.organization: ConsoleRole.OPERATOR})


@pytest.fixture
def outsider(world):
    """Authenticated, administrator of ORG3, nothing in ORG2."""
    return make_user("mallory", {world.org3.organization: ConsoleRole.ADMINISTRATOR})


def logged_in(user) -> Client:
    client = Client(enforce_csrf_checks=False)
    client.force_login(user)
    return client


@pytest.fixture
def admin_client_(administrator) -> Client:
    return logged_in(administrator)


@pytest.fixture
def operator_client(operator) -> Client:
    return logged_in(operator)


@pytest.fixture
def outsider_client(outsider) -> Client:
    return logged_in(outsider)


@pytest.fixture
def anonymous_client(world) -> Client:
    return Client()


def token_client(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def admin_api(administrator) -> APIClient:
    return token_client(administrator)


@pytest.fixture
def operator_api(operator) -> APIClient:
    return token_client(operator)


@pytest.fixture
def outsider_api(outsider) -> APIClient:
    return token_client(outsider)


@pytest.fixture
def anonymous_api(world) -> APIClient:
    return APIClient()


# --- Screenshots of the browser tests -----------------------------------------------------------

_SCREENSHOT_DIRS: list[Path] = []


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    """Where the browser tests save their screenshots: var/screenshots/<timestamp>/."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = Path(settings.VAR_DIR) / "screenshots" / stamp
    folder.mkdir(parents=True, exist_ok=True)
    _SCREENSHOT_DIRS.append(folder)
    return folder


def pytest_terminal_summary(terminalreporter):
    for folder in _SCREENSHOT_DIRS:
        shots = sorted(folder.glob("*.png"))
        if shots:
            terminalreporter.write_sep("-", "console screenshots")
            terminalreporter.write_line(f"{len(shots)} screenshots saved in {folder}")


def add_history(org: Org) -> None:
    """A finished run, an exported message, a rejected one and an imported contact, written
    directly (cheaper than a sync where the test only needs them to exist)."""
    from django.utils import timezone

    from directory.constants import Kind
    from requestor.constants import RunStatus, Trigger
    from transport.constants import Direction, MessageKind, Status
    from transport.models import Message

    org.config.runs.create(
        trigger=Trigger.MANUAL, status=RunStatus.OK, finished_at=timezone.now(), exported=2
    )
    common = {"organization": org.organization, "payload": b"", "kind": MessageKind.EXPORT}
    Message.objects.create(
        direction=Direction.OUTBOUND,
        status=Status.SENT,
        sender=org.config.dn,
        recipient=MASTER_DN,
        summary={"type": "export", "count": 2},
        **common,
    )
    Message.objects.create(
        direction=Direction.INBOUND,
        status=Status.REJECTED,
        sender="intruder@evil.example",
        recipient=org.config.dn,
        error="intruder@evil.example may not send to this agent.",
        **common,
    )
    RecipientFactory(
        container=org.imported,
        kind=Kind.CUSTOM_RECIPIENT,
        alias=f"contact.{org.name.lower()}",
        display_name="Imported Contact",
        primary_smtp="contact@elsewhere.example",
        origin_organization="ORG9",
        global_key="ORG9:00000000-0000-0000-0000-000000000001",
        master_usn=1,
    )


# Screenshots for the README and docs/: written into docs/screenshots only when asked
# (INTERORG_DOCS_SCREENSHOTS=1), so that a test run leaves the tree as it was; else beside the
# other screenshots under var/.
DOCS_SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    if os.environ.get("INTERORG_DOCS_SCREENSHOTS") == "1"
    else Path(settings.VAR_DIR) / "screenshots" / "docs"
)
