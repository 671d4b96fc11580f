"""Starting over after the initial sync: Import All, Export All, and the option changes that
imply them (transforms, domains to import, import container), and the master's full replies.
Everything converges to the same state, with nothing doubled."""

from datetime import timedelta

from django.utils import timezone

from directory import changes
from directory.models import Container, Recipient, Tombstone
from master.housekeeping import purge_master_tombstones
from master.models import GlobalEntry, LedgerEntry
from requestor.cycle import sync_all
from tests.engine.helpers import (
    assert_converged,
    assert_no_duplicates,
    contact_set,
    cycle,
    deliver,
    drop_queued,
    messages_for,
    queue_cycle,
    queued,
    snapshot,
    synced_fixtures,
)
from transport import wire
from transport.constants import MessageKind

synced_base, synced = synced_fixtures()


def origins(org) -> set[str]:
    return set(org.contacts().values_list("origin_organization", flat=True))


def local(alias: str) -> Recipient:
    return Recipient.objects.get(alias=alias, global_key__isnull=True)


def contact_ids(org) -> dict[str, int]:
    return dict(org.contacts().values_list("global_key", "pk"))


def test_it_converges_to_the_same_state_after_import_all(synced):
    before = snapshot()
    org2 = synced["ORG2"]
    ids = contact_ids(org2)
    org2.config.import_all_recipients()

    run = cycle(org2)

    assert run.reply_parts_applied == run.reply_parts == 1
    assert snapshot() == before
    assert_no_duplicates()
    # The contacts were kept, not deleted and created again.
    assert contact_ids(org2) == ids
    assert run.imported == run.deleted == 0
    sync_all()
    assert snapshot() == before


def test_it_converges_to_the_same_state_after_export_all(synced):
    before = snapshot()
    ledger = LedgerEntry.objects.count()
    org3 = synced["ORG3"]
    org3.config.export_all_recipients()

    run = cycle(org3)

    assert run.full_export
    assert run.exported == 3
    # Nothing changed, so the master published nothing new.
    assert LedgerEntry.objects.count() == ledger
    org3.refresh().organization.refresh_from_db()
    assert org3.config.requestor_usn == org3.organization.usn
    sync_all()
    assert snapshot() == before
    assert_no_duplicates()


def test_it_converges_after_import_all_and_export_all_everywhere(synced):
    before = snapshot()
    for org in synced.orgs.values():
        org.config.import_all_recipients()
        org.config.export_all_recipients()

    rounds = sync_all()

    assert rounds[-1].quiet
    assert snapshot() == before
    assert_no_duplicates()
    assert_converged(synced)


def test_it_lets_a_full_export_drop_what_the_requestor_no_longer_has(synced):
    """A delete whose tombstone is gone (lost, purged) is caught by the next full export."""
    org2 = synced["ORG2"]
    gone = Recipient.objects.get(alias="org2user2", global_key__isnull=True)
    changes.delete_recipients([gone])
    Tombstone.objects.filter(guid=gone.guid).delete()
    cycle(org2)
    assert GlobalEntry.objects.get(object_id=gone.guid).deleted is False

    org2.config.export_all_recipients()
    sync_all()

    assert GlobalEntry.objects.get(object_id=gone.guid).deleted is True
    for org in synced.others("ORG2"):
        assert "ORG2 User 2 (ORG2)" not in org.contact_names()
    assert_converged(synced)


def test_it_follows_a_change_of_the_domains_to_import(synced):
    org1 = synced["ORG1"]
    org1.config.import_all_domains = False
    org1.config.import_domains = "org3.com, org2.example"
    org1.config.save()
    sync_all()
    assert origins(org1) == {"ORG2", "ORG3"}

    org1.refresh().config.import_domains = "org3.com"
    org1.config.save()
    sync_all()

    assert origins(org1) == {"ORG3"}
    assert org1.contacts().count() == 3
    org1.refresh().config.import_all_domains = True
    org1.config.save()
    sync_all()
    assert_converged(synced)


