"""The master's rules: who it listens to, its USN ledger, and a restore from backup."""

import io
import uuid

import pytest
from django.core import serializers
from django.core.management import CommandError, call_command

from directory import changes
from directory.models import Recipient
from master.models import AllowedRequestor, GlobalEntry, LedgerEntry, MasterConfig, ReceivedBatch
from requestor.cycle import sync_all
from requestor.models import Conflict, RequestorConfig, Verification
from tests.engine.conftest import MASTER_DN
from tests.engine.helpers import (
    assert_converged,
    assert_no_duplicates,
    cycle,
    inbound,
    messages_for,
    queue_cycle,
    refresh,
    send_signed,
    snapshot,
    synced_fixtures,
)
from transport import signing
from transport.constants import MessageKind, Status
from transport.inbox import pump

MASTER_TABLES = [MasterConfig, AllowedRequestor, GlobalEntry, LedgerEntry, ReceivedBatch]

synced_base, synced = synced_fixtures()


def master_state() -> tuple[int, int, int]:
    return (
        GlobalEntry.objects.count(),
        LedgerEntry.objects.count(),
        MasterConfig.objects.get().usn,
    )


def rejected_exports():
    return inbound(recipient=MASTER_DN, status=Status.REJECTED)


def export_document(org, **overrides) -> dict:
    """An export part as the organization's requestor would write it."""
    document = {
        "protocol": 1,
        "type": "export",
        "sender": {"organization": org.name, "address": org.config.dn},
        "batch": str(uuid.uuid4()),
        "part": 1,
        "parts": 1,
        "sequence": org.config.sequence + 1,
        "full": False,
        "master_usn": org.config.master_usn,
        "master_epoch": str(org.config.master_epoch) if org.config.master_epoch else None,
        "usn_from": org.config.requestor_usn,
        "usn_through": org.config.requestor_usn + 1,
        "changes": [
            {
                "id": str(uuid.uuid4()),
                "op": "upsert",
                "kind": "mailbox",
                "usn": org.config.requestor_usn + 1,
                "attrs": {"display_name": "Intruder", "primary_smtp": "intruder@evil.example"},
            }
        ],
    }
    document.update(overrides)
    return document


def send_to_master(org, document: dict):
    """A hand-made export from `org`'s requestor, signed with its key."""
    message = send_signed(org.organization, org.config.dn, MASTER_DN, document)
    pump()
    message.refresh_from_db()
    return message


def test_it_rejects_a_disabled_requestor_and_changes_nothing(synced):
    AllowedRequestor.objects.filter(organization_name="ORG3").update(enabled=False)
    person = Recipient.objects.get(alias="org3user1", global_key__isnull=True)
    person.display_name = "Should Not Travel"
    changes.save_recipient(person)
    before, contacts = master_state(), snapshot()

    cycle(synced["ORG3"])

    message = rejected_exports().get()
    dn = synced["ORG3"].config.dn
    assert message.error == f"The requestor {dn} is disabled on this master."
    assert message.organization.name == "ORG1"
    assert master_state() == before
    # ORG3's runs never complete, so sync_all would go on to its last round: three will do.
    sync_all(max_rounds=3)
    assert master_state() == before
    assert snapshot() == contacts


def test_it_rejects_a_requestor_speaking_for_another_organization(synced):
    org2, org3 = synced["ORG2"], synced["ORG3"]
    before = master_state()
    claimed = export_document(org3, sender={"organization": "ORG2", "address": org3.config.dn})

    message = send_to_master(org3, claimed)

    assert message.status == Status.REJECTED
    assert "speaks for ORG3" in message.error and "ORG2" in message.error
    assert master_state() == before
    # Writing another requestor's address in the document does not help either.
    forged = export_document(org3, sender={"organization": "ORG2", "address": org2.config.dn})
    message = send_to_master(org3, forged)
    assert message.status == Status.REJECTED
    assert "says it is from" in message.error
    assert master_state() == before
    assert not GlobalEntry.objects.filter(attrs__display_name="Intruder").exists()


def test_it_rejects_a_malformed_export_whole(synced):
    org3 = synced["ORG3"]
    before = master_state()
    document = export_document(org3)
    document["changes"].append({**document["changes"][0], "attrs": {"custom_attribute_1": "x"}})

    message = send_to_master(org3, document)

    assert message.status == Status.REJECTED
    assert "custom_attribute_1" in message.error
    assert master_state() == before


