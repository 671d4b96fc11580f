"""The sync_now and sync_all management commands."""

import io

import pytest
from django.core.management import CommandError, call_command

from directory.models import Organization
from requestor.models import RequestorConfig, Run
from tests.engine.helpers import assert_converged


def run_command(*args, **options) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, **options)
    return out.getvalue()


def table(output: str) -> list[list[str]]:
    """The rows of the printed summary tables, split into columns."""
    rows = []
    for line in output.splitlines():
        cells = line.split()
        if cells and cells[0] in ("ORG1", "ORG2", "ORG3"):
            rows.append(cells)
    return rows


def test_it_syncs_everything_and_prints_each_round(scenario):
    output = run_command("sync_all")

    assert output.count("organization") == 3
    assert "Round 1" in output and "Round 3" in output and "Round 4" not in output
    assert "Converged after 3 round(s)." in output
    rows = table(output)
    assert len(rows) == 9
    first_round = {row[0]: row for row in rows[:3]}
    # ORG3 exported its 3 recipients (a full export, acked at its USN 3) and imported the 6 of
    # ORG1 and ORG2 at once.
    assert first_round["ORG3"][1:7] == ["ok", "3", "3", "6", "0", "0"]
    assert first_round["ORG1"][1:7] == ["ok", "3", "3", "0", "0", "0"]
    assert all(row[1] == "ok" for row in rows)
    assert_converged(scenario)


def test_it_stops_after_max_rounds_and_says_so(scenario):
    output = run_command("sync_all", max_rounds=1)

    assert "Round 2" not in output
    assert "Still exchanging after 1 round(s)" in output
    assert Run.objects.count() == 3


def test_it_syncs_one_organization_now(scenario):
    run_command("sync_now", "ORG1")

    output = run_command("sync_now", "org2")

    rows = table(output)
    assert rows == [["ORG2", "ok", "3", "3", "3", "0", "0", "0"]]
    assert output.splitlines()[0].split() == [
        "organization",
        "status",
        "exported",
        "acked",
        "imported",
        "updated",
        "deleted",
        "conflicts",
    ]
    assert scenario["ORG2"].contacts().count() == 3
    assert not scenario["ORG3"].contacts().exists()


def test_it_refuses_an_unknown_organization(scenario):
    with pytest.raises(CommandError) as caught:
        run_command("sync_now", "ORG9")

    assert str(caught.value) == "No organization named 'ORG9' (known: ORG1, ORG2, ORG3)."
    assert not Run.objects.exists()


def test_it_refuses_an_organization_without_a_requestor(scenario):
    Organization.objects.create(name="ORG4", display_name="Organization 4")

    with pytest.raises(CommandError) as caught:
        run_command("sync_now", "ORG4")

    assert str(caught.value) == "ORG4 runs no requestor; configure one first."


def test_it_reports_a_cycle_that_cannot_reach_its_master(scenario):
    RequestorConfig.objects.filter(organization__name="ORG2").update(
        master_address="/o=ORG9/ou=Site9/cn=Recipients/cn=MASTER"
    )

    with pytest.raises(CommandError) as failed:
        run_command("sync_now", "ORG2")

    # It fails at once, saying why, rather than waiting for a reply that cannot come.
    assert "could not reach the master" in str(failed.value)
    assert "No agent of this installation has the EX address /o=ORG9/" in str(failed.value)
