"""The mass-delete guard, holds and quarantine (docs/protocol.md, rule 11)."""

import re
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from directory import changes
from directory.models import Recipient
from master import quarantine
from master.models import AllowedRequestor, GlobalEntry
from requestor import importer
from requestor.constants import RunStatus
from requestor.cycle import sync_all
from requestor.models import RequestorConfig, Run
from tests.engine.helpers import (
    add_many,
    assert_converged,
    cycle,
    inbound,
    rename,
    send_signed,
    synced_fixtures,
)
from tests.transport.documents import reply_doc
from transport import holds, wire
from transport.constants import Status
from transport.models import Hold, Message


def _thirty_in_org2(scenario):
    add_many(scenario["ORG2"], 27)  # and its 3 people: 30 live entries at the master


synced_base, synced_scenario = synced_fixtures(prepare=_thirty_in_org2)


def guard_of(name: str, **values) -> AllowedRequestor:
    requestor = AllowedRequestor.objects.get(organization_name=name)
    for key, value in values.items():
        setattr(requestor, key, value)
    requestor.save(update_fields=list(values))  # settings, or the state a test starts from
    return requestor


def delete_people(org, count: int) -> list[str]:
    people = list(
        Recipient.objects.filter(organization=org.organization, global_key__isnull=True).order_by(
            "pk"
        )[:count]
    )
    changes.delete_recipients(people)
    return [person.display_name for person in people]


def live_at_master(name: str) -> int:
    return GlobalEntry.objects.filter(origin=name, deleted=False).count()


@pytest.mark.parametrize(
    ("deletes", "is_held"),
    [(4, False), (5, False), (6, True)],
    ids=["under", "at", "over"],
)
def test_it_holds_an_export_deleting_more_than_the_count(synced_scenario, deletes, is_held):
    guard_of("ORG2", delete_limit=5, delete_percent=100)
    delete_people(synced_scenario["ORG2"], deletes)

    run = cycle(synced_scenario["ORG2"])

    assert live_at_master("ORG2") == (30 if is_held else 30 - deletes)
    assert (run.status == RunStatus.HELD) is is_held
    assert Hold.objects.filter(decision=Hold.Decision.PENDING).count() == int(is_held)


@pytest.mark.parametrize(
    ("deletes", "is_held"),
    [(5, False), (6, False), (7, True)],
    ids=["under", "at", "over"],
)
def test_it_holds_an_export_deleting_more_than_the_percentage(synced_scenario, deletes, is_held):
    # 20 % of 30 live entries is 6.
    guard_of("ORG2", delete_limit=1000, delete_percent=20, delete_floor=0)
    delete_people(synced_scenario["ORG2"], deletes)

    run = cycle(synced_scenario["ORG2"])

    assert live_at_master("ORG2") == (30 if is_held else 30 - deletes)
    assert (run.status == RunStatus.HELD) is is_held


def test_the_percentage_counts_only_from_the_floor(synced_scenario):
    guard_of("ORG2", delete_limit=1000, delete_percent=20, delete_floor=8)
    delete_people(synced_scenario["ORG2"], 7)

    assert cycle(synced_scenario["ORG2"]).status == RunStatus.OK
    assert live_at_master("ORG2") == 23


def test_a_held_export_applies_nothing_and_says_who_how_many_and_whom(synced_scenario):
    guard_of("ORG2", delete_limit=5)
    org1, org3 = synced_scenario["ORG1"], synced_scenario["ORG3"]
    before = (org1.contact_names(), org3.contact_names())
    rename("bulk26", "Renamed In The Same Batch")
    names = delete_people(synced_scenario["ORG2"], 8)

    run = cycle(synced_scenario["ORG2"])

    hold = Hold.objects.get()
    assert (hold.peer, hold.deletes, hold.live, hold.decision) == ("ORG2", 8, 30, "pending")
    assert sorted(hold.sample) == sorted(f"{name} (ORG2)" for name in names)
    assert "delete 8 of 30" in hold.reason
    assert (hold.message.status, hold.message.error) == (Status.HELD, hold.reason)
    # The requestor's run says what the master holds, in the master's words without its prefix.
    prefix = "Held for an administrator: "
    assert hold.reason.startswith(prefix)
    assert (run.status, run.error) == (
        RunStatus.HELD,
        f"Held by the master: {hold.reason[len(prefix) :]}",
    )
    # Nothing of the batch was applied, not even its rename.
    assert live_at_master("ORG2") == 30
    assert not GlobalEntry.objects.filter(attrs__display_name__startswith="Renamed").exists()
    assert (org1.contact_names(), org3.contact_names()) == before
    requestor = AllowedRequestor.objects.get(organization_name="ORG2")
    assert requestor.quarantined and "Mass delete held" in requestor.quarantine_reason
    assert requestor.acked_usn < synced_scenario["ORG2"].organization.usn


