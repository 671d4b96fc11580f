"""What the API does for administrators and scripts: recipients, configuration, actions,
filters, validation messages, the schema and its docs."""

from unittest import mock

import pytest
from rest_framework.test import APIClient

from console.constants import ConsoleRole
from console.models import OrganizationRole
from directory.factories import ContainerFactory
from directory.models import Recipient
from master.models import AllowedRequestor
from requestor.constants import RunStatus
from requestor.cycle import run_cycle, sync_all
from requestor.models import ExportedContainer, Run
from tests.console.conftest import add_history, make_user
from transport.inbox import pump
from transport.signing import active_key

API = "/api/v1"


def test_it_creates_a_recipient(world, admin_api):
    response = admin_api.post(
        f"{API}/recipients/",
        {
            "container": world.org2.recipients.pk,
            "kind": "custom_recipient",
            "display_name": "Ext Partner",
            "alias": "partner",
            "primary_smtp": "partner@else.example",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["organization"] == "ORG2" and body["usn"] > 0
    # The model's own rule: a custom recipient's target is its address unless given.
    assert body["target_address"] == "partner@else.example"


def test_it_hides_a_recipient_from_the_other_organizations(world, admin_api):
    person = world.org2.organization.recipients.first()
    response = admin_api.patch(
        f"{API}/recipients/{person.pk}/", {"hidden_from_others": True}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["hidden_from_others"] is True
    person.refresh_from_db()
    assert person.hidden_from_others


def test_it_explains_validation_errors_instead_of_failing(world, admin_api):
    response = admin_api.post(
        f"{API}/recipients/",
        {
            "container": world.org2.recipients.pk,
            "display_name": "Clash",
            "alias": "PERSON0.ORG2",
            "primary_smtp": "not-an-address",
            "target_address": "x@y.example",
        },
        format="json",
    )
    assert response.status_code == 400
    errors = response.json()
    assert "primary_smtp" in errors


def test_it_refuses_a_duplicate_alias_with_the_models_message(world, admin_api):
    response = admin_api.post(
        f"{API}/recipients/",
        {
            "container": world.org2.recipients.pk,
            "display_name": "Clash",
            "alias": "PERSON0.ORG2",
            "primary_smtp": "clash@org2.example",
        },
        format="json",
    )
    assert response.status_code == 400
    assert "Another recipient of this organization has that alias." in str(response.json())


def test_it_refuses_to_change_an_imported_contact(world, admin_api):
    add_history(world.org2)
    contact = Recipient.objects.get(global_key__isnull=False)
    response = admin_api.patch(f"{API}/recipients/{contact.pk}/", {"title": "x"}, format="json")
    assert response.status_code == 403
    assert "origin organization" in response.json()["detail"]
    assert admin_api.delete(f"{API}/recipients/{contact.pk}/").status_code == 403


def test_it_refuses_to_move_a_recipient_to_another_organization(world, administrator, admin_api):
    OrganizationRole.objects.create(
        user=administrator, organization=world.org3.organization, role="administrator"
    )
    person = world.org2.organization.recipients.first()
    response = admin_api.patch(
        f"{API}/recipients/{person.pk}/", {"container": world.org3.recipients.pk}, format="json"
    )
    assert response.status_code == 400
    assert "another organization" in str(response.json())


def test_it_filters_recipients(world, admin_api):
    add_history(world.org2)
    rows = admin_api.get(f"{API}/recipients/", {"imported": "true"}).json()["results"]
    assert [r["display_name"] for r in rows] == ["Imported Contact"]
    rows = admin_api.get(f"{API}/recipients/", {"search": "person 1"}).json()["results"]
    assert [r["alias"] for r in rows] == ["person1.org2"]
    assert admin_api.get(f"{API}/recipients/", {"container": "x"}).status_code == 400


def test_it_refuses_a_tombstone_lifetime_shorter_than_a_delayed_message(world):
    hub = APIClient()
    hub.force_authenticate(make_user("hub", {world.org1.organization: ConsoleRole.ADMINISTRATOR}))
    response = hub.patch(
        f"{API}/master-configs/{world.master.pk}/", {"tombstone_lifetime_days": 5}, format="json"
    )
    assert response.status_code == 400
    assert "Keep tombstones at least 12 days" in response.json()["tombstone_lifetime_days"][0]


def test_it_refuses_the_import_container_inside_an_exported_one(world, admin_api):
    response = admin_api.patch(
        f"{API}/requestor-configs/{world.org2.config.pk}/",
        {"import_container": world.org2.recipients.pk},
        format="json",
    )
    assert response.status_code == 400
    assert "imported contacts would be exported again" in str(response.json())


def test_it_keeps_the_leading_space_of_the_display_name_suffix(world, admin_api):
    response = admin_api.patch(
        f"{API}/requestor-configs/{world.org2.config.pk}/",
        {"append_display_name": " (ORG2)"},
        format="json",
    )
    assert response.json()["append_display_name"] == " (ORG2)"


def test_it_adds_and_removes_an_exported_container(world, admin_api):
    extra = ContainerFactory(site=world.org2.recipients.site, name="Partners")
    response = admin_api.post(
        f"{API}/exported-containers/",
        {"config": world.org2.config.pk, "container": extra.pk, "mailboxes": False},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["container_dn"] == "/o=ORG2/ou=Site2/cn=Partners"
    row = response.json()["id"]
    assert admin_api.delete(f"{API}/exported-containers/{row}/").status_code == 204
    assert not ExportedContainer.objects.filter(pk=row).exists()


def test_it_executes_now_and_returns_the_run(world, admin_api):
    run_cycle(world.org3.config.pk)
    pump()
    response = admin_api.post(f"{API}/requestor-configs/{world.org2.config.pk}/execute-now/")
    assert response.status_code == 202  # the run ended inside the request: Location has it
    body = response.json()
    assert body["run"]["status"] == RunStatus.OK
    assert body["run"]["imported"] == 2
    assert Run.objects.get(pk=body["run"]["id"]).trigger == "api"


def test_it_answers_202_when_the_cycle_is_queued(world, admin_api, settings):
    settings.INTERORG_DISPATCH_TASKS = True
    with mock.patch("requestor.tasks.run_requestor_cycle.delay"):
        response = admin_api.post(f"{API}/requestor-configs/{world.org2.config.pk}/import-all/")
    assert response.status_code == 202
    assert response.json()["run"]["status"] == RunStatus.QUEUED


def test_it_refuses_to_remove_an_allowed_requestor_with_entries(world, administrator, admin_api):
    OrganizationRole.objects.create(
        user=administrator, organization=world.org1.organization, role="administrator"
    )
    sync_all(max_rounds=1)
    allowed = AllowedRequestor.objects.get(organization_name="ORG2")
    response = admin_api.delete(f"{API}/allowed-requestors/{allowed.pk}/")
    assert response.status_code == 409
    assert "still in use" in response.json()["detail"]
    assert AllowedRequestor.objects.filter(pk=allowed.pk).exists()


def test_it_filters_messages_by_direction_and_status(world, admin_api):
    add_history(world.org2)
    rows = admin_api.get(f"{API}/messages/", {"status": "rejected"}).json()["results"]
    assert [r["sender"] for r in rows] == ["intruder@evil.example"]
    assert "payload" not in rows[0] and "signature" not in rows[0]


def test_it_serves_the_schema_to_authenticated_callers_only(world, admin_api, anonymous_api):
    assert anonymous_api.get("/api/schema/").status_code == 401
    response = admin_api.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert "/api/v1/requestor-configs/{id}/execute-now/" in response.content.decode()


def test_it_sends_anonymous_docs_readers_to_the_login_page(world, anonymous_client):
    response = anonymous_client.get("/api/docs/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_it_serves_the_docs_without_a_cdn(world, admin_client_):
    body = admin_client_.get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in body
    assert "cdn" not in body.lower()


@pytest.mark.parametrize("secret", ["private_key", "password"])
def test_it_never_returns_secrets(world, admin_api, secret):
    key = active_key(world.org2.organization.pk)
    for path in ("/status/", "/organizations/", "/requestor-configs/", "/master-configs/"):
        body = admin_api.get(API + path).content.decode()
        assert secret not in body
        assert key.private_key not in body


def test_it_sets_import_exclusions_and_refuses_bad_ones(world, admin_api):
    url = f"{API}/requestor-configs/{world.org2.config.pk}/"

    response = admin_api.patch(
        url, {"excluded_addresses": "x@org3.example", "excluded_organizations": "ORG9"}
    )
    assert response.status_code == 200, response.content
    assert response.json()["excluded_organizations"] == "ORG9"

    response = admin_api.patch(url, {"excluded_addresses": "x@org3.example, \x00"}, format="json")
    assert response.status_code == 400
    response = admin_api.patch(url, {"excluded_addresses": "not one"}, format="json")
    assert response.status_code == 400
    assert "Not an SMTP address" in str(response.json()["excluded_addresses"])
    world.org2.config.refresh_from_db()
    assert world.org2.config.excluded_addresses == "x@org3.example"
