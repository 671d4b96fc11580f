"""The directory browser: containers, recipients, imported contacts; recipient changes."""

from django.urls import reverse

from directory import changes
from directory.models import Recipient, Tombstone
from tests.console.conftest import add_history


def recipient_data(container, **changes) -> dict:
    data = {
        "container": container.pk,
        "kind": "mailbox",
        "display_name": "Dana Scully",
        "alias": "dscully",
        "primary_smtp": "dana.scully@org2.example",
        "trust_level": 0,
    }
    data.update(changes)
    return data


def test_it_lists_containers_with_their_counts(world, operator_client):
    add_history(world.org2)
    body = operator_client.get("/o/ORG2/directory/").content.decode()
    assert "/o=ORG2/ou=Site2/cn=InterOrg Contacts" in body
    assert "<strong>1</strong>" in body  # one imported contact


def test_it_shows_imported_contacts_with_their_origin(world, operator_client):
    add_history(world.org2)
    body = operator_client.get(f"/o/ORG2/directory/containers/{world.org2.imported.pk}/").content
    assert b"Imported Contact" in body and b"ORG9" in body
    contact = Recipient.objects.get(global_key__isnull=False)
    body = operator_client.get(f"/o/ORG2/directory/recipients/{contact.pk}/").content.decode()
    assert "An imported contact from <strong>ORG9</strong>" in body


def test_it_marks_a_contact_hidden_for_its_grace_period(world, operator_client):
    add_history(world.org2)
    contact = Recipient.objects.get(global_key__isnull=False)
    changes.hide_contacts(contact.organization_id, [contact])

    body = operator_client.get(f"/o/ORG2/directory/containers/{world.org2.imported.pk}/").content
    assert b"hidden (grace period)" in body
    body = operator_client.get(f"/o/ORG2/directory/recipients/{contact.pk}/").content.decode()
    assert "removed for good after the grace period" in body


def test_it_searches_a_container(world, operator_client):
    url = f"/o/ORG2/directory/containers/{world.org2.recipients.pk}/"
    body = operator_client.get(url, {"q": "Person 1"}).content.decode()
    assert "Person 1 of ORG2" in body and "Person 0 of ORG2" not in body


def test_it_adds_a_recipient(world, admin_client_):
    container = world.org2.recipients
    response = admin_client_.post(
        reverse("console:recipient-add", kwargs={"org": "ORG2", "container": container.pk}),
        recipient_data(container),
    )
    assert response.status_code == 302
    added = Recipient.objects.get(alias="dscully")
    assert added.organization == world.org2.organization and added.usn > 0


def test_it_explains_a_taken_alias(world, admin_client_):
    container = world.org2.recipients
    response = admin_client_.post(
        f"/o/ORG2/directory/containers/{container.pk}/new/",
        recipient_data(container, alias="PERSON0.org2"),
    )
    assert response.status_code == 200
    assert "Another recipient of this organization has that alias." in response.content.decode()


def test_it_edits_a_recipient(world, admin_client_):
    person = Recipient.objects.filter(organization=world.org2.organization).first()
    usn = person.usn
    response = admin_client_.post(
        f"/o/ORG2/directory/recipients/{person.pk}/edit/",
        recipient_data(person.container, alias=person.alias, title="Agent"),
    )
    assert response.status_code == 302
    person.refresh_from_db()
    assert person.title == "Agent" and person.usn > usn


def test_it_hides_a_recipient_from_the_other_organizations(world, admin_client_):
    person = Recipient.objects.filter(organization=world.org2.organization).first()
    usn = person.usn
    data = recipient_data(person.container, alias=person.alias, hidden_from_others="on")
    response = admin_client_.post(f"/o/ORG2/directory/recipients/{person.pk}/edit/", data)
    assert response.status_code == 302
    person.refresh_from_db()
    assert person.hidden_from_others and person.usn > usn
    body = admin_client_.get(f"/o/ORG2/directory/containers/{person.container_id}/").content
    assert b'class="badge badge-hidden"' in body


def test_it_deletes_a_recipient_leaving_a_tombstone(world, admin_client_):
    person = Recipient.objects.filter(organization=world.org2.organization).first()
    response = admin_client_.post(
        f"/o/ORG2/directory/recipients/{person.pk}/delete/", {"confirm": "yes"}
    )
    assert response.status_code == 302
    assert not Recipient.objects.filter(pk=person.pk).exists()
    assert Tombstone.objects.filter(guid=person.guid).exists()


def test_it_refuses_to_edit_an_imported_contact(world, admin_client_):
    add_history(world.org2)
    contact = Recipient.objects.get(global_key__isnull=False)
    for action in ("edit", "delete"):
        response = admin_client_.post(
            f"/o/ORG2/directory/recipients/{contact.pk}/{action}/",
            recipient_data(contact.container, confirm="yes"),
        )
        assert response.status_code == 403
    assert b"origin organization" in response.content
    assert Recipient.objects.filter(pk=contact.pk, display_name="Imported Contact").exists()


def test_it_refuses_a_container_of_another_organization(world, admin_client_):
    response = admin_client_.post(
        f"/o/ORG2/directory/containers/{world.org2.recipients.pk}/new/",
        recipient_data(world.org3.recipients),
    )
    assert response.status_code == 200
    assert not Recipient.objects.filter(alias="dscully").exists()


def test_it_does_not_find_a_recipient_through_another_organization(world, admin_client_):
    person = Recipient.objects.filter(organization=world.org3.organization).first()
    assert admin_client_.get(f"/o/ORG2/directory/recipients/{person.pk}/").status_code == 404
