"""Preview next cycle from the console (a page reached from the Schedule page), the command line
(`sync_now ORG --dry-run`) and the API: the same preview, for whoever may read the
organization, and nothing changed."""

import threading
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.urls import reverse

from directory import changes
from directory.factories import RecipientFactory
from requestor.cycle import run_cycle
from requestor.models import RequestorConfig, Run
from transport.inbox import process_pending, pump
from transport.models import Message
from transport.outbox import deliver_pending

API = "/api/v1/requestor-configs/{}/preview/"


def preview_url(org) -> str:
    return reverse("console:preview", kwargs={"org": org.name})


def traces() -> tuple[int, int, list]:
    """What a cycle would leave behind: runs, messages, and the requestors' USNs."""
    return (
        Run.objects.count(),
        Message.objects.count(),
        list(RequestorConfig.objects.order_by("pk").values_list("requestor_usn", "master_usn")),
    )


@pytest.fixture
def synced_world(world):
    """The world after its first sync: ORG2 then has one renamed person and one new."""
    for org in (world.org1, world.org2, world.org3, world.org1):
        run_cycle(org.config.pk)
        pump()
    person = world.org2.recipients.recipients.get(alias="person0.org2")
    person.display_name = "Renamed Person"
    changes.save_recipient(person)
    RecipientFactory(
        container=world.org2.recipients,
        alias="newcomer.org2",
        display_name="<b>Nina</b> Newcomer",
        primary_smtp="newcomer@org2.example",
    )
    return world


# -- the page -------------------------------------------------------------------------------------


def test_the_schedule_page_offers_the_preview_to_readers(world, operator_client):
    response = operator_client.get(reverse("console:schedule", kwargs={"org": "ORG2"}))

    assert response.status_code == 200
    assert f'href="{preview_url(world.org2)}"'.encode() in response.content
    assert b"Preview next cycle" in response.content


def test_the_page_lists_each_change_with_its_reason(synced_world, admin_client_):
    before = traces()

    response = admin_client_.get(preview_url(synced_world.org2))

    assert response.status_code == 200
    body = response.content.decode()
    assert "Preview of the next cycle" in body
    assert 'data-op="change" data-reason="changed"' in body and "Renamed Person" in body
    assert 'data-op="add" data-reason="new"' in body
    assert "&lt;b&gt;Nina&lt;/b&gt; Newcomer" in body and "<b>Nina</b>" not in body
    assert "Attributes changed: display name." in body
    assert 'data-side="export" data-held="no"' in body
    assert traces() == before


def test_the_page_shows_a_first_export_as_a_full_one(world, operator_client):
    body = operator_client.get(preview_url(world.org2)).content.decode()

    assert "Full export" in body and "First export" in body
    assert body.count('data-reason="full_export"') == 2
    assert "Read only" in body


def test_the_page_says_what_a_waiting_reply_would_import(synced_world, admin_client_):
    org1, org2 = synced_world.org1, synced_world.org2
    RecipientFactory(
        container=org1.recipients,
        alias="fresh.org1",
        display_name="Fresh Face",
        primary_smtp="fresh@org1.example",
    )
    run_cycle(org1.config.pk)
    pump()
    run_cycle(org2.config.pk)
    # The master answers ORG2, whose reply then waits in its inbox (delivered, not processed).
    deliver_pending()
    process_pending()
    deliver_pending()
    waiting = Message.objects.get(direction="in", recipient=org2.config.dn, status="received")

    body = admin_client_.get(preview_url(org2)).content.decode()

    assert f'data-message="{waiting.pk}" data-outcome="processed"' in body
    assert "Fresh Face" in body and "New contact from ORG1." in body
    assert Message.objects.get(pk=waiting.pk).status == "received"


def test_the_page_is_hidden_from_outsiders_and_anonymous_visitors(
    world, outsider_client, anonymous_client
):
    assert outsider_client.get(preview_url(world.org2)).status_code == 404
    response = anonymous_client.get(preview_url(world.org2))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_page_answers_only_safe_methods(world, admin_client_):
    before = traces()
    assert admin_client_.post(preview_url(world.org2)).status_code == 405
    assert traces() == before


def test_the_page_of_an_unknown_organization_is_not_found(world, admin_client_):
    url = reverse("console:preview", kwargs={"org": "NOPE"})
    assert admin_client_.get(url).status_code == 404


def test_the_page_says_when_there_is_no_requestor(world, admin_client_):
    RequestorConfig.objects.filter(pk=world.org2.config.pk).delete()
    response = admin_client_.get(preview_url(world.org2))
    assert response.status_code == 200
    assert b"No requestor yet" in response.content


