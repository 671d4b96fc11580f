"""Every cycle proves that each organization and its master hold the same, and repairs a
difference once (docs/protocol.md, rule 10)."""

import uuid
from datetime import timedelta

from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from directory import changes
from directory.models import DigestCell
from master import processing
from master.models import AllowedRequestor, GlobalEntry
from requestor import verify
from requestor.models import RequestorConfig, Run, Verification
from requestor.scope import UNKNOWN_SCOPE
from tests.engine.helpers import assert_converged, cycle, queue_cycle, synced_fixtures
from transport.digest import Tally
from transport.inbox import pump

synced_base, synced = synced_fixtures()
State = Verification.State


def states(org) -> dict[str, str]:
    return dict(Verification.objects.filter(config=org.config).values_list("side", "state"))


def test_it_verifies_both_sides_of_every_organization_after_the_first_sync(synced):
    for org in synced.orgs.values():
        cycle(org)
        assert states(org) == {"import": State.VERIFIED, "export": State.VERIFIED}, org.name
        run = Run.objects.filter(config=org.config).first()
        assert run.verification == {"import": "verified", "export": "verified"}


def test_it_repairs_a_contact_deleted_by_hand(synced):
    org1 = synced["ORG1"]
    contact = org1.contacts().get(display_name="ORG2 User 1 (ORG2)")
    changes.delete_recipients([contact])

    found = cycle(org1)
    check = Verification.objects.get(config=org1.config, side="import")

    assert check.state == State.REPAIRING
    assert "differs" in found.verification["import"]
    assert check.local_count == check.master_count - 1
    assert org1.refresh().config.full_reply_pending

    repaired = cycle(org1)
    check.refresh_from_db()

    assert repaired.repair == "import"
    assert (check.state, check.last_repair_differed, check.repairs) == (State.VERIFIED, 1, 1)
    assert check.repaired_at >= check.repair_requested_at
    assert "ORG2 User 1 (ORG2)" in org1.contact_names()
    assert not org1.refresh().config.full_reply_pending
    assert_converged(synced)

    # Another one, past the cooldown, is counted as the organization's second repair.
    Verification.objects.filter(pk=check.pk).update(
        repaired_at=check.repaired_at - verify.REPAIR_COOLDOWN
    )
    changes.delete_recipients([org1.contacts().filter(origin_organization="ORG3").first()])
    cycle(org1)
    cycle(org1)
    check.refresh_from_db()
    assert (check.state, check.repairs) == (State.VERIFIED, 2)


def forget_at_master(object_id) -> None:
    """The master loses a live entry (a bug, a hand edit), keeping its digests consistent with
    what it now holds, as its own processing would."""
    entry = GlobalEntry.objects.get(object_id=object_id)
    requestor = AllowedRequestor.objects.get(pk=entry.requestor_id)
    exports = Tally.of(requestor.export_digest, requestor.export_count)
    exports.remove(str(entry.object_id), entry.source_usn)
    mine = Tally.of(requestor.reply_digest, requestor.reply_count)
    mine.remove(entry.global_key, entry.usn)
    master = requestor.master
    everyone = Tally.of(master.reply_digest, master.reply_count)
    everyone.remove(entry.global_key, entry.usn)
    AllowedRequestor.objects.filter(pk=requestor.pk).update(
        export_digest=exports.hex,
        export_count=exports.count,
        reply_digest=mine.hex,
        reply_count=mine.count,
    )
    type(master).objects.filter(pk=master.pk).update(
        reply_digest=everyone.hex, reply_count=everyone.count
    )
    entry.delete()


def test_it_repairs_an_entry_the_master_lost_with_a_full_export(synced):
    org2 = synced["ORG2"]
    lost = org2.people[0]
    forget_at_master(lost.guid)

    found = cycle(org2)

    assert "differs" in found.verification["export"]
    assert org2.refresh().config.requestor_usn == 0
    repaired = cycle(org2)
    check = Verification.objects.get(config=org2.config, side="export")

    assert repaired.full_export and repaired.repair == "export"
    assert (check.state, check.last_repair_differed, check.detail) == (State.VERIFIED, 1, "")
    assert GlobalEntry.objects.get(object_id=lost.guid).deleted is False
    for org in synced.others("ORG2"):
        cycle(org)
    assert_converged(synced)


