"""The preview of a requestor's next cycle (docs/protocol.md, rule 11): each change with its
reason, what waiting replies would import, the guards, and nothing changed at all."""

import pytest
from django.apps import apps
from django.db import connection, router, transaction
from django.test.utils import CaptureQueriesContext

from directory import changes
from directory.constants import Kind
from directory.models import Recipient
from master import quarantine
from master.models import AllowedRequestor
from requestor.constants import ImportOp, PreviewOp, PreviewReason
from requestor.cycle import SyncError
from requestor.models import Conflict, ExportedContainer, FilteredEntry, RequestorConfig
from requestor.preview import preview_cycle
from tests.engine.helpers import (
    add_many,
    cycle,
    deliver,
    queue_cycle,
    queued,
    rename,
    synced_fixtures,
)
from transport.constants import Status
from transport.models import Hold, Message
from transport.outbox import deliver_locally


def _outsiders(scenario):
    """ORG2 keeps a mailbox in its Contractors container (not exported), and ORG3 one above its
    trust level threshold: out of the scope from the start."""
    scenario["ORG2"].add(
        scenario["ORG2"].contractors, alias="contractor", display_name="Carla Contractor"
    )
    scenario["ORG3"].add(alias="secretive", display_name="Sam Secretive", trust_level=20)


synced_base, synced_scenario = synced_fixtures(prepare=_outsiders)


def preview_of(org):
    return preview_cycle(org.config.pk)


def change_of(preview, recipient: Recipient):
    found = [change for change in preview.changes if change.id == str(recipient.guid)]
    assert len(found) == 1, [(c.name, c.op, c.reason) for c in preview.changes]
    return found[0]


def person(org, alias: str) -> Recipient:
    return Recipient.objects.get(organization=org.organization, alias=alias)


def save(recipient: Recipient, **values) -> Recipient:
    for name, value in values.items():
        setattr(recipient, name, value)
    return changes.save_recipient(recipient)


def exported(org, container) -> ExportedContainer:
    return ExportedContainer.objects.get(config=org.config, container=container)


# -- the export, one test per reason ------------------------------------------------------------


def test_it_says_nothing_is_exported_when_nothing_changed(synced_scenario):
    preview = preview_of(synced_scenario["ORG2"])

    assert preview.changes == []
    assert not preview.full and preview.master_local
    assert preview.export_counts == {"add": 0, "change": 0, "delete": 0}


def test_a_new_recipient_is_an_add_never_exported(synced_scenario):
    org2 = synced_scenario["ORG2"]
    newcomer = org2.add(display_name="Nina Newcomer")

    change = change_of(preview_of(org2), newcomer)

    assert (change.op, change.reason, change.at_master) == (PreviewOp.ADD, "new", False)
    assert change.name == "Nina Newcomer (ORG2)"
    assert change.address == newcomer.primary_smtp
    assert change.usn == Recipient.objects.get(pk=newcomer.pk).usn


def test_a_changed_recipient_names_the_attributes_the_master_sees_change(synced_scenario):
    org2 = synced_scenario["ORG2"]
    someone = save(org2.people[0], display_name="Renamed Person", title="Chief")

    change = change_of(preview_of(org2), someone)

    assert (change.op, change.reason) == (PreviewOp.CHANGE, PreviewReason.CHANGED)
    assert change.attributes == ["display_name", "title"]
    assert "display name, title" in change.detail


def test_a_change_of_a_local_attribute_only_says_the_master_keeps_the_entry(synced_scenario):
    org2 = synced_scenario["ORG2"]
    someone = save(org2.people[0], custom_attribute_1="never exported")

    change = change_of(preview_of(org2), someone)

    assert (change.op, change.reason, change.attributes) == ("change", "changed", [])
    assert "keeps it as it is" in change.detail


def test_a_container_newly_exported_brings_its_recipients_into_the_scope(synced_scenario):
    org2 = synced_scenario["ORG2"]
    ExportedContainer.objects.create(config=org2.config, container=org2.contractors)

    change = change_of(preview_of(org2), person(org2, "contractor"))

    assert (change.op, change.reason) == (PreviewOp.ADD, PreviewReason.ENTERED_SCOPE)
    assert change.causes == ["container"]
    assert change.detail == f"Its container {org2.contractors.dn} is exported now."


