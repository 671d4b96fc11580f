"""The foreign keys kept in Django only (no database constraint: another one covers them) keep
what the constraint kept: an organization holding recipients is not deleted (its containers
protect them), deleting one deletes its history along, and a row naming a parent that does
not exist is still refused, by the constraint that covers it."""

import uuid

import pytest
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from directory import changes
from directory.factories import ContainerFactory, RecipientFactory
from directory.models import Organization, Recipient
from master.factories import AllowedRequestorFactory
from master.models import GlobalEntry
from requestor.models import ImportedChange

pytestmark = pytest.mark.django_db


def history(organization) -> ImportedChange:
    return ImportedChange.objects.create(
        organization=organization, global_key="X:1", origin="X", op="added"
    )


def test_an_organization_holding_recipients_is_not_deleted():
    container = ContainerFactory()
    recipient = RecipientFactory(container=container)
    history(container.organization)

    with pytest.raises(ProtectedError):
        container.organization.delete()

    assert Recipient.objects.get() == recipient
    assert ImportedChange.objects.filter(organization=container.organization).exists()


def test_deleting_an_organization_deletes_its_history():
    organization = ContainerFactory().organization
    history(organization)
    other = history(ContainerFactory().organization)

    organization.delete()

    assert list(ImportedChange.objects.all()) == [other]
    assert not Organization.objects.filter(pk=organization.pk).exists()


@pytest.mark.postgres
def test_a_recipient_of_a_container_that_is_not_there_is_refused():
    container = ContainerFactory()
    row = Recipient(
        organization_id=container.organization_id,
        container_id=container.pk + 1000,
        display_name="Nobody",
        alias="nobody",
        primary_smtp="nobody@example.org",
        usn=1,
    )
    with pytest.raises(IntegrityError), transaction.atomic(), changes.writing():
        Recipient.objects.bulk_create([row])
        with transaction.get_connection().cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # checked now, not at the end


@pytest.mark.postgres
def test_a_global_entry_of_a_requestor_that_is_not_there_is_refused():
    requestor = AllowedRequestorFactory()
    entry = GlobalEntry(
        master_id=requestor.master_id,
        requestor_id=requestor.pk + 1000,
        object_id=uuid.uuid4(),
        global_key="NOBODY:1",
        origin="NOBODY",
        kind="mailbox",
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        GlobalEntry.objects.bulk_create([entry])
        with transaction.get_connection().cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