def test_the_sample_names_an_entry_without_a_display_name_by_its_address_or_key(synced_scenario):
    guard_of("ORG2", delete_limit=5)
    org2 = synced_scenario["ORG2"]
    people = list(
        Recipient.objects.filter(organization=org2.organization, global_key__isnull=True).order_by(
            "pk"
        )[:8]
    )
    # Three entries as a directory without display names (LDAP, say) gave them to the master,
    # one of them without an address either.
    nameless = []
    for entry in GlobalEntry.objects.filter(object_id__in=[p.guid for p in people[:3]]):
        entry.attrs = {k: v for k, v in entry.attrs.items() if k != "display_name"}
        if not nameless:
            del entry.attrs["primary_smtp"]
        entry.save(update_fields=["attrs"])
        nameless.append(entry.attrs.get("primary_smtp", entry.global_key))
    changes.delete_recipients(people)

    cycle(org2)

    named = [f"{person.display_name} (ORG2)" for person in people[3:]]
    assert sorted(Hold.objects.get().sample) == sorted([*nameless, *named])
    assert nameless[0].startswith("ORG2:") and all("@" in name for name in nameless[1:])


def test_a_held_batch_never_blocks_the_other_organizations(synced_scenario):
    guard_of("ORG2", delete_limit=5)
    delete_people(synced_scenario["ORG2"], 8)
    cycle(synced_scenario["ORG2"])
    newcomer = synced_scenario["ORG3"].add(display_name="ORG3 Newcomer")

    assert cycle(synced_scenario["ORG3"]).status == RunStatus.OK
    cycle(synced_scenario["ORG1"])

    assert any(
        name.startswith(newcomer.display_name) for name in synced_scenario["ORG1"].contact_names()
    )


def test_approving_applies_the_held_batch_then_what_waited_behind_it_in_order(
    synced_scenario, admin_user
):
    guard_of("ORG2", delete_limit=5)
    org2 = synced_scenario["ORG2"]
    delete_people(org2, 8)
    first = cycle(org2)
    rename("bulk20", "Changed While Held")
    second = cycle(org2)
    assert second.status == RunStatus.HELD
    assert inbound(status=Status.HELD).count() == 2

    hold = holds.approve(Hold.objects.get().pk, admin_user)

    assert (hold.decision, hold.decided_by) == ("approved", admin_user)
    assert not inbound(status=Status.HELD).exists()
    assert not AllowedRequestor.objects.get(organization_name="ORG2").quarantined
    sync_all(max_rounds=3)
    first.refresh_from_db()
    assert first.status in (RunStatus.OK, RunStatus.SUPERSEDED)
    assert first.status != RunStatus.OK or first.error == ""
    assert live_at_master("ORG2") == 22
    assert GlobalEntry.objects.filter(attrs__display_name__startswith="Changed While").exists()
    assert_converged(synced_scenario)


