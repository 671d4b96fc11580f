"""Organizations for the benchmarks: a master, requestors, and many recipients made in bulk."""

import random
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace

from django.db import transaction

from directory import changes
from directory.constants import Kind, Role
from directory.models import Container, Organization, Site, allocate_usns
from master.models import AllowedRequestor, MasterConfig
from requestor.models import ExportedContainer, RequestorConfig

FIRST = ["Ada", "Bruno", "Chloé", "Dmitri", "Eun-ji", "Farah", "Gustavo", "Hana", "Ivan", "Jun"]
LAST = ["Andersen", "Bianchi", "Costa", "Dubois", "Eriksson", "Fischer", "García", "Horvat"]
TITLES = ["Engineer", "Accountant", "Sales Manager", "Analyst", "Director", "Designer"]
DEPARTMENTS = ["Finance", "Engineering", "Sales", "Operations", "Legal", "Marketing"]
CITIES = ["Lisbon", "Oslo", "Montréal", "Osaka", "Nairobi", "Valparaíso", "Tallinn"]
MASTER_DN = "/o=ORG01/ou=Site/cn=Recipients/cn=MASTER"


@dataclass
class Topology:
    master: MasterConfig
    configs: list[RequestorConfig]


def org_name(number: int) -> str:
    return f"ORG{number:02d}"


def build(organizations: int, recipients_per_org: int) -> Topology:
    """ORG01 runs master and requestor, the others requestors; all inside this installation."""
    configs = [_organization(n, recipients_per_org) for n in range(1, organizations + 1)]
    master = MasterConfig.objects.create(
        organization=configs[0].organization, address="master@org01.example", dn=MASTER_DN
    )
    AllowedRequestor.objects.bulk_create(
        AllowedRequestor(master=master, address=c.dn, organization_name=c.organization.name)
        for c in configs
    )
    return Topology(master, configs)


def _organization(number: int, recipients: int) -> RequestorConfig:
    name = org_name(number)
    domain = f"{name.lower()}.example"
    org = Organization.objects.create(
        name=name,
        display_name=f"Organization {number}",
        role=Role.BOTH if number == 1 else Role.REQUESTOR,
        mail_domain=domain,
    )
    site = Site.objects.create(organization=org, name="Site")
    people = Container.objects.create(site=site, name="Recipients")
    imported = Container.objects.create(site=site, name="InterOrg")
    config = RequestorConfig.objects.create(
        organization=org,
        address=f"requestor@{domain}",
        dn=f"/o={name}/ou=Site/cn=Recipients/cn=REQUESTOR",
        master_address=MASTER_DN,
        import_container=imported,
        append_display_name=f" ({name})",
        max_message_size=4 * 1024 * 1024,
    )
    ExportedContainer.objects.create(config=config, container=people)
    add_people(people, recipients, seed=number)
    return config


def add_people(
    container: Container, count: int, seed: int, batch: int = 5000, *, copy: bool = True
) -> None:
    """Add `count` mailboxes with realistic General and custom attributes, in bulk: written by
    copy_insert (COPY on PostgreSQL), or by bare bulk_create with `copy=False`."""
    rng = random.Random(seed)
    domain = container.organization.mail_domain
    done = 0
    while done < count:
        size = min(batch, count - done)
        with transaction.atomic():
            first_usn = allocate_usns(container.organization_id, size)
            people = [_person(container, rng, domain, done + i, first_usn + i) for i in range(size)]
            rows = (tuple(p.values()) for p in people)
            changes.insert_recipients(container.organization_id, list(people[0]), rows, copy=copy)
        done += size


def people(number: int, count: int) -> Iterator[dict]:
    """The values of the first `count` people build() gives organization `number` (the same
    generator and seed), without a database: its ids stand for the organization and container."""
    organization = SimpleNamespace(
        display_name=f"Organization {number}", mail_domain=f"{org_name(number).lower()}.example"
    )
    container = SimpleNamespace(organization_id=number, pk=number, organization=organization)
    rng = random.Random(number)
    for index in range(count):
        yield _person(container, rng, organization.mail_domain, index, 0)


def _person(container, rng, domain: str, index: int, usn: int) -> dict:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    alias = _ascii(f"{first[0]}{last}{index}".lower())
    return {
        "organization_id": container.organization_id,
        "container_id": container.pk,
        "kind": Kind.MAILBOX,
        "display_name": f"{first} {last} {index}",
        "alias": alias,
        "first_name": first,
        "last_name": last,
        "title": rng.choice(TITLES),
        "department": rng.choice(DEPARTMENTS),
        "company": container.organization.display_name,
        "office": f"Building {rng.randint(1, 9)}, room {rng.randint(100, 999)}",
        "phone": f"+1 555 {rng.randint(1000000, 9999999)}",
        "city": rng.choice(CITIES),
        "country": "Portugal",
        "primary_smtp": f"{alias}@{domain}",
        "custom_attribute_1": f"EMP-{index:07d}",
        "usn": usn,
    }


def _ascii(text: str) -> str:
    """SMTP local parts and aliases stay ASCII: García becomes garcia."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