def test_it_removes_on_import_all_what_the_master_no_longer_lists(synced):
    org1, org2 = synced["ORG1"], synced["ORG2"]
    changes.delete_recipients([local("org2user2")])
    cycle(org2)
    queue_cycle(org1)
    deliver(queued())
    assert drop_queued(kind=MessageKind.REPLY) == 1
    assert "ORG2 User 2 (ORG2)" in org1.contact_names()

    org1.refresh().config.import_all_recipients()
    run = cycle(org1)

    reply = messages_for(org1, kind=MessageKind.REPLY).last()
    document = wire.decode(bytes(reply.payload))
    assert document.full
    assert {entry.op for entry in document.entries} == {"upsert"}
    assert run.deleted == 1
    assert "ORG2 User 2 (ORG2)" not in org1.contact_names()
    sync_all()
    assert_converged(synced)


def test_it_gets_a_full_reply_after_the_tombstones_it_missed_were_purged(synced):
    org1, org2 = synced["ORG1"], synced["ORG2"]
    behind = org1.config.master_usn
    gone = local("org2user3")
    changes.delete_recipients([gone])
    cycle(org2)
    # The tombstone outlives its lifetime before ORG1 asks again, and the master purges it.
    tombstone = GlobalEntry.objects.filter(object_id=gone.guid, deleted=True)
    long_ago = timezone.now() - timedelta(days=synced.master.tombstone_lifetime_days + 1)
    tombstone.update(changed_at=long_ago)
    assert purge_master_tombstones(synced.master.pk) == 1
    assert not tombstone.exists()

    run = cycle(org1)

    reply = messages_for(org1, kind=MessageKind.REPLY).last()
    assert reply.summary["full"] is True
    assert reply.summary["after"] == 0 < behind
    assert run.deleted == 1
    assert "ORG2 User 3 (ORG2)" not in org1.contact_names()
    sync_all()
    assert_converged(synced)


def test_it_sends_a_new_display_name_suffix_to_the_others(synced):
    org2 = synced["ORG2"]
    org2.config.append_display_name = " [Org Two]"
    org2.config.full_clean()
    org2.config.save()

    run = cycle(org2)
    sync_all()

    # Each exported recipient restated once, with a fresh USN: no full export needed.
    assert not run.full_export
    assert run.exported == 3
    for org in synced.others("ORG2"):
        names = {name for origin, name, _ in contact_set(org) if origin == "ORG2"}
        assert names == {f"ORG2 User {n} [Org Two]" for n in (1, 2, 3)}
    assert_converged(synced)


def test_it_sends_a_new_smtp_domain_to_the_others(synced):
    org3 = synced["ORG3"]
    org3.config.modify_smtp_domain = ""
    org3.config.save()

    sync_all()

    for org in synced.others("ORG3"):
        addresses = {smtp for origin, _, smtp in contact_set(org) if origin == "ORG3"}
        assert addresses == {f"org3user{n}@org3.example" for n in (1, 2, 3)}
    assert_converged(synced)


def test_it_keeps_the_usns_when_an_option_that_changes_nothing_is_saved(synced):
    org2 = synced["ORG2"]
    usns = (org2.config.requestor_usn, org2.config.master_usn)
    org2.config.max_message_size = 64 * 1024
    org2.config.save()

    org2.refresh()

    assert (org2.config.requestor_usn, org2.config.master_usn) == usns
    assert 0 not in usns
    run = cycle(org2)
    assert not run.full_export and run.exported == 0


def test_it_refills_a_new_import_container(synced):
    org1 = synced["ORG1"]
    before = contact_set(org1)
    fresh = Container.objects.create(site=org1.recipients.site, name="Partners")
    org1.config.import_container = fresh
    org1.config.full_clean()
    org1.config.save()

    run = cycle(org1)

    # The cycle asked for a full reply, which moved every contact.
    reply = messages_for(org1, kind=MessageKind.REPLY).last()
    assert wire.decode(bytes(reply.payload)).full
    assert run.updated == len(before)
    assert not org1.refresh().config.full_reply_pending
    assert contact_set(org1) == before
    assert set(org1.contacts().values_list("container_id", flat=True)) == {fresh.pk}
    assert_converged(synced)