def test_rejecting_discards_the_batch_and_asks_for_a_full_export(synced_scenario, admin_user):
    guard_of("ORG2", delete_limit=5)
    org2 = synced_scenario["ORG2"]
    before = synced_scenario["ORG1"].contact_names()
    delete_people(org2, 8)
    run = cycle(org2)
    cycle(org2)

    holds.reject(Hold.objects.get().pk, admin_user)
    from transport.inbox import pump

    pump()

    assert not inbound(status=Status.HELD).exists()
    rejected = inbound(status=Status.REJECTED, sender__iexact=org2.config.dn)
    assert rejected.count() == 2 and "Rejected by admin" in rejected.first().error
    assert synced_scenario["ORG1"].contact_names() == before
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "Rejected" in run.error
    org2.refresh()
    assert org2.config.requestor_usn == 0
    # The next cycle is a full export: its sweep deletes the same 8, and is held again.
    again = cycle(org2)
    assert again.full_export and again.status == RunStatus.HELD
    assert Hold.objects.filter(decision="pending").get().deletes == 8


def test_a_master_that_wants_a_full_export_asks_in_every_reply_until_it_has_one(
    synced_scenario,
):
    """The notice of a rejection was lost: the master's next reply asks again, and the
    requestor's next cycle is a full export, after which the master stops asking."""
    org2 = synced_scenario["ORG2"]
    guard_of("ORG2", full_export_wanted=True)

    first = cycle(org2)
    second = cycle(org2)
    third = cycle(org2)

    assert not first.full_export and first.status == RunStatus.OK
    assert second.full_export and second.status == RunStatus.OK
    assert not third.full_export
    assert not AllowedRequestor.objects.get(organization_name="ORG2").full_export_wanted
    assert_converged(synced_scenario)


def test_a_decided_hold_cannot_be_decided_again(synced_scenario, admin_user):
    guard_of("ORG2", delete_limit=5)
    delete_people(synced_scenario["ORG2"], 8)
    cycle(synced_scenario["ORG2"])
    hold = Hold.objects.get()
    holds.reject(hold.pk, admin_user)

    with pytest.raises(holds.HoldDecided):
        holds.approve(hold.pk, admin_user)


def test_a_quarantined_requestor_is_held_until_released_then_applied_in_order(
    synced_scenario, admin_user
):
    org2 = synced_scenario["ORG2"]
    requestor = AllowedRequestor.objects.get(organization_name="ORG2")
    quarantine.quarantine(requestor, "Investigating", admin_user)
    rename("org2user1", "First Name Change")
    assert cycle(org2).status == RunStatus.HELD
    rename("org2user1", "Second Name Change")
    cycle(org2)
    assert inbound(status=Status.HELD).count() == 2

    assert quarantine.release(AllowedRequestor.objects.get(pk=requestor.pk)) == 2

    sync_all(max_rounds=3)
    names = synced_scenario["ORG1"].contact_names()
    assert any(name.startswith("Second Name Change") for name in names)
    assert_converged(synced_scenario)


def test_a_run_of_refused_messages_quarantines_the_requestor(synced_scenario):
    org2 = synced_scenario["ORG2"]
    master = synced_scenario.master
    master.quarantine_after_refusals = 3
    master.save()
    for _ in range(3):
        message = send_signed(
            org2.organization, org2.config.dn, master.dn, {"protocol": 1, "type": "export"}
        )
        Message.objects.filter(pk=message.pk).update(signature="AAAA" + message.signature[4:])
        from transport.inbox import pump

        pump()

    requestor = AllowedRequestor.objects.get(organization_name="ORG2")
    assert requestor.quarantined and "3 messages refused in a row" in requestor.quarantine_reason
    assert cycle(org2).status == RunStatus.HELD


def test_an_accepted_message_resets_the_refusal_count(synced_scenario):
    org2 = synced_scenario["ORG2"]
    AllowedRequestor.objects.filter(organization_name="ORG2").update(refusals=4)

    cycle(org2)

    assert AllowedRequestor.objects.get(organization_name="ORG2").refusals == 0


def test_a_held_batch_waiting_for_release_needs_its_decision(synced_scenario):
    guard_of("ORG2", delete_limit=5)
    delete_people(synced_scenario["ORG2"], 8)
    cycle(synced_scenario["ORG2"])

    with pytest.raises(quarantine.QuarantineError):
        quarantine.release(AllowedRequestor.objects.get(organization_name="ORG2"))