def test_it_accepts_a_well_formed_export_sent_by_hand(synced):
    """The counterpart of the rejections above: the same document from the right sender counts."""
    org3 = synced["ORG3"]
    before = master_state()

    message = send_to_master(org3, export_document(org3))

    assert message.status == Status.PROCESSED, message.error
    assert master_state()[0] == before[0] + 1
    assert GlobalEntry.objects.get(attrs__display_name="Intruder").origin == "ORG3"


def test_it_keeps_a_strictly_increasing_gap_free_ledger(synced):
    for alias in ("org1user1", "org2user2", "org3user3"):
        person = Recipient.objects.get(alias=alias, global_key__isnull=True)
        person.title = "Changed"
        changes.save_recipient(person)
    changes.delete_recipients(Recipient.objects.filter(alias="org2user1", global_key__isnull=True))
    sync_all()

    ledger = list(LedgerEntry.objects.order_by("id").values_list("usn", flat=True))
    assert ledger == list(range(1, len(ledger) + 1))
    master = MasterConfig.objects.get()
    assert master.usn == ledger[-1]
    # Every global entry shows its latest ledger USN.
    latest = {}
    for key, usn in LedgerEntry.objects.values_list("global_key", "usn"):
        latest[key] = max(latest.get(key, 0), usn)
    published = dict(GlobalEntry.objects.filter(usn__gt=0).values_list("global_key", "usn"))
    assert published == latest
    assert LedgerEntry.objects.filter(op="delete").count() == 1


def backup_master() -> str:
    objects = [obj for model in MASTER_TABLES for obj in model.objects.all()]
    return serializers.serialize("json", objects)


def restore_master(backup: str) -> None:
    """Put the master database back as it was at the backup (the rest of the installation
    keeps its current state, as a master restored on its own server would)."""
    ReceivedBatch.objects.all().delete()
    LedgerEntry.objects.all().delete()
    GlobalEntry.objects.all().delete()
    for restored in serializers.deserialize("json", backup):
        restored.save()


def test_it_starts_a_new_epoch_when_restored_from_backup(synced):
    old_epoch = MasterConfig.objects.get().epoch
    backup = backup_master()
    renamed = Recipient.objects.get(alias="org2user1", global_key__isnull=True)
    renamed.display_name = "After Backup"
    changes.save_recipient(renamed)
    synced["ORG2"].add(alias="newhire", display_name="New Hire")
    changes.delete_recipients(Recipient.objects.filter(alias="org3user2", global_key__isnull=True))
    sync_all()
    refresh(synced)
    ahead = synced["ORG1"].config.master_usn

    restore_master(backup)
    master = MasterConfig.objects.get()
    assert master.usn < ahead
    last = inbound().last().pk
    rounds = sync_all()

    # The restored master numbers its messages above everything it sent before the restore, so
    # no requestor refuses its replies as replays: one round recovers, the rest follow at once.
    refused = inbound(pk__gt=last, status=Status.REJECTED).values_list("error", flat=True)
    assert list(refused) == []
    assert len(rounds) <= 4 and rounds[-1].quiet
    master.refresh_from_db()
    assert master.epoch != old_epoch
    # One new epoch for everyone, not one per requestor that reported the old history.
    replies = inbound(kind=MessageKind.REPLY, pk__gt=last)
    assert {reply.summary["epoch"] for reply in replies} == {str(master.epoch)}
    assert set(RequestorConfig.objects.values_list("master_epoch", flat=True)) == {master.epoch}
    for org in synced.others("ORG2"):
        assert "After Backup (ORG2)" in org.contact_names()
        assert "New Hire (ORG2)" in org.contact_names()
    for org in synced.others("ORG3"):
        assert "ORG3 User 2" not in org.contact_names()
    assert_no_duplicates()
    assert_converged(synced)
    ledger = list(LedgerEntry.objects.order_by("usn").values_list("usn", flat=True))
    assert ledger == list(range(1, len(ledger) + 1))


