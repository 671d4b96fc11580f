"""The sync path works in bulk: a cycle takes as many SQL queries for 500 recipients as for 50."""

import re
from collections import Counter

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from directory import changes
from directory.constants import Kind
from directory.models import Recipient, allocate_usns
from requestor.cycle import run_cycle, sync_all
from requestor.models import Run
from tests.engine.conftest import build_scenario
from transport.inbox import pump

SMALL, LARGE = 50, 500
K = 5
SAVEPOINT_NAME = re.compile(r'"s\d+_x\d+"')


pytestmark = pytest.mark.usefixtures("real_sqlite_limit")


def populate(org, count: int) -> None:
    """`count` more mailboxes in the organization's exported container, written in bulk."""
    with transaction.atomic():
        first = allocate_usns(org.organization.pk, count)
        fields = ["organization_id", "container_id", "kind", "display_name", "alias"]
        fields += ["primary_smtp", "first_name", "last_name", "title", "custom_attribute_1", "usn"]
        changes.insert_recipients(
            org.organization.pk,
            fields,
            (
                (
                    org.organization.pk,
                    org.recipients.pk,
                    Kind.MAILBOX,
                    f"{org.name} Bulk {number}",
                    f"{org.name.lower()}bulk{number}",
                    f"{org.name.lower()}bulk{number}@{org.organization.mail_domain}",
                    "Bulk",
                    str(number),
                    "Engineer",
                    f"secret-{number}",
                    first + number,
                )
                for number in range(count)
            ),
        )


def measured(config_id: int) -> tuple[int, list[str], Run]:
    """Queries of one cycle: the export, its delivery, the master, the reply and the import."""
    with CaptureQueriesContext(connection) as queries:
        run = run_cycle(config_id)
        pump()
    return len(queries), [query["sql"] for query in queries], Run.objects.get(pk=run.pk)


def cycle_costs(people: int) -> dict[str, tuple[int, list[str]]]:
    """Query counts of the cycles that matter, for `people` recipients per organization."""
    scenario = build_scenario(people_per_org=0)
    for org in scenario.orgs.values():
        populate(org, people)
    org1, org2, org3 = scenario["ORG1"], scenario["ORG2"], scenario["ORG3"]
    for org in (org1, org3, org1):
        run_cycle(org.config.pk)
        pump()

    costs = {}
    count, sql, run = measured(org2.config.pk)
    assert (run.exported, run.imported, run.status) == (people, 2 * people, "ok")
    costs["initial sync of ORG2"] = (count, sql)

    # ORG1 takes in ORG2's recipients, so that the incremental cycle below updates them.
    run_cycle(org1.config.pk)
    pump()
    changed = list(Recipient.objects.filter(organization=org2.organization).order_by("pk")[:K])
    for recipient in changed[:3]:
        recipient.display_name += " Renamed"
        changes.save_recipient(recipient)
    changes.delete_recipients([changed[3]])
    org2.add(alias="org2newcomer")

    count, sql, run = measured(org2.config.pk)
    assert (run.exported, run.status) == (K, "ok")
    costs["incremental export of ORG2"] = (count, sql)
    count, sql, run = measured(org1.config.pk)
    assert (run.imported, run.updated, run.deleted) == (1, 3, 1)
    costs["incremental import of ORG1"] = (count, sql)
    return costs


def costs_in_savepoint(people: int) -> dict[str, tuple[int, list[str]]]:
    with transaction.atomic():
        costs = cycle_costs(people)
        transaction.set_rollback(True)
    return costs


def differing_statements(small: list[str], large: list[str]) -> Counter:
    """The statements the larger run made more often, to point at the N+1."""

    def shapes(statements: list[str]) -> Counter:
        return Counter(SAVEPOINT_NAME.sub('"sp"', sql)[:120] for sql in statements)

    extra = shapes(large)
    extra.subtract(shapes(small))
    return +extra


def test_it_takes_as_many_queries_for_500_recipients_as_for_50(db):
    small = costs_in_savepoint(SMALL)
    large = costs_in_savepoint(LARGE)

    for name in small:
        (small_count, small_sql), (large_count, large_sql) = small[name], large[name]
        assert large_count == small_count, (name, differing_statements(small_sql, large_sql))
        assert small_count > 0


def test_a_full_sync_sorts_no_recipients_by_name(scenario):
    """Recipient's default order (display name) is for pages; the sync reads recipients into
    sets and dicts, and sorting every contact of an organization cost a full reply's sweep as
    much as the rest of it at 100,000 contacts."""
    sync_all()
    scenario["ORG1"].config.import_all_recipients()  # a full reply, swept at its last part

    with CaptureQueriesContext(connection) as queries:
        sync_all()

    recipients = [q["sql"] for q in queries if 'FROM "directory_recipient"' in q["sql"]]
    assert recipients
    assert not [sql for sql in recipients if '"display_name" ASC' in sql]