@pytest.mark.parametrize(("limit", "is_held"), [(8, False), (7, True)], ids=["at", "over"])
def test_a_requestor_holds_a_reply_removing_more_than_its_import_limit(
    synced_scenario, limit, is_held
):
    org3 = synced_scenario["ORG3"]
    org3.config.import_delete_limit = limit
    org3.config.save()
    before = org3.contacts().count()
    delete_people(synced_scenario["ORG2"], 8)
    cycle(synced_scenario["ORG2"])

    run = cycle(org3)

    assert org3.contacts().count() == (before if is_held else before - 8)
    assert (run.status == RunStatus.HELD) is is_held
    if is_held:
        hold = Hold.objects.get()
        assert (hold.organization, hold.kind, hold.peer) == (org3.organization, "reply", "ORG1")
        assert hold.deletes == 8 and run.error.startswith("Reply held")


def test_a_held_reply_is_applied_when_approved_and_kept_out_when_rejected(
    synced_scenario, admin_user
):
    org3 = synced_scenario["ORG3"]
    org3.config.import_delete_limit = 5
    org3.config.save()
    before = org3.contacts().count()
    delete_people(synced_scenario["ORG2"], 8)
    cycle(synced_scenario["ORG2"])
    cycle(org3)

    holds.reject(Hold.objects.get().pk, admin_user)
    assert org3.contacts().count() == before
    # The next reply brings the same deletes: held again, and approved this time.
    cycle(org3)
    holds.approve(Hold.objects.get(decision="pending").pk, admin_user)

    assert org3.contacts().count() == before - 8
    sync_all(max_rounds=3)
    assert_converged(synced_scenario)


def test_a_requestor_holds_a_reply_readdressing_more_than_its_import_limit(synced_scenario):
    org3 = synced_scenario["ORG3"]
    org3.config.import_delete_limit = 5
    org3.config.save()
    before = set(org3.contacts().values_list("primary_smtp", flat=True))
    # A wrong SMTP rewrite at ORG2: every one of its 30 addresses changes.
    RequestorConfig.objects.filter(organization__name="ORG2").update(
        modify_smtp_domain="wrong.example"
    )
    cycle(synced_scenario["ORG2"])

    run = cycle(org3)

    assert run.status == RunStatus.HELD
    hold = Hold.objects.get()
    assert hold.deletes == 30
    assert "It would delete 30 of 33 contacts of ORG3 (30 of them by a new address) (91 %);" in (
        hold.reason
    )
    # The first ten of them by name, for the administrator who decides.
    assert len(hold.sample) == holds.SAMPLE_SIZE
    assert set(hold.sample) < set(org3.contacts().values_list("display_name", flat=True))
    assert set(org3.contacts().values_list("primary_smtp", flat=True)) == before
    holds.approve(hold.pk)
    assert org3.contacts().filter(primary_smtp__endswith="@wrong.example").count() == 30


def test_the_import_guard_counts_the_shown_contacts_not_the_hidden_ones(synced_scenario):
    org3 = synced_scenario["ORG3"]
    RequestorConfig.objects.filter(pk=org3.config.pk).update(
        import_delete_limit=1000, import_delete_percent=20, import_delete_floor=0
    )
    # 50 contacts hidden for their grace period (entries deleted long ago) beside 33 shown.
    fields = ["organization_id", "container_id", "kind", "display_name", "alias"]
    fields += ["primary_smtp", "global_key", "origin_organization", "master_usn", "hidden_at"]
    gone = [
        (org3.organization.pk, org3.config.import_container_id, "custom_recipient", f"Gone {n}")
        + (f"gone{n}", f"gone{n}@org9.example", f"ORG9:{n}", "ORG9", 1, timezone.now())
        for n in range(50)
    ]
    changes.insert_recipients(org3.organization.pk, [*fields, "usn"], [(*r, 1) for r in gone])
    assert org3.contacts().count() == 33
    delete_people(synced_scenario["ORG2"], 7)  # 7 of 33 shown: over 20 %
    cycle(synced_scenario["ORG2"])

    assert cycle(org3).status == RunStatus.HELD