def test_a_kind_newly_exported_brings_those_recipients_into_the_scope(synced_scenario):
    org2 = synced_scenario["ORG2"]
    contact = org2.add(alias="outsidecontact", kind=Kind.CUSTOM_RECIPIENT)
    cycle(org2)  # exported as a delete of an entry the master never held: nothing there
    row = exported(org2, org2.recipients)
    row.custom_recipients = True
    row.save()

    change = change_of(preview_of(org2), contact)

    assert (change.op, change.reason, change.causes) == ("add", "entered_scope", ["kind"])
    assert change.detail == f"Custom recipients are exported from {org2.recipients.dn} now."


def test_a_raised_trust_threshold_brings_recipients_into_the_scope(synced_scenario):
    org3 = synced_scenario["ORG3"]
    RequestorConfig.objects.filter(pk=org3.config.pk).update(trust_level=30)

    change = change_of(preview_of(org3), person(org3, "secretive"))

    assert (change.op, change.reason, change.causes) == ("add", "entered_scope", ["trust_level"])
    assert "raised to 30" in change.detail


def test_a_container_no_longer_exported_takes_its_recipients_out_of_the_scope(synced_scenario):
    org2 = synced_scenario["ORG2"]
    ExportedContainer.objects.create(config=org2.config, container=org2.contractors)
    cycle(org2)
    exported(org2, org2.contractors).delete()

    change = change_of(preview_of(org2), person(org2, "contractor"))

    assert (change.op, change.reason, change.causes) == ("delete", "left_scope", ["container"])
    assert "is no longer exported" in change.detail
    assert change.name == "Carla Contractor (ORG2)" and change.at_master


def test_a_recipient_moved_out_of_the_exported_containers_leaves_the_scope(synced_scenario):
    org2 = synced_scenario["ORG2"]
    someone = save(org2.people[1], container=org2.contractors)

    change = change_of(preview_of(org2), someone)

    assert (change.reason, change.causes) == ("left_scope", ["container"])
    assert change.detail == f"Its container {org2.contractors.dn} is not exported."


def test_a_kind_no_longer_exported_takes_those_recipients_out_of_the_scope(synced_scenario):
    org2 = synced_scenario["ORG2"]
    row = exported(org2, org2.recipients)
    row.mailboxes = False
    row.save()

    preview = preview_of(org2)

    change = change_of(preview, org2.people[0])
    assert (change.op, change.reason, change.causes) == ("delete", "left_scope", ["kind"])
    assert change.detail == f"Mailboxes are no longer exported from {org2.recipients.dn}."
    assert preview.export_counts["delete"] == 3


def test_a_trust_level_above_the_threshold_takes_a_recipient_out_of_the_scope(synced_scenario):
    org2 = synced_scenario["ORG2"]
    someone = save(org2.people[0], trust_level=99)

    change = change_of(preview_of(org2), someone)

    assert (change.op, change.reason, change.causes) == ("delete", "left_scope", ["trust_level"])
    assert "trust level 99 is above the threshold 50" in change.detail


def test_a_hidden_recipient_leaves_the_scope(synced_scenario):
    org2 = synced_scenario["ORG2"]
    someone = save(org2.people[0], hidden_from_others=True)

    change = change_of(preview_of(org2), someone)

    assert (change.op, change.reason, change.causes) == ("delete", "left_scope", ["hidden"])
    assert "hidden from other organizations" in change.detail


def test_a_deleted_recipient_is_a_delete_named_as_the_master_holds_it(synced_scenario):
    org2 = synced_scenario["ORG2"]
    gone = org2.people[2]
    changes.delete_recipients([gone])

    change = change_of(preview_of(org2), gone)

    assert (change.op, change.reason, change.at_master) == ("delete", "deleted", True)
    assert (change.name, change.address) == (f"{gone.display_name} (ORG2)", gone.primary_smtp)


def test_a_new_display_name_suffix_restates_everything_in_the_scope(synced_scenario):
    org2 = synced_scenario["ORG2"]
    RequestorConfig.objects.filter(pk=org2.config.pk).update(append_display_name=" [Two]")

    preview = preview_of(org2)

    assert len(preview.changes) == 3
    for change in preview.changes:
        assert (change.op, change.reason, change.causes) == ("change", "transforms", ["suffix"])
        assert change.attributes == ["display_name"] and change.name.endswith(" [Two]")
        assert "' (ORG2)' → ' [Two]'" in change.detail