# -- the command ----------------------------------------------------------------------------------


def test_the_command_prints_the_preview_and_changes_nothing(synced_world):
    before = traces()
    out = StringIO()

    call_command("sync_now", "ORG2", "--dry-run", stdout=out)

    text = out.getvalue()
    assert "Preview of the next cycle of ORG2 (nothing was changed)." in text
    header = next(line for line in text.splitlines() if line.strip().startswith("op "))
    assert header.split() == ["op", "name", "address", "reason"]
    renamed = next(line for line in text.splitlines() if "Renamed Person" in line)
    assert renamed.split()[0] == "change"
    assert "changed — Attributes changed: display name." in renamed
    assert "Counts: export 1 add, 1 change, 0 delete;" in text
    assert "export: not held" in text
    assert traces() == before


def test_the_command_keeps_a_hostile_name_on_one_line(synced_world):
    # With the master elsewhere, a recipient leaving the scope is named as it is here.
    RequestorConfig.objects.filter(pk=synced_world.org2.config.pk).update(
        master_address="master@elsewhere.example"
    )
    person = synced_world.org2.recipients.recipients.get(alias="person1.org2")
    person.display_name, person.trust_level = "Evil\x1b[2J\nName", 99
    changes.save_recipient(person)
    out = StringIO()

    call_command("sync_now", "ORG2", "--dry-run", stdout=out)

    assert "\x1b" not in out.getvalue()
    line = next(line for line in out.getvalue().splitlines() if "person1@org2.example" in line)
    assert line.split()[0] == "delete" and "Evil?[2J?Name" in line


@pytest.mark.parametrize("name", ["NOPE", "ORG\x002"])
def test_the_command_refuses_an_unknown_organization(world, name):
    with pytest.raises(CommandError, match="organization"):
        call_command("sync_now", name, "--dry-run", stdout=StringIO())


# -- the API --------------------------------------------------------------------------------------


def test_the_api_returns_the_preview(synced_world, admin_api):
    before = traces()

    response = admin_api.get(API.format(synced_world.org2.config.pk))

    assert response.status_code == 200
    body = response.json()
    assert body["organization"] == "ORG2" and body["master_local"] is True
    assert body["export_counts"] == {"add": 1, "change": 1, "delete": 0}
    by_reason = {change["reason"]: change for change in body["changes"]}
    assert by_reason["changed"]["attributes"] == ["display_name"]
    assert by_reason["new"]["name"] == "<b>Nina</b> Newcomer"
    assert [guard["side"] for guard in body["guards"]] == ["export", "import"]
    assert body["replies"] == []
    assert traces() == before


def test_the_api_lets_operators_preview(world, operator_api):
    assert operator_api.get(API.format(world.org2.config.pk)).status_code == 200


def test_the_api_hides_other_organizations_and_refuses_anonymous_callers(
    world, outsider_api, anonymous_api
):
    assert outsider_api.get(API.format(world.org2.config.pk)).status_code == 404
    assert anonymous_api.get(API.format(world.org2.config.pk)).status_code == 401


@pytest.mark.parametrize("pk", ["999999", "abc"])
def test_the_api_answers_404_for_an_unknown_requestor(world, admin_api, pk):
    assert admin_api.get(f"/api/v1/requestor-configs/{pk}/preview/").status_code == 404


def test_the_api_preview_is_read_only(world, admin_api):
    assert admin_api.post(API.format(world.org2.config.pk)).status_code == 405


def test_the_schema_documents_the_preview(world, admin_api):
    schema = admin_api.get("/api/schema/", HTTP_ACCEPT="application/json").json()

    operation = schema["paths"]["/api/v1/requestor-configs/{id}/preview/"]["get"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Preview"
    }
    assert "reason" in schema["components"]["schemas"]["ExportChange"]["properties"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_preview_waits_for_no_running_cycle(world, admin_api, admin_client_):
    """While a cycle holds the requestor, a preview is refused at once, saying why."""
    config_id = world.org2.config.pk
    locked, release = threading.Event(), threading.Event()

    def cycle_holding_the_row():
        with transaction.atomic():
            list(RequestorConfig.objects.select_for_update().filter(pk=config_id))
            locked.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=cycle_holding_the_row)
    holder.start()
    try:
        assert locked.wait(10)
        response = admin_api.get(API.format(config_id))
        assert response.status_code == 409
        assert "already running" in response.json()["detail"]
        page = admin_client_.get(preview_url(world.org2), follow=True)
        assert b"already running" in page.content
    finally:
        release.set()
        holder.join()