@pytest.mark.parametrize(("deleted", "is_held"), [(6, False), (7, True)], ids=["under", "over"])
def test_the_import_guards_share_is_of_the_contacts_before_the_part(
    synced_scenario, deleted, is_held
):
    # 33 contacts before the part: 6 of them are 18 % (applied), 7 are 21 % (held). Measured
    # against what is left after the part, 6 of 27 would already be over 20 %.
    org3 = synced_scenario["ORG3"]
    RequestorConfig.objects.filter(pk=org3.config.pk).update(
        import_delete_limit=1000, import_delete_percent=20, import_delete_floor=0
    )
    assert org3.contacts().count() == 33
    delete_people(synced_scenario["ORG2"], deleted)
    cycle(synced_scenario["ORG2"])

    run = cycle(org3)

    assert (run.status == RunStatus.HELD) is is_held
    assert org3.contacts().count() == (33 if is_held else 33 - deleted)
    if is_held:
        assert f"It would delete 7 of 33 contacts of {org3.organization.name} (21 %)" in (
            Hold.objects.get().reason
        )


def held_notice(in_reply_to, export_all: bool = False) -> wire.ReplyDocument:
    """The master's notice that it holds (or, with export_all, rejected) an export of ORG2."""
    notice = reply_doc(
        in_reply_to=str(in_reply_to),
        held=f"{holds.HELD_PREFIX}It would delete 8 of 30 entries of ORG2 at the master.",
        export_all=export_all,
        entries=[],
    )
    return wire.decode(wire.encode(notice))


@pytest.mark.parametrize("export_all", [False, True])
def test_a_masters_notice_leaves_a_finished_run_and_one_it_cannot_find_alone(
    synced_scenario, export_all
):
    # A notice that comes late (its export was approved and applied since, or superseded), or
    # for an export whose run is gone (cleaned up), changes no run and fails nothing.
    org2 = synced_scenario["ORG2"]
    finished = cycle(org2)
    assert (finished.status, finished.error) == (RunStatus.OK, "")
    runs = list(Run.objects.order_by("pk").values_list("pk", "status", "error"))
    exported = org2.config.requestor_usn
    assert exported > 0
    for in_reply_to in (finished.batch, uuid.uuid4()):
        importer.master_notice(org2.config, held_notice(in_reply_to, export_all=export_all))

    assert list(Run.objects.order_by("pk").values_list("pk", "status", "error")) == runs
    org2.refresh()
    # A rejection asks for everything again all the same: the next export starts from 0.
    assert org2.config.requestor_usn == (0 if export_all else exported)


def test_a_masters_notice_naming_another_organizations_run_leaves_it_alone(synced_scenario):
    # Two requestors of one installation: a notice addressed to ORG2 that names a batch of
    # ORG3's (a master's mistake, or a forged reference) must not mark ORG3's run held.
    org2, org3 = synced_scenario["ORG2"], synced_scenario["ORG3"]
    theirs = cycle(org3)
    Run.objects.filter(pk=theirs.pk).update(status=RunStatus.WAITING)  # its reply still to come

    importer.master_notice(org2.config, held_notice(theirs.batch))

    theirs.refresh_from_db()
    assert (theirs.status, theirs.error) == (RunStatus.WAITING, "")


@pytest.mark.parametrize("export_all", [False, True])
def test_a_masters_notice_writes_only_what_it_says_of_the_run(synced_scenario, export_all):
    # The notice rewrites the run's status, end and error, and no column it did not change: a
    # counter or label another process sets meanwhile (the console, housekeeping) stays.
    org2 = synced_scenario["ORG2"]
    run = cycle(org2)
    Run.objects.filter(pk=run.pk).update(status=RunStatus.WAITING, finished_at=None)

    with CaptureQueriesContext(connection) as queries:
        importer.master_notice(org2.config, held_notice(run.batch, export_all=export_all))

    updates = [q["sql"] for q in queries if q["sql"].startswith('UPDATE "requestor_run"')]
    assert len(updates) == 1
    written = re.findall(r'"(\w+)" = ', updates[0].partition(" WHERE ")[0])
    assert sorted(written) == ["error", "finished_at", "status"]
    run.refresh_from_db()
    assert run.status == (RunStatus.FAILED if export_all else RunStatus.HELD)
    assert (run.finished_at is not None) is export_all