def test_a_new_smtp_domain_rewrite_restates_everything_in_the_scope(synced_scenario):
    org3 = synced_scenario["ORG3"]
    RequestorConfig.objects.filter(pk=org3.config.pk).update(modify_smtp_domain="three.example")

    change = change_of(preview_of(org3), org3.people[0])

    assert (change.reason, change.causes) == ("transforms", ["smtp_domain"])
    assert change.attributes == ["primary_smtp"]
    assert change.address.endswith("@three.example")
    assert "org3.com → three.example" in change.detail


def test_a_full_export_lists_everything_and_what_the_master_would_drop(synced_scenario):
    org2 = synced_scenario["ORG2"]
    gone = org2.people[0]
    changes.delete_recipients([gone])
    RequestorConfig.objects.get(pk=org2.config.pk).export_all_recipients()

    preview = preview_of(org2)

    assert preview.full
    assert {change.reason for change in preview.changes} == {PreviewReason.FULL_EXPORT}
    assert preview.export_counts == {"add": 0, "change": 2, "delete": 1}
    dropped = change_of(preview, gone)
    assert dropped.op == "delete" and dropped.usn is None
    assert "the master drops its entry" in dropped.detail
    assert "no longer in the directory" in dropped.detail
    assert all("Export All" in change.detail for change in preview.changes if change.usn)


def test_without_the_master_here_it_tells_new_from_changed_by_the_last_acknowledged_export(
    synced_scenario,
):
    org2 = synced_scenario["ORG2"]
    RequestorConfig.objects.filter(pk=org2.config.pk).update(
        master_address="master@elsewhere.example"
    )
    renamed = rename(org2.people[0].alias, "Renamed Elsewhere")
    newcomer = org2.add(display_name="New Elsewhere")

    preview = preview_of(org2)

    assert not preview.master_local
    assert any("another installation" in note for note in preview.notes)
    new, changed = change_of(preview, newcomer), change_of(preview, renamed)
    assert (new.op, new.reason, new.at_master) == ("add", "new", None)
    assert (changed.op, changed.reason, changed.attributes) == ("change", "changed", [])
    assert "known only at the master" in changed.detail
    export_guard = preview.guards[0]
    assert (export_guard.side, export_guard.held) == ("export", None)


# -- the master's guard -------------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "held"), [(3, False), (2, True)], ids=["at", "over"])
def test_it_says_whether_the_masters_guard_would_hold_the_export(synced_scenario, limit, held):
    org2 = synced_scenario["ORG2"]
    AllowedRequestor.objects.filter(organization_name="ORG2").update(
        delete_limit=limit, delete_percent=100
    )
    changes.delete_recipients(org2.people)

    guard = preview_of(org2).guards[0]

    assert (guard.side, guard.held) == ("export", held)
    assert ("would delete 3 of 3" in guard.detail) is held


def test_it_says_a_quarantined_requestors_export_would_be_held(synced_scenario):
    org2 = synced_scenario["ORG2"]
    quarantine.quarantine(AllowedRequestor.objects.get(organization_name="ORG2"), "Checking")

    guard = preview_of(org2).guards[0]

    assert guard.held is True and "quarantined" in guard.detail and "Checking" in guard.detail


# -- the replies waiting ------------------------------------------------------------------------


def reply_waiting(org) -> Message:
    """`org`'s cycle: its export is delivered to the master and processed there; the master's
    reply arrives at `org` and waits, not processed yet."""
    queue_cycle(org)
    deliver(list(queued()))
    replies = list(queued(recipient=org.config.dn))
    assert len(replies) == 1
    assert deliver_locally(replies[0].pk)
    return Message.objects.get(direction="in", recipient=org.config.dn, status=Status.RECEIVED)


def import_change(reply, op: str, name_start: str):
    found = [c for c in reply.changes if c.op == op and c.name.startswith(name_start)]
    assert len(found) == 1, [(c.op, c.name, c.reason) for c in reply.changes]
    return found[0]