def test_it_reports_a_repair_that_does_not_help_and_stops_repairing(synced, monkeypatch):
    org2 = synced["ORG2"]
    lost = org2.people[0]
    forget_at_master(lost.guid)
    # A master that keeps losing it: the repair cannot succeed.
    apply_changes = processing.apply_changes

    def losing(changes, document, claim=True):
        document = document.model_copy(
            update={"changes": [c for c in document.changes if c.id != lost.guid]}
        )
        apply_changes(changes, document, claim)

    monkeypatch.setattr(processing, "apply_changes", losing)

    cycle(org2)  # finds the difference, asks for a full export
    cycle(org2)  # the full export: still different
    check = Verification.objects.get(config=org2.config, side="export")
    assert check.state == State.DIVERGED
    assert "The repair did not restore equality" in check.detail
    assert check.local_digest in check.detail or check.local_digest[:12] in check.detail

    later = [cycle(org2) for _ in range(3)]

    assert not any(run.full_export for run in later)
    check.refresh_from_db()
    assert (check.state, check.repairs) == (State.DIVERGED, 1)
    config = RequestorConfig.objects.get(pk=org2.config.pk)
    assert config.requestor_usn > 0
    assert all("diverged" in run.verification["export"] for run in later)


def test_a_repair_counts_what_differed_and_recounts_cells_written_around(synced):
    """The repair's full reply brings back a lost contact and removes one the master does not
    list; it also counts the contacts' cells again from their rows, in case something wrote
    around them. The copy then verifies, and the repair says how many entries differed."""
    org1 = synced["ORG1"]
    lost = org1.contacts().order_by("display_name").first()
    changes.delete_recipients([lost])
    stray = org1.contacts().order_by("display_name").first()
    stray.pk, stray.guid = None, uuid.uuid4()
    stray.global_key, stray.alias, stray.primary_smtp = "ORG9:stray", "stray", "stray@org9.example"
    changes.save_recipient(stray)
    DigestCell.objects.filter(organization=org1.organization, imported=True).update(
        count=F("count") + 5
    )

    cycle(org1)
    repaired = cycle(org1)

    check = Verification.objects.get(config=org1.config, side="import")
    assert (repaired.repair, repaired.imported, repaired.deleted) == ("import", 1, 1)
    assert (check.state, check.last_repair_differed) == (State.VERIFIED, 2), check.detail
    assert not org1.contacts().filter(global_key="ORG9:stray").exists()
    assert_converged(synced)


def test_a_cycle_reads_the_digest_cells_once_for_both_sides(synced):
    org2 = synced["ORG2"]
    cycle(org2)
    with CaptureQueriesContext(connection) as queries:
        run = cycle(org2)

    assert run.verification == {"import": "verified", "export": "verified"}
    reads = [q["sql"] for q in queries if 'FROM "directory_digestcell"' in q["sql"]]
    assert len(reads) == 1


def test_nothing_is_expected_at_the_master_before_a_scope_is_known(synced):
    config = synced["ORG2"].refresh().config
    assert verify.exports(config).count == 3

    for unknown in ({}, UNKNOWN_SCOPE):
        config.exported_scope = unknown
        assert (verify.exports(config).count, verify.exports(config).hex) == (0, Tally().hex)


def test_a_check_records_a_side_it_has_no_row_for_yet(synced):
    org2 = synced["ORG2"]
    Verification.objects.filter(config=org2.config).delete()

    cycle(org2)

    assert states(org2) == {"import": State.VERIFIED, "export": State.VERIFIED}
    assert Verification.objects.filter(config=org2.config).count() == 2


