"""The database work of an Active Directory scan does not grow with the number of objects."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from directory.ad.scan import scan
from tests.ad.administered import Administered

pytestmark = pytest.mark.usefixtures("real_sqlite_limit")


def queries(organization_id: int) -> int:
    with CaptureQueriesContext(connection) as captured:
        result = scan(organization_id)
    assert not result.problems
    return len(captured)


def measure(dc, name: str, count: int) -> tuple[int, int, int]:
    """Queries of the first (full) scan of `count` contacts in a unit of their own, of a scan
    after a fifth of them changed and one was deleted, and of a scan with nothing new."""
    domain = Administered(dc, name=name)
    unit = domain.unit(name)
    domain.directory.unit_dns = unit
    domain.directory.save()
    domain.add(
        "".join(
            f"dn: CN=P{n},{unit}\nobjectClass: contact\ndisplayName: {name} {n}\n"
            f"mail: {name.lower()}{n}@partner.example\n\n"
            for n in range(count)
        )
    )
    organization_id = domain.organization.pk
    first = queries(organization_id)
    domain.dc.ldap_tool(
        "ldapmodify",
        "".join(
            f"dn: CN=P{n},{unit}\nchangetype: modify\nreplace: title\ntitle: New\n\n"
            for n in range(0, count, 5)
        ),
    )
    domain.delete(f"CN=P1,{unit}")
    changed = queries(organization_id)
    assert domain.mirror() == domain.expected_in(unit)
    return first, changed, queries(organization_id)


def test_scan_queries_do_not_grow(ad_dc):
    assert measure(ad_dc, "Small", 20) == measure(ad_dc, "Large", 200)