def test_a_waiting_reply_shows_what_it_would_add_update_remove_and_set_aside(synced_scenario):
    org1, org2 = synced_scenario["ORG1"], synced_scenario["ORG2"]
    org1.add(alias="fresh", display_name="Fresh Face")
    org1.add(alias="taken", display_name="Taken Address", primary_smtp="clash@org2.example")
    org1.add(alias="banned", display_name="Banned Person")
    rename(org1.people[0].alias, "Renamed In ORG1")
    changes.delete_recipients([org1.people[1]])
    cycle(org1)
    org2.add(alias="clash", primary_smtp="clash@org2.example")
    waiting = reply_waiting(org2)
    RequestorConfig.objects.filter(pk=org2.config.pk).update(
        excluded_addresses="banned@org1.example"
    )

    preview = preview_of(org2)

    (reply,) = preview.replies
    assert (reply.message, reply.status, reply.outcome) == (waiting.pk, "received", "processed")
    added = import_change(reply, ImportOp.ADD, "Fresh Face")
    assert (added.reason, added.origin) == ("new", "ORG1")
    updated = import_change(reply, ImportOp.UPDATE, "Renamed In ORG1")
    assert updated.attributes == ["display_name"]
    removed = import_change(reply, ImportOp.REMOVE, org1.people[1].display_name)
    assert removed.reason == "deleted"
    conflict = import_change(reply, ImportOp.SET_ASIDE, "Taken Address")
    assert conflict.reason == "conflict" and "clash@org2.example" in conflict.detail
    excluded = import_change(reply, ImportOp.SET_ASIDE, "Banned Person")
    assert excluded.reason == FilteredEntry.Reason.ADDRESS
    assert preview.import_counts == {"add": 1, "update": 1, "remove": 1, "set_aside": 2}
    assert (preview.guards[1].side, preview.guards[1].held) == ("import", False)
    # And nothing of it happened.
    assert Message.objects.get(pk=waiting.pk).status == Status.RECEIVED
    assert not Conflict.objects.filter(config=org2.config).exists()


def test_a_waiting_reply_removing_contacts_of_an_excluded_organization_says_why(synced_scenario):
    org1, org2 = synced_scenario["ORG1"], synced_scenario["ORG2"]
    held_as = org2.contacts().get(origin_organization="ORG1", alias=org1.people[0].alias)
    rename(org1.people[0].alias, "Still Coming")
    cycle(org1)
    reply_waiting(org2)
    RequestorConfig.objects.filter(pk=org2.config.pk).update(excluded_organizations="ORG1")

    (reply,) = preview_of(org2).replies

    # Removed, under the name it has here.
    removed = import_change(reply, ImportOp.REMOVE, held_as.display_name)
    assert removed.reason == FilteredEntry.Reason.ORGANIZATION
    assert "organization excluded" in removed.detail


@pytest.mark.parametrize(("limit", "held"), [(2, False), (1, True)], ids=["at", "over"])
def test_it_says_whether_the_import_guard_would_hold_a_waiting_reply(synced_scenario, limit, held):
    org1, org2 = synced_scenario["ORG1"], synced_scenario["ORG2"]
    RequestorConfig.objects.filter(pk=org2.config.pk).update(
        import_delete_limit=limit, import_delete_percent=100
    )
    changes.delete_recipients(org1.people[:2])
    cycle(org1)
    reply_waiting(org2)

    preview = preview_of(org2)

    guard = preview.guards[1]
    assert (guard.side, guard.held) == ("import", held)
    first = preview.replies[0]
    assert first.guard_tripped is held
    assert first.outcome == (Status.HELD if held else Status.PROCESSED)
    if held:
        assert "delete 2 of" in guard.detail and first.changes == []
        # What approving it would do, after the replies the next cycle applies.
        approved = preview.replies[-1]
        assert approved.if_approved and approved.outcome == Status.PROCESSED
        assert approved.counts["remove"] == 2
        assert preview.import_counts["remove"] == 0
    assert not Hold.objects.exists()


