"""The grace period of deletes (requestor.grace): a contact whose entry goes is hidden first,
removed for good after the Import Config's grace period, and the same contact comes back if
its entry does within it; verification counts hidden contacts as known, not held."""

from datetime import timedelta

from django.utils import timezone

from directory import changes
from directory.models import Recipient, Tombstone
from requestor import grace
from requestor.models import ImportedChange, RequestorConfig
from tests.engine.helpers import (
    assert_converged,
    assert_digests_agree,
    cycle,
    person,
    synced_fixtures,
)

synced_base, synced = synced_fixtures()


def settled(synced) -> None:
    """Every organization has had a cycle since the change, and all verify."""
    for name in ("ORG1", "ORG2", "ORG3"):
        cycle(synced[name])
    assert_converged(synced)


def contact_of(org, source: Recipient) -> Recipient | None:
    return Recipient.objects.filter(
        organization=org.organization, global_key=f"{source.organization.name}:{source.guid}"
    ).first()


def delete_and_propagate(synced, alias: str) -> Recipient:
    gone = person(alias)
    changes.delete_recipients([gone])
    cycle(synced["ORG3"])
    cycle(synced["ORG2"])
    return gone


def test_a_deleted_entry_is_hidden_first_then_removed_after_the_grace_period(synced):
    org2 = synced["ORG2"]
    gone = delete_and_propagate(synced, "org3user2")

    contact = contact_of(org2, gone)
    assert contact.hidden_at is not None
    assert contact.display_name not in org2.contact_names()
    settled(synced)  # hidden: known, not counted with what the master lists
    assert not Tombstone.objects.filter(organization=org2.organization, imported=True).exists()

    assert grace.purge_expired(timezone.now() + timedelta(days=6)) == 0
    assert grace.purge_expired(timezone.now() + timedelta(days=7, minutes=1)) >= 1

    assert contact_of(org2, gone) is None
    assert Tombstone.objects.filter(organization=org2.organization, guid=contact.guid).exists()
    ops = ImportedChange.objects.filter(
        organization=org2.organization, global_key=contact.global_key
    )
    assert list(ops.order_by("at", "pk").values_list("op", flat=True))[-2:] == ["hidden", "removed"]
    settled(synced)


def test_an_entry_back_within_the_grace_period_restores_the_same_contact(synced):
    org2 = synced["ORG2"]
    moved = person("org3user1")
    before = contact_of(org2, moved)
    moved.container = synced["ORG3"].contractors  # out of ORG3's export scope
    changes.save_recipient(moved)
    cycle(synced["ORG3"])
    cycle(org2)
    assert contact_of(org2, moved).hidden_at is not None

    moved.container = synced["ORG3"].recipients  # and back
    changes.save_recipient(moved)
    cycle(synced["ORG3"])
    run = cycle(org2)

    after = contact_of(org2, moved)
    assert (after.pk, after.guid, after.hidden_at) == (before.pk, before.guid, None)
    assert after.display_name in org2.contact_names()
    assert run.updated == 1 and run.imported == 0
    assert ImportedChange.objects.filter(
        organization=org2.organization, global_key=after.global_key, op="restored"
    ).exists()
    settled(synced)


def test_a_grace_period_of_zero_removes_at_once(synced):
    org2 = synced["ORG2"]
    RequestorConfig.objects.filter(pk=org2.config.pk).update(grace_days=0)
    gone = delete_and_propagate(synced, "org3user2")

    assert contact_of(org2, gone) is None
    assert ImportedChange.objects.filter(organization=org2.organization, op="removed").exists()
    settled(synced)


def test_setting_the_grace_period_to_zero_removes_the_hidden_contacts_at_the_next_purge(synced):
    org2 = synced["ORG2"]
    gone = delete_and_propagate(synced, "org3user2")
    assert contact_of(org2, gone).hidden_at is not None
    RequestorConfig.objects.filter(pk=org2.config.pk).update(grace_days=0)

    assert grace.purge_expired() == 1

    assert contact_of(org2, gone) is None


def test_a_hidden_contact_gives_up_its_address_and_comes_back_as_a_conflict(synced):
    org2 = synced["ORG2"]
    moved = person("org3user1")
    moved.container = synced["ORG3"].contractors
    changes.save_recipient(moved)
    cycle(synced["ORG3"])
    cycle(org2)
    hidden = contact_of(org2, moved)
    # A new recipient of ORG2 may take the address (and alias) the hidden contact had.
    taker = org2.add(
        container=org2.contractors, alias=hidden.alias, primary_smtp=hidden.primary_smtp.upper()
    )

    moved.container = synced["ORG3"].recipients
    changes.save_recipient(moved)
    cycle(synced["ORG3"])
    cycle(org2)

    assert contact_of(org2, moved).hidden_at is not None
    conflict = org2.config.conflicts.get()
    assert conflict.local_recipient == taker
    cycle(synced["ORG1"])
    assert_digests_agree(synced)  # the entry is set aside, its hidden contact not counted

    changes.delete_recipients([taker])  # the address is free again: the same contact returns
    cycle(org2)
    back = contact_of(org2, moved)
    assert (back.pk, back.hidden_at) == (hidden.pk, None)
    settled(synced)


def test_a_full_reply_hides_what_the_master_no_longer_lists(synced):
    org2 = synced["ORG2"]
    gone = person("org3user2")
    changes.delete_recipients([gone])
    cycle(synced["ORG3"])
    org2.config.import_all_recipients()

    run = cycle(org2)

    assert run.full_export is False and run.deleted == 1
    assert contact_of(org2, gone).hidden_at is not None
    settled(synced)


def test_the_import_history_is_compacted_to_each_entrys_last_state(synced):
    from requestor.housekeeping import compact_imported_changes

    org2 = synced["ORG2"]
    moved = person("org3user1")
    key = f"ORG3:{moved.guid}"
    for title in ("First", "Second"):
        moved.title = title
        changes.save_recipient(moved)
        cycle(synced["ORG3"])
        cycle(org2)
    rows = ImportedChange.objects.filter(organization=org2.organization, global_key=key)
    assert rows.count() == 3  # added, updated, updated
    ImportedChange.objects.update(at=timezone.now() - timedelta(days=100))

    compact_imported_changes(days=90)

    assert list(rows.values_list("op", "detail")) == [("updated", "title")]
    assert not ImportedChange.objects.filter(op="removed").exists()
