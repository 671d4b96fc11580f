"""A requestor's organization restored from a backup: the master has seen local USNs it no
longer remembers, and its new changes must still win at the master (requestor.restore)."""

from django.core import serializers
from django.db import transaction

from directory import changes
from directory.models import DigestCell, Organization, Recipient, Tombstone
from master.models import AllowedRequestor, GlobalEntry
from requestor.cycle import sync_all
from requestor.models import Conflict, FilteredEntry, RequestorConfig, Verification
from tests.engine.helpers import assert_converged, cycle, refresh, synced_fixtures

synced_base, synced = synced_fixtures()


def backup(org) -> str:
    organization = org.organization.pk
    rows = [
        *Organization.objects.filter(pk=organization),
        *Recipient.objects.filter(organization=organization),
        *Tombstone.objects.filter(organization=organization),
        *DigestCell.objects.filter(organization=organization),
        *RequestorConfig.objects.filter(organization=organization),
        *Conflict.objects.filter(config__organization=organization),
        *FilteredEntry.objects.filter(config__organization=organization),
        *Verification.objects.filter(config__organization=organization),
    ]
    return serializers.serialize("json", rows)


def restore(org, saved: str) -> None:
    """The organization's directory and requestor as they were at the backup; the master, in
    another installation, keeps everything it has."""
    organization = org.organization.pk
    with transaction.atomic(), changes.writing():
        Recipient.objects.filter(organization=organization).delete()
        Tombstone.objects.filter(organization=organization).delete()
        DigestCell.objects.filter(organization=organization).delete()
        for model in (Conflict, FilteredEntry, Verification):
            model.objects.filter(config__organization=organization).delete()
        for obj in serializers.deserialize("json", saved):
            obj.save()


def test_its_changes_after_a_restore_still_reach_the_master(synced):
    org2 = synced["ORG2"]
    saved = backup(org2)
    lost = org2.people[0]
    # More changes after the backup than the restored directory has recipients: restating
    # them from the restored USN counter would not reach the master's USNs of these changes.
    for step in range(5):
        lost.title = f"Promoted {step}, then lost in the restore"
        changes.save_recipient(lost)
    hired = org2.add(alias="temp", display_name="Hired, then lost in the restore")
    cycle(org2)
    acked = AllowedRequestor.objects.get(organization_name="ORG2").acked_usn
    restore(org2, saved)
    assert Organization.objects.get(pk=org2.organization.pk).usn < acked

    after = Recipient.objects.get(pk=org2.people[1].pk)
    after.title = "Changed after the restore"
    changes.save_recipient(after)
    first = cycle(org2)
    # The master's ack went beyond what this export covered: the requestor USN stops there,
    # the counter jumps past the ack, and a full export restates the directory as restored.
    assert org2.refresh().config.requestor_usn == 0
    assert Organization.objects.get(pk=org2.organization.pk).usn > acked
    assert first.acknowledged > first.export_through
    second = cycle(org2)

    assert second.full_export
    entries = GlobalEntry.objects.filter(origin="ORG2")
    assert entries.get(object_id=after.guid).attrs["title"] == "Changed after the restore"
    assert entries.get(object_id=lost.guid).attrs["title"] == "Engineer"
    assert entries.get(object_id=hired.guid).deleted  # swept: the restored directory lacks it
    sync_all()
    refresh(synced)
    assert_converged(synced)

    later = Recipient.objects.get(pk=org2.people[2].pk)
    later.title = "Changed later still"
    changes.save_recipient(later)
    cycle(org2)
    assert entries.get(object_id=later.guid).attrs["title"] == "Changed later still"


def _cells(organization_id: int) -> set[tuple]:
    return set(
        DigestCell.objects.filter(organization_id=organization_id).values_list(
            "container_id", "kind", "trust_level", "imported", "digest", "count"
        )
    )


def test_a_recount_of_the_contacts_cells_leaves_the_own_cells_alone(synced):
    """A new master epoch recounts only the imported contacts' cells (their master USNs were
    reset); the own recipients' cells, counted from local USNs, are not read again."""
    organization = synced["ORG2"].organization.pk
    counted = _cells(organization)
    assert {cell[3] for cell in counted} == {True, False}
    DigestCell.objects.filter(organization_id=organization).update(digest="0" * 32, count=7)

    changes.rebuild_cells(organization, imported=True)

    after = _cells(organization)
    assert {cell for cell in after if cell[3]} == {cell for cell in counted if cell[3]}
    assert {cell[4:] for cell in after if not cell[3]} == {("0" * 32, 7)}
    changes.rebuild_cells(organization)
    assert _cells(organization) == counted
