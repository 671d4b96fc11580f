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


FILLER = 3000


@pytest.fixture
def org():
    """40 own recipients and 10 contacts of ORG1 (4 of them hidden), in mixed case, and 3,000
    others; ORG2 holds the same addresses and aliases."""
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
    # Enough others that a walk of the organization costs the planner what it costs (with a
    # few dozen rows, walking them and probing cost it about the same).
    for where in (container, other_container):
        organization_id = where.organization_id
        first = changes.allocate_usns(organization_id, FILLER)
        rows = [
            (organization_id, where.pk, "mailbox", f"Other {n}", f"other{n}", f"other{n}@x.example")
            + (first + n,)
            for n in range(FILLER)
        ]
        fields = ["organization_id", "container_id", "kind", "display_name", "alias"]
        changes.insert_recipients(organization_id, [*fields, "primary_smtp", "usn"], rows)
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


@pytest.mark.parametrize("odd", ["odd\x1fvalue", ""])
def test_values_the_split_would_lose_are_looked_up_plainly(org, odd):
    """The probes get the values as one string split at the unit separator: a value holding
    one (never an address: the wire refuses control characters), or an empty one, takes the
    plain look-up."""
    values = {"person.3@example.org", odd}
    assert importer._probed(org, "primary_smtp", values, ("pk",)) is None
    assert set(importer._lowered(org, "primary_smtp", values, "global_key", "pk")) == held(
        org, "primary_smtp", values
    )
    assert held(org, "primary_smtp", values)  # person.3 is found


T, SMTP, ALIAS = (
    "directory_recipient",
    "recipient_smtp_unique_shown",
    "recipient_alias_unique_shown",
)
PROBE = {
    "Node Type": "Index Scan",
    "Relation Name": T,
    "Index Name": SMTP,
    "Index Cond": "((organization_id = 1) AND (lower((primary_smtp)::text) = w.value))",
}


@pytest.mark.parametrize(
    ("node", "probes"),
    [
        (PROBE, True),
        ({"Node Type": "Nested Loop", "Plans": [{"Node Type": "Function Scan"}, PROBE]}, True),
        # The field's own index walked by the organization alone.
        ({**PROBE, "Index Cond": "(organization_id = 1)"}, False),
        ({**PROBE, "Index Cond": ""}, False),
        ({k: v for k, v in PROBE.items() if k != "Index Cond"}, False),  # a whole index read
        # Another index, whatever its key.
        ({**PROBE, "Index Name": ALIAS}, False),
        ({"Node Type": "Seq Scan", "Relation Name": T}, False),
        ({"Node Type": "Bitmap Heap Scan", "Relation Name": T, "Recheck Cond": "x"}, False),
        # One bad scan anywhere in the plan is enough.
        (
            {
                "Node Type": "Nested Loop",
                "Plans": [PROBE, {"Node Type": "Seq Scan", "Relation Name": T}],
            },
            False,
        ),
        (
            {"Node Type": "Limit", "Plans": [{"Node Type": "Seq Scan", "Relation Name": "other"}]},
            True,
        ),
    ],
)
def test_a_plan_probes_only_when_every_scan_of_the_recipients_uses_the_key(node, probes):
    """The check reads PostgreSQL's EXPLAIN (FORMAT JSON) nodes: here in that shape."""
    assert importer._probes(node, T, SMTP) is probes
