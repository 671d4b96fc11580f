"""Incremental changes after the initial sync: one cycle of the source, one of each reader."""

from directory import changes
from directory.constants import Kind
from directory.models import Recipient
from master.models import GlobalEntry
from requestor.models import ExportedContainer
from tests.engine.helpers import assert_converged, cycle, synced_fixtures


def with_a_list(scenario):
    scenario["ORG2"].add(alias="org2list", display_name="ORG2 List", kind=Kind.DISTRIBUTION_LIST)


synced_base, synced = synced_fixtures(prepare=with_a_list)


def propagate(scenario, source: str = "ORG2"):
    """The source's cycle, then one cycle of each other organization."""
    runs = {source: cycle(scenario[source])}
    for org in scenario.others(source):
        runs[org.name] = cycle(org)
    return runs


def person(alias: str) -> Recipient:
    return Recipient.objects.get(alias=alias, global_key__isnull=True)


def contact_of(org, source: Recipient) -> Recipient | None:
    key = GlobalEntry.objects.get(object_id=source.guid).global_key
    return org.contacts().filter(global_key=key).first()


def test_it_carries_a_rename_and_a_title_change_in_one_cycle_each(synced):
    source = person("org2user1")
    before = {org.name: contact_of(org, source) for org in synced.others("ORG2")}
    source.display_name = "Renamed Person"
    source.title = "Director"
    changes.save_recipient(source)

    runs = propagate(synced)

    assert runs["ORG2"].exported == 1
    for org in synced.others("ORG2"):
        contact = contact_of(org, source)
        assert contact.display_name == "Renamed Person (ORG2)"
        assert contact.title == "Director"
        # Updated in place: the same contact object, not a new one.
        assert contact.pk == before[org.name].pk
        assert contact.guid == before[org.name].guid
        assert contact.master_usn > before[org.name].master_usn
        assert runs[org.name].updated == 1
        assert runs[org.name].imported == runs[org.name].deleted == 0
    assert_converged(synced)


def test_it_carries_a_new_recipient(synced):
    new = synced["ORG2"].add(alias="newcomer", display_name="Newcomer")

    runs = propagate(synced)

    for org in synced.others("ORG2"):
        assert "Newcomer (ORG2)" in org.contact_names()
        assert runs[org.name].imported == 1
    assert contact_of(synced["ORG1"], new).primary_smtp == "newcomer@org2.example"
    assert_converged(synced)


def test_it_propagates_a_delete(synced):
    source = person("org2user2")
    changes.delete_recipients([source])

    runs = propagate(synced)

    for org in synced.others("ORG2"):
        assert "ORG2 User 2 (ORG2)" not in org.contact_names()
        assert runs[org.name].deleted == 1
    entry = GlobalEntry.objects.get(object_id=source.guid)
    assert entry.deleted
    assert_converged(synced)


def test_it_removes_a_recipient_whose_trust_level_rises_above_the_threshold(synced):
    source = person("org2user3")
    source.trust_level = 51
    changes.save_recipient(source)

    propagate(synced)

    for org in synced.others("ORG2"):
        assert "ORG2 User 3 (ORG2)" not in org.contact_names()
    assert_converged(synced)

    source.trust_level = 50
    changes.save_recipient(source)
    propagate(synced)

    for org in synced.others("ORG2"):
        assert "ORG2 User 3 (ORG2)" in org.contact_names()
    assert_converged(synced)


def test_it_removes_a_recipient_moved_out_of_the_exported_container(synced):
    org2 = synced["ORG2"]
    source = person("org2user1")
    key = GlobalEntry.objects.get(object_id=source.guid).global_key
    source.container = org2.contractors
    changes.save_recipient(source)

    propagate(synced)

    for org in synced.others("ORG2"):
        assert not org.contacts().filter(global_key=key).exists()
    assert_converged(synced)

    source.container = org2.recipients
    changes.save_recipient(source)
    propagate(synced)

    for org in synced.others("ORG2"):
        # Back in scope: the same global key again, one contact.
        assert org.contacts().filter(global_key=key).count() == 1
    assert_converged(synced)