def test_a_reply_held_already_is_shown_waiting_and_what_approval_would_do(synced_scenario):
    org1, org2 = synced_scenario["ORG1"], synced_scenario["ORG2"]
    RequestorConfig.objects.filter(pk=org2.config.pk).update(
        import_delete_limit=1, import_delete_percent=100
    )
    changes.delete_recipients(org1.people[:2])
    cycle(org1)
    cycle(org2)
    held = Message.objects.get(direction="in", recipient=org2.config.dn, status=Status.HELD)

    preview = preview_of(org2)

    waiting, approved = preview.replies
    assert (waiting.message, waiting.outcome, waiting.if_approved) == (held.pk, "held", False)
    assert (approved.message, approved.outcome, approved.if_approved) == (
        held.pk,
        "processed",
        True,
    )
    assert approved.counts["remove"] == 2
    assert preview.guards[1].held is True
    assert Hold.objects.get().decision == Hold.Decision.PENDING


# -- entry conditions, cost and effect ------------------------------------------------------------


def test_it_refuses_an_unknown_requestor(db):
    with pytest.raises(SyncError, match="no requestor configuration 999999"):
        preview_cycle(999999)


def _scenario_with_everything_pending(scenario) -> None:
    """At ORG2: pending changes of every kind, a reply held by its import guard, and a reply
    received but not applied (held behind the first by the next cycle)."""
    org1, org2 = scenario["ORG1"], scenario["ORG2"]
    RequestorConfig.objects.filter(pk=org2.config.pk).update(
        import_delete_limit=1, import_delete_percent=100
    )
    changes.delete_recipients(org1.people[:2])
    cycle(org1)
    cycle(org2)
    org1.add(alias="fresh", display_name="Fresh Face")
    cycle(org1)
    reply_waiting(org2)
    org2.add(display_name="Nina Newcomer")
    save(org2.people[0], display_name="Renamed")
    save(org2.people[1], hidden_from_others=True)
    changes.delete_recipients([org2.people[2]])
    ExportedContainer.objects.create(config=org2.config, container=org2.contractors)
    RequestorConfig.objects.filter(pk=org2.config.pk).update(excluded_organizations="ORG3")


def every_table() -> dict[str, list]:
    """Every row of every table of every installed model, every column."""
    tables = {}
    for model in apps.get_models(include_auto_created=True):
        if not model._meta.managed or not router.allow_migrate_model("default", model):
            continue
        columns = [field.column for field in model._meta.concrete_fields]
        rows = model._base_manager.order_by("pk").values_list(
            *[field.attname for field in model._meta.concrete_fields]
        )
        tables[model._meta.db_table] = [columns] + [
            tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows
        ]
    return tables


def test_a_preview_changes_nothing_at_all(synced_scenario):
    _scenario_with_everything_pending(synced_scenario)
    org2 = synced_scenario["ORG2"]
    assert Hold.objects.filter(decision=Hold.Decision.PENDING).count() == 1
    before = every_table()

    preview = preview_of(org2)

    assert every_table() == before
    reasons = {change.reason for change in preview.changes}
    assert reasons == {"new", "changed", "entered_scope", "left_scope", "deleted"}
    outcomes = [(reply.if_approved, reply.outcome) for reply in preview.replies]
    assert outcomes == [(False, "held"), (False, "held"), (True, "processed"), (True, "processed")]
    approved = [change.op for reply in preview.replies[2:] for change in reply.changes]
    assert {"add", "remove"} <= set(approved)


def preview_cost(scenario, count: int, full: bool) -> int:
    """Queries of a preview of ORG2 with `count` new recipients to export (and, in a full
    export, everything else) and `count` new contacts in a waiting reply; everything it took to
    get there rolled back afterwards."""
    org1, org2 = scenario["ORG1"], scenario["ORG2"]
    with transaction.atomic():
        add_many(org1, count, prefix=f"many{count}x")
        cycle(org1)
        reply_waiting(org2)
        add_many(org2, count, prefix=f"more{count}x")
        if full:
            RequestorConfig.objects.get(pk=org2.config.pk).export_all_recipients()
        with CaptureQueriesContext(connection) as queries:
            preview = preview_of(org2)
        assert preview.full is full
        assert preview.export_counts["add"] == count
        assert preview.import_counts["add"] == count
        transaction.set_rollback(True)
    return len(queries)


@pytest.mark.usefixtures("real_sqlite_limit")
@pytest.mark.parametrize("full", [False, True], ids=["incremental", "full"])
def test_the_query_count_does_not_grow_with_the_recipients(synced_scenario, full):
    assert preview_cost(synced_scenario, 10, full) == preview_cost(synced_scenario, 100, full)
