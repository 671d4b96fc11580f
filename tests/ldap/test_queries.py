"""The database work of a scan and of a publish does not grow with the number of entries."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from directory import changes
from directory.ldap.publish import publish
from directory.ldap.scan import scan
from directory.models import LdapDirectory
from requestor.cycle import sync_all
from tests.engine.helpers import add_many
from tests.ldap.conftest import person_ldif

pytestmark = pytest.mark.usefixtures("real_sqlite_limit")


def populate(org, count: int) -> None:
    org.tool.add(
        "".join(
            person_ldif(f"uid=p{n},{org.people}", f"p{n}", f"p{n}@org2.example", f"Person {n}")
            for n in range(count)
        )
    )


def queries(function, *args) -> int:
    with CaptureQueriesContext(connection) as captured:
        function(*args)
    return len(captured)


def measure(org, count: int) -> tuple[int, int]:
    """Queries of the first scan of `count` entries, then of one after a few changes."""
    populate(org, count)
    organization_id = org.org.organization.pk
    first = queries(scan, organization_id)
    for n in range(0, count, count // 5):
        org.tool.modify(
            f"dn: uid=p{n},{org.people}\nchangetype: modify\nreplace: title\ntitle: New\n\n"
        )
    org.tool.delete(f"uid=p1,{org.people}")
    return first, queries(scan, organization_id)


def test_scan_queries_do_not_grow(mixed):
    assert measure(mixed.org2, 50) == measure(mixed.org3, 500)


def test_publish_queries_do_not_grow(mixed):
    org1, org2 = mixed.scenario["ORG1"], mixed.org2
    organization_id = org2.org.organization.pk
    counts = []
    for size in (40, 400):
        add_many(org1, size, prefix=f"size{size}")
        sync_all()
        with changes.writing():  # every contact to write again, as if the master changed them
            org2.org.contacts().update(title="Changed")
        LdapDirectory.objects.filter(organization_id=organization_id).update(published_usn=0)
        counts.append(queries(publish, organization_id))
    assert counts[0] == counts[1]