def test_it_removes_everything_of_a_container_no_longer_exported(synced):
    org2 = synced["ORG2"]
    ExportedContainer.objects.get(config=org2.config, container=org2.recipients).delete()

    runs = propagate(synced)

    # Restated as deletes, one each: no full export needed.
    assert not runs["ORG2"].full_export
    assert runs["ORG2"].exported == 4
    for org in synced.others("ORG2"):
        assert {origin for origin, *_ in org.contacts().values_list("origin_organization")} == {
            {"ORG1": "ORG3", "ORG3": "ORG1"}[org.name]
        }
        assert runs[org.name].deleted == 4
    assert not GlobalEntry.objects.filter(origin="ORG2", deleted=False).exists()
    assert_converged(synced)


def test_it_removes_a_kind_that_is_unchecked(synced):
    org2 = synced["ORG2"]
    exported = ExportedContainer.objects.get(config=org2.config, container=org2.recipients)
    exported.distribution_lists = False
    exported.save()

    runs = propagate(synced)

    assert not runs["ORG2"].full_export
    assert runs["ORG2"].exported == 1
    for org in synced.others("ORG2"):
        assert "ORG2 List (ORG2)" not in org.contact_names()
        assert "ORG2 User 1 (ORG2)" in org.contact_names()
        assert runs[org.name].deleted == 1
    assert_converged(synced)


def test_it_ignores_changes_outside_the_scope(synced):
    org2 = synced["ORG2"]
    org2.add(alias="temp", display_name="Temp", container=org2.contractors)
    before = GlobalEntry.objects.filter(deleted=False).count()

    runs = propagate(synced)

    assert GlobalEntry.objects.filter(deleted=False).count() == before
    for org in synced.others("ORG2"):
        assert "Temp (ORG2)" not in org.contact_names()
        assert runs[org.name].imported == runs[org.name].updated == 0
    assert_converged(synced)


def test_it_never_exports_a_change_made_to_an_imported_contact(synced):
    org1 = synced["ORG1"]
    contact = org1.contacts().get(display_name="ORG2 User 1 (ORG2)")
    contact.title = "Edited locally"
    changes.save_recipient(contact)

    run = cycle(org1)

    assert run.exported == 0
    assert not GlobalEntry.objects.filter(origin="ORG1", attrs__title="Edited locally").exists()


def test_it_brings_back_a_container_exported_again(synced):
    org2 = synced["ORG2"]
    before = {org.name: org.contact_names() for org in synced.others("ORG2")}
    ExportedContainer.objects.get(config=org2.config, container=org2.recipients).delete()
    propagate(synced)
    assert "ORG2 User 1 (ORG2)" not in synced["ORG1"].contact_names()

    ExportedContainer.objects.create(config=org2.config, container=org2.recipients)
    runs = propagate(synced)

    assert not runs["ORG2"].full_export
    assert runs["ORG2"].exported == 4
    for org in synced.others("ORG2"):
        assert org.contact_names() == before[org.name]
    assert_converged(synced)


def test_it_exports_a_kind_once_it_is_checked(synced):
    org2 = synced["ORG2"]
    vendor = org2.add(alias="vendor", display_name="Vendor", kind=Kind.CUSTOM_RECIPIENT)
    vendor.title = "Supplier"
    changes.save_recipient(vendor)
    propagate(synced)
    assert "Vendor (ORG2)" not in synced["ORG1"].contact_names()

    exported = ExportedContainer.objects.get(config=org2.config, container=org2.recipients)
    exported.custom_recipients = True
    exported.save()
    propagate(synced)

    for org in synced.others("ORG2"):
        assert "Vendor (ORG2)" in org.contact_names()
    assert_converged(synced)


def test_it_exports_recipients_let_in_by_a_higher_trust_threshold(synced):
    org3 = synced["ORG3"]
    trusted = org3.add(alias="trusted", display_name="Trusted", trust_level=20)
    trusted.title = "Chief"
    changes.save_recipient(trusted)
    propagate(synced, "ORG3")
    assert "Trusted" not in synced["ORG1"].contact_names()

    org3.refresh().config.trust_level = 20
    org3.config.save()
    propagate(synced, "ORG3")

    for org in synced.others("ORG3"):
        assert "Trusted" in org.contact_names()
    assert_converged(synced)