def test_the_export_side_waits_for_changes_made_after_the_export(synced):
    org2 = synced["ORG2"]
    before = Verification.objects.get(config=org2.config, side="export").checked_at
    run = queue_cycle(org2)
    changes.save_recipient(org2.people[0])  # after the export was read, before the reply

    pump()
    run.refresh_from_db()

    assert run.verification == {
        "import": "verified",
        "export": "not checked: changes made since the export are not acknowledged yet",
    }
    check = Verification.objects.get(config=org2.config, side="export")
    assert (check.state, check.checked_at) == (State.VERIFIED, before)
    assert cycle(org2).verification == {"import": "verified", "export": "verified"}


def test_a_reply_whose_run_is_gone_leaves_the_export_side_alone(synced):
    # Without its run the reply's ack is not taken (requestor.importer._acknowledge), so it
    # cannot show what the master holds of this organization's latest changes.
    org2 = synced["ORG2"]
    before = Verification.objects.get(config=org2.config, side="export").checked_at
    run = queue_cycle(org2)
    Run.objects.filter(pk=run.pk).delete()

    pump()

    check = Verification.objects.get(config=org2.config, side="export")
    assert (check.state, check.checked_at) == (State.VERIFIED, before)
    assert Verification.objects.get(config=org2.config, side="import").checked_at > before


def test_the_export_side_is_not_checked_with_the_reply_to_an_earlier_export(synced):
    org2 = synced["ORG2"]
    earlier = queue_cycle(org2)
    latest = queue_cycle(org2)

    pump()
    earlier.refresh_from_db()
    latest.refresh_from_db()

    assert earlier.verification["export"] == "not checked: not the reply to the latest export"
    assert latest.verification == {"import": "verified", "export": "verified"}


def test_the_export_side_is_not_checked_while_the_scope_is_to_be_restated(synced):
    org2 = synced["ORG2"]
    run = queue_cycle(org2)
    RequestorConfig.objects.filter(pk=org2.config.pk).update(exported_scope=UNKNOWN_SCOPE)

    pump()
    run.refresh_from_db()

    assert run.verification["export"] == "not checked: the next export restates the scope"


def test_a_difference_found_before_the_repair_is_carried_out_waits_for_it(synced):
    org2 = synced["ORG2"]
    forget_at_master(org2.people[0].guid)
    # A repair asked for whose full export has not been acknowledged yet.
    Verification.objects.filter(config=org2.config, side="export").update(
        state=State.REPAIRING, repair_pending=True, repairs=1, detail="Repair asked for."
    )

    run = cycle(org2)

    assert run.verification["export"].endswith("): repair pending")
    check = Verification.objects.get(config=org2.config, side="export")
    assert (check.state, check.repairs, check.detail) == (
        State.REPAIRING,
        1,
        "Repair asked for.",
    )
    assert org2.refresh().config.requestor_usn > 0  # no second repair asked for


def test_a_difference_within_the_cooldown_of_a_repair_is_reported_not_repaired(synced):
    config = synced["ORG2"].refresh().config
    now = timezone.now()
    local, master = Tally(), Tally()
    master.add("ORG3:1", 5)
    difference = f"{local} here, {master} at the master"

    def judged(since_repair: timedelta) -> tuple[str, str, str]:
        check = Verification(
            config=config, side="import", state=State.VERIFIED, repaired_at=now - since_repair
        )
        outcome = verify._outcome(config, check, "import", local, master, now)
        return outcome, check.state, check.detail

    assert judged(verify.REPAIR_COOLDOWN - timedelta(microseconds=1)) == (
        f"diverged ({difference})",
        State.DIVERGED,
        f"Different again within 1:00:00 of a repair ({difference}); repairs are not "
        "repeated automatically.",
    )
    assert not RequestorConfig.objects.get(pk=config.pk).full_reply_pending
    assert judged(verify.REPAIR_COOLDOWN) == (
        f"differs ({difference}): repairing",
        State.REPAIRING,
        f"Different: {difference}.",
    )
    assert RequestorConfig.objects.get(pk=config.pk).full_reply_pending
