"""Who holds a part's addresses and aliases: one probe of the unique index per value on
PostgreSQL, where the plan is checked first, and the plain look-up everywhere else.

The oracle is the organization's recipients read in Python: its shown recipients (its own, and
contacts not hidden), by address or alias in lower case; never another organization's."""

from types import SimpleNamespace

import pytest
from django.db import connection

from directory import changes
from directory.factories import ContainerFactory, RecipientFactory
from directory.models import Recipient
from requestor import importer

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture
def org():
    """40 own recipients and 10 contacts of ORG1 (4 of them hidden), in mixed case; ORG2
    holds the same addresses and aliases."""
    container, other_container = ContainerFactory(), ContainerFactory()
    for n in range(50):
        for where in (container, other_container):
            RecipientFactory(
                container=where,
                primary_smtp=f"Person.{n}@Example.ORG",
                alias=f"Person{n}",
                global_key=f"ORG9:{n}" if n >= 40 else None,
                master_usn=1 if n >= 40 else None,
            )
    contacts = Recipient.objects.filter(
        organization=container.organization, global_key__isnull=False
    )
    changes.hide_contacts(container.organization_id, list(contacts.order_by("pk")[:4]))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE directory_recipient")
    return SimpleNamespace(organization_id=container.organization_id)


def held(org, field: str, values: set[str]) -> set[tuple]:
    shown = Recipient.objects.filter(organization_id=org.organization_id, hidden_at__isnull=True)
    return {
        (getattr(r, field).lower(), r.global_key, r.pk)
        for r in shown
        if getattr(r, field).lower() in values
    }


WANTED = {
    "primary_smtp": {f"person.{n}@example.org" for n in range(0, 50, 3)} | {"nobody@example.org"},
    "alias": {f"person{n}" for n in range(1, 50, 2)} | {"nobody"},
}


@pytest.mark.parametrize("field", ["primary_smtp", "alias"])
def test_the_probes_find_exactly_the_holders(org, field):
    values = WANTED[field]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a table this small is read whole
    probed = importer._probed(org, field, values, ("global_key", "pk"))
    assert probed is not None, "the plan did not probe the index"
    assert set(probed) == held(org, field, values)
    assert len(probed) == len(set(probed))  # each holder once
    assert set(importer._lowered(org, field, values, "global_key", "pk")) == set(probed)


@pytest.mark.parametrize("field", ["primary_smtp", "alias"])
def test_a_plan_that_would_not_probe_is_not_run(org, field):
    """With index scans off the plan reads the organization for every value: refused, and the
    plain look-up answers the same."""
    values = WANTED[field]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_indexscan = off")
    assert importer._probed(org, field, values, ("global_key", "pk")) is None
    assert set(importer._lowered(org, field, values, "global_key", "pk")) == held(
        org, field, values
    )


def test_the_plain_look_up_is_not_taken_for_a_probe(org):
    """The check itself: the `= ANY` look-up's plan reads the organization (or the table),
    whatever the planner prefers for it, and is told apart from a probe."""
    plain = importer._looked_up(org, "primary_smtp", WANTED["primary_smtp"], "pk")
    sql, params = plain.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        (plan,) = cursor.fetchone()
    assert not importer._probes(
        plan[0]["Plan"], "directory_recipient", "recipient_smtp_unique_shown"
    )
