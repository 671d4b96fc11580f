"""manage.py verify: the verification state of each organization, and the full cross-check that
lists the keys that differ."""

import io

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from directory import changes
from requestor.models import Verification
from tests.engine.helpers import cycle, synced_fixtures

synced_base, synced = synced_fixtures()


def verify(*args) -> tuple[str, int]:
    out = io.StringIO()
    try:
        call_command("verify", *args, stdout=out)
    except CommandError as exc:
        return out.getvalue(), exc.returncode
    return out.getvalue(), 0


def test_it_says_every_organization_is_verified_in_sync(synced):
    for org in synced.orgs.values():
        cycle(org)

    output, code = verify()

    assert code == 0
    assert [line.split(":")[0] for line in output.splitlines()] == ["ORG1", "ORG2", "ORG3"]
    assert all("verified in sync at" in line for line in output.splitlines())


def test_the_full_check_counts_no_hidden_contact_as_held(synced):
    changes.delete_recipients([synced["ORG2"].organization.recipients.exportable().first()])
    for name in ("ORG2", "ORG1", "ORG3"):
        cycle(synced[name])
    assert synced["ORG1"].hidden().exists()

    output, code = verify("ORG1", "--full")

    assert code == 0, output
    assert "What it holds of the others: 5 expected, 5 held: the same" in output


def test_it_lists_the_keys_that_differ_and_the_digest_drift(synced):
    org1 = synced["ORG1"]
    contact = org1.contacts().get(display_name="ORG2 User 1 (ORG2)")
    # Deleted around everything: nothing kept count of it.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM directory_recipient WHERE id = %s", [contact.pk])

    output, code = verify("ORG1", "--full")

    assert code == 1
    assert "What it holds of the others: 6 expected, 5 held" in output
    assert f"missing (1): {contact.global_key}" in output
    assert "digest drift: this organization's digest: kept" in output
    assert "What the master holds of it: 3 expected, 3 held: the same" in output


def test_it_repairs_what_the_full_check_finds(synced):
    org2 = synced["ORG2"]
    contact = org2.contacts().get(display_name="ORG3 User 2")
    changes.delete_recipients([contact])  # an administrator deleted it by hand

    output, code = verify("org2", "--full", "--repair")

    assert code == 1 and f"missing (1): {contact.global_key}" in output
    assert "repair asked for" in output and "digest drift" not in output
    run = cycle(org2)
    assert run.repair == "import" and run.imported == 1
    output, code = verify("ORG2", "--full")
    assert code == 0, output
    assert "What it holds of the others: 6 expected, 6 held: the same" in output


def test_it_shows_a_diverged_side_with_its_reason(synced):
    org3 = synced["ORG3"]
    Verification.objects.update_or_create(
        config=org3.config,
        side="export",
        defaults={"state": "diverged", "detail": "The repair did not restore equality: x."},
    )

    output, code = verify("ORG3")

    assert code == 1
    assert "ORG3: diverged" in output
    assert "What the master holds of it: diverged" in output
    assert "The repair did not restore equality: x." in output


def test_it_refuses_an_unknown_organization_and_repair_without_full(synced):
    with pytest.raises(CommandError, match="No requestor for: org9"):
        call_command("verify", "ORG9")
    with pytest.raises(CommandError, match="--repair goes with --full"):
        call_command("verify", "--repair")