def test_it_notices_a_restore_when_the_first_to_report_is_behind_it(synced):
    """The restored master hands out USNs a second time to a requestor that was behind the
    restore point; one that had seen the lost history reports a USN the master has reached
    again. Its fingerprint of the ledger tells the two histories apart."""
    org1, org2, org3 = synced["ORG1"], synced["ORG2"], synced["ORG3"]
    backup = backup_master()
    old_epoch = MasterConfig.objects.get().epoch
    lost = Recipient.objects.get(alias="org2user1", global_key__isnull=True)
    lost.title = "Changed before the restore"
    changes.save_recipient(lost)
    cycle(org2)
    cycle(org3)  # ORG3 follows the history that is about to be lost
    seen = org3.refresh().config.master_usn

    restore_master(backup)
    reissued = Recipient.objects.get(alias="org1user1", global_key__isnull=True)
    reissued.title = "Changed after the restore"
    changes.save_recipient(reissued)
    cycle(org1)  # behind the restore point: takes USNs the lost history had used
    assert MasterConfig.objects.get().usn >= seen

    run = cycle(org3)

    reply = messages_for(org3, kind=MessageKind.REPLY).last()
    assert reply.summary["full"] is True
    assert MasterConfig.objects.get().epoch != old_epoch
    assert run.status == "ok"
    sync_all()
    refresh(synced)
    titles = {name: title for name, title in org3.contacts().values_list("display_name", "title")}
    assert titles["ORG1 User 1"] == "Changed after the restore"
    assert titles["ORG2 User 1 (ORG2)"] == "Changed before the restore"
    assert_converged(synced)


def test_a_restore_forgets_an_entry_set_aside_that_its_history_never_had(synced):
    org1, org2 = synced["ORG1"], synced["ORG2"]
    org1.add(alias="desk", primary_smtp="desk@partner.example", container=org1.contractors)
    backup = backup_master()
    newcomer = org2.add(alias="newcomer", primary_smtp="desk@partner.example")
    cycle(org2)
    cycle(org1)
    assert Conflict.objects.filter(config=org1.config).count() == 1
    restore_master(backup)
    changes.delete_recipients([newcomer])  # gone before the master heard of it again

    sync_all()
    sync_all(max_rounds=2)

    assert not Conflict.objects.filter(config=org1.config).exists()
    states = set(Verification.objects.values_list("state", flat=True))
    assert states == {"verified"}
    assert_converged(refresh(synced))


def test_it_starts_a_new_epoch_when_told_it_was_restored(synced):
    old_epoch = MasterConfig.objects.get().epoch
    out = io.StringIO()

    call_command("master_restored", "org1", stdout=out)

    epoch = MasterConfig.objects.get().epoch
    assert epoch != old_epoch
    assert f"epoch {old_epoch} -> {epoch}" in out.getvalue()
    run = cycle(synced["ORG2"])
    assert run.status == "ok"
    assert messages_for(synced["ORG2"], kind=MessageKind.REPLY).last().summary["full"] is True
    with pytest.raises(CommandError, match="runs no master here"):
        call_command("master_restored", "ORG2")


def test_it_answers_a_requestor_ahead_of_the_master_with_a_full_reply(synced):
    """The brief form of a restore: the master loses its newest change after ORG1 saw it."""
    backup = backup_master()
    person = Recipient.objects.get(alias="org2user1", global_key__isnull=True)
    person.title = "Lost in the restore"
    changes.save_recipient(person)
    cycle(synced["ORG2"])
    org1 = synced["ORG1"]
    cycle(org1)
    restore_master(backup)
    master = MasterConfig.objects.get()
    assert org1.refresh().config.master_usn > master.usn

    run = queue_cycle(org1)
    pump()

    reply = inbound(kind=MessageKind.REPLY).last()
    assert reply.summary["full"] is True
    assert reply.summary["epoch"] != str(master.epoch)
    run.refresh_from_db()
    assert run.status == "ok"
    sync_all()
    assert_converged(synced)


def test_it_rejects_a_reply_that_does_not_come_from_its_master(synced):
    org2 = synced["ORG2"]
    before = set(org2.contacts().values_list("pk", "display_name"))
    document = {
        "protocol": 1,
        "type": "reply",
        "sender": {"organization": "ORG3", "address": synced["ORG3"].config.dn},
        "batch": "7a1b0f63-4d1e-4d59-8a0e-7c1fd0b7e9a1",
        "part": 1,
        "parts": 1,
        "sequence": signing.now_ms(),
        "full": True,
        "in_reply_to": str(org2.config.last_export_batch),
        "epoch": str(org2.config.master_epoch),
        "ack": 0,
        "after": 0,
        "through": 999,
        "entries": [],
    }
    org3 = synced["ORG3"]
    message = send_signed(org3.organization, org3.config.dn, org2.config.dn, document)

    pump()

    message.refresh_from_db()
    assert message.status == Status.REJECTED
    assert f"{org3.config.dn} may not send to {org2.config.dn}" in message.error
    assert set(org2.contacts().values_list("pk", "display_name")) == before
    assert org2.refresh().config.master_usn < 999
