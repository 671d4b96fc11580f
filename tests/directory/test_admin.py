"""The admin console: every page opens for a superuser, none for a stranger; records the engine
writes stay read-only; recipients are listed without N+1 queries and shown escaped."""

import gzip
import json
import uuid

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from directory import changes
from directory.constants import Kind
from directory.factories import RecipientFactory
from directory.models import DigestCell, LdapDirectory, Recipient, Tombstone
from master.factories import AllowedRequestorFactory
from master.models import AllowedRequestor, GlobalEntry, LedgerEntry, ReceivedBatch
from requestor.factories import ExportedContainerFactory
from requestor.models import Conflict, FilteredEntry, Run, Verification
from transport import signing
from transport.admin import describe_payload
from transport.models import Hold, Message, SigningKey

pytestmark = pytest.mark.django_db

PROJECT_APPS = {"auth", "directory", "master", "requestor", "transport"}
REGISTERED = sorted(
    (model for model in admin.site._registry if model._meta.app_label in PROJECT_APPS),
    key=lambda model: model._meta.label,
)
READ_ONLY = [
    GlobalEntry,
    LedgerEntry,
    ReceivedBatch,
    Message,
    Run,
    Conflict,
    Tombstone,
    SigningKey,
    DigestCell,
    FilteredEntry,
    Verification,
]
XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def payload(document: dict) -> bytes:
    return gzip.compress(json.dumps(document).encode())


def hold_of(requestor, message=None) -> Hold:
    return Hold.objects.create(
        organization=requestor.master.organization,
        kind="export",
        sender=requestor.address,
        recipient=requestor.master.address,
        peer=requestor.organization_name,
        batch=message.batch if message else uuid.uuid4(),
        message=message,
        reason="Held for an administrator: It would delete 9 of 10 entries.",
        deletes=9,
        live=10,
        sample=["<b>Jane</b>"],
    )


@pytest.fixture
def every_model(container, admin_user):
    """At least one row of every model the admin shows."""
    people = RecipientFactory.create_batch(2, container=container)
    RecipientFactory(container=container, kind=Kind.DISTRIBUTION_LIST, members=people)
    RecipientFactory(container=container, global_key="ORG2:1", origin_organization="ORG2")
    changes.delete_recipients([RecipientFactory(container=container)])
    LdapDirectory.objects.create(
        organization=container.organization,
        uri="ldap://ldap.branch1.example",
        bind_dn="cn=sync,dc=branch1,dc=example",
        password="s3cret",
        base_dn="dc=branch1,dc=example",
    )
    requestor = AllowedRequestorFactory(master__organization=container.organization)
    message = Message.objects.create(
        direction="in",
        status="processed",
        kind="export",
        sender="requestor@branch1.example",
        recipient="master@org1.example",
        batch=uuid.uuid4(),
        part=1,
        parts=2,
        usn_from=0,
        usn_through=12,
        payload=payload({"protocol": 1, "type": "export", "changes": []}),
        summary={"changes": 0},
    )
    ReceivedBatch.objects.create(requestor=requestor, batch=message.batch, parts=2)
    attrs = {"display_name": "Jane Doe", "primary_smtp": "jane@branch1.example"}
    GlobalEntry.objects.create(
        master=requestor.master,
        requestor=requestor,
        object_id=uuid.uuid4(),
        global_key="BRANCH1:1",
        origin="BRANCH1",
        kind=Kind.MAILBOX,
        attrs=attrs,
        source_usn=3,
        usn=1,
    )
    LedgerEntry.objects.create(
        master=requestor.master, usn=1, global_key="BRANCH1:1", origin="BRANCH1", op="upsert",
        source_usn=3, attrs=attrs, message=message,
    )  # fmt: skip
    exported = ExportedContainerFactory(config__organization=container.organization)
    Run.objects.create(config=exported.config, trigger="manual", status="ok")
    Conflict.objects.create(
        config=exported.config,
        global_key="BRANCH1:2",
        origin="BRANCH1",
        display_name="Pat Example",
        address=people[0].primary_smtp,
        reason="The address belongs to a local recipient.",
        local_recipient=people[0],
    )
    FilteredEntry.objects.create(
        config=exported.config,
        global_key="BRANCH1:3",
        origin="BRANCH1",
        address="pat@elsewhere.example",
        master_usn=2,
    )
    Verification.objects.create(config=exported.config, side="import", state="verified")
    hold_of(requestor, message)
    Group.objects.create(name="Mail administrators")
    signing.generate_key(container.organization_id)


def test_it_registers_every_model_of_the_project():
    ours = {m._meta.label for m in REGISTERED if m._meta.app_label != "auth"}
    assert ours == {
        "directory.Organization",
        "directory.Site",
        "directory.Container",
        "directory.Recipient",
        "directory.Tombstone",
        "directory.LdapDirectory",
        "directory.DigestCell",
        "master.MasterConfig",
        "master.AllowedRequestor",
        "master.GlobalEntry",
        "master.LedgerEntry",
        "master.ReceivedBatch",
        "requestor.RequestorConfig",
        "requestor.Run",
        "requestor.Conflict",
        "requestor.FilteredEntry",
        "requestor.Verification",
        "transport.Hold",
        "transport.Message",
        "transport.SigningKey",
    }


def test_it_shows_the_index(admin_client):
    response = admin_client.get(reverse("admin:index"))
    assert response.status_code == 200
    assert b"Recipients" in response.content


@pytest.mark.parametrize("model", REGISTERED, ids=lambda m: m._meta.label)
def test_it_shows_every_list_and_page_to_a_superuser(admin_client, every_model, model):
    obj = model.objects.first()
    for page in (url(model, "changelist"), url(model, "change", obj.pk)):
        response = admin_client.get(page)
        assert response.status_code == 200, page
    if model not in READ_ONLY and model is not Hold:  # (decided, never added or edited)
        assert admin_client.get(url(model, "add")).status_code == 200


@pytest.mark.parametrize("model", REGISTERED, ids=lambda m: m._meta.label)
def test_it_sends_a_stranger_to_the_login_page(client, every_model, model):
    for page in (url(model, "changelist"), url(model, "change", model.objects.first().pk)):
        response = client.get(page)
        assert response.status_code == 302
        assert response.url.startswith(reverse("admin:login"))


@pytest.mark.parametrize("model", READ_ONLY, ids=lambda m: m._meta.label)
def test_it_never_adds_or_edits_what_the_engine_writes(admin_client, every_model, model):
    obj = model.objects.first()
    assert admin_client.get(url(model, "add")).status_code == 403
    assert admin_client.post(url(model, "change", obj.pk), {}).status_code == 403
    assert model.objects.filter(pk=obj.pk).exists()


@pytest.mark.parametrize("model", [GlobalEntry, LedgerEntry, ReceivedBatch, Message])
def test_it_never_deletes_the_master_database_or_the_archive(admin_client, every_model, model):
    obj = model.objects.first()
    response = admin_client.post(url(model, "delete", obj.pk), {"post": "yes"})
    assert response.status_code == 403
    assert model.objects.filter(pk=obj.pk).exists()


def test_it_lists_recipients_in_a_constant_number_of_queries(admin_client):
    def queries_for_list() -> int:
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(url(Recipient, "changelist"))
        assert response.status_code == 200
        return len(queries)

    # Each recipient in its own container of its own organization: nothing is shared.
    RecipientFactory.create_batch(5)
    few = queries_for_list()
    RecipientFactory.create_batch(45)
    assert queries_for_list() == few


@pytest.mark.parametrize("model", [Conflict, LedgerEntry, Run])
def test_it_lists_engine_records_in_a_constant_number_of_queries(admin_client, model):
    def add_rows(n: int) -> None:
        for _ in range(n):
            exported = ExportedContainerFactory()
            requestor = AllowedRequestorFactory()
            message = Message.objects.create(direction="in", status="processed", payload=b"")
            usn = LedgerEntry.objects.count() + 1
            LedgerEntry.objects.create(
                master=requestor.master, usn=usn, global_key=f"K:{usn}", origin="K", op="upsert",
                message=message,
            )  # fmt: skip
            Run.objects.create(config=exported.config, trigger="manual")
            Conflict.objects.create(
                config=exported.config, global_key="K:1", origin="K", display_name="x",
                address="x@k.example", reason="taken",
                local_recipient=RecipientFactory(container=exported.container),
            )  # fmt: skip

    def queries_for_list() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(url(model, "changelist")).status_code == 200
        return len(queries)

    add_rows(3)
    few = queries_for_list()
    add_rows(12)
    assert queries_for_list() == few


def test_it_escapes_names_on_the_list_and_the_page(admin_client, container):
    recipient = RecipientFactory(container=container, display_name=XSS, title=XSS)
    for page in (url(Recipient, "changelist"), url(Recipient, "change", recipient.pk)):
        content = admin_client.get(page).content.decode()
        assert XSS not in content
        assert ESCAPED in content


def test_it_escapes_archived_documents(admin_client):
    message = Message.objects.create(
        direction="in",
        status="rejected",
        sender=XSS,
        recipient="master@org1.example",
        payload=payload({"changes": [{"attrs": {"display_name": XSS}}]}),
        summary={"note": XSS},
        error=XSS,
    )
    for page in (url(Message, "changelist"), url(Message, "change", message.pk)):
        content = admin_client.get(page).content.decode()
        assert XSS not in content
        assert ESCAPED in content


def test_it_shows_a_message_payload_as_indented_json(admin_client, every_model):
    message = Message.objects.get()
    content = admin_client.get(url(Message, "change", message.pk)).content.decode()
    assert "{\n  &quot;protocol&quot;: 1," in content
    assert "1/2" in content
    assert "(0, 12]" in content


def test_it_cuts_a_large_payload_and_survives_a_broken_one():
    big = payload({"changes": ["x" * 1000] * 1000})
    assert describe_payload(big, limit=5000).endswith("(cut: only the first 4 KB are shown)")
    assert len(describe_payload(big, limit=5000)) < 5100
    bomb = gzip.compress(b"\0" * 50_000_000)
    assert "cut" in describe_payload(bomb, limit=1000)
    assert describe_payload(b"not gzip").startswith("(not a gzip document")
    assert describe_payload(gzip.compress(b"{oops")).startswith("(not a JSON document")


def test_it_writes_tombstones_when_recipients_are_deleted_in_the_admin(admin_client, container):
    one, two, three = RecipientFactory.create_batch(3, container=container)

    admin_client.post(url(Recipient, "delete", one.pk), {"post": "yes"})
    admin_client.post(
        url(Recipient, "changelist"),
        {"action": "delete_selected", "_selected_action": [two.pk, three.pk], "post": "yes"},
    )

    assert not Recipient.objects.exists()
    tombstones = Tombstone.objects.order_by("usn")
    assert tombstones[0].guid == one.guid
    assert {t.guid for t in tombstones} == {one.guid, two.guid, three.guid}
    assert [t.usn for t in tombstones] == [4, 5, 6]


def recipient_form(container, **changes) -> dict:
    data = {
        "container": container.pk,
        "kind": Kind.MAILBOX,
        "display_name": "Jane Doe",
        "alias": "jdoe",
        "primary_smtp": "jane.doe@org1.example",
        "trust_level": 0,
    }
    return {**data, **changes}


def test_it_adds_a_recipient_with_the_next_usn(admin_client, container):
    RecipientFactory(container=container)
    response = admin_client.post(url(Recipient, "add"), recipient_form(container))
    assert response.status_code == 302
    jane = Recipient.objects.get(alias="jdoe")
    assert (jane.organization, jane.usn) == (container.organization, 2)


@pytest.mark.parametrize(
    "changes", [{"primary_smtp": "JANE.DOE@ORG1.EXAMPLE"}, {"alias": "JDoe"}], ids=["smtp", "alias"]
)
def test_it_refuses_a_duplicate_on_the_form(admin_client, container, changes):
    RecipientFactory(container=container, alias="jdoe", primary_smtp="jane.doe@org1.example")
    other = {"alias": "jane2", "primary_smtp": "jane2@org1.example"}
    response = admin_client.post(
        url(Recipient, "add"), recipient_form(container, **other | changes)
    )
    assert response.status_code == 200
    assert "Another recipient of this organization has that" in response.content.decode()
    assert Recipient.objects.count() == 1


def test_it_refuses_members_from_another_organization(admin_client, container, other_container):
    stranger = RecipientFactory(container=other_container)
    form = recipient_form(container, kind=Kind.DISTRIBUTION_LIST, members=[stranger.pk])
    response = admin_client.post(url(Recipient, "add"), form)
    assert response.status_code == 200
    assert f"Not in this organization: {stranger.alias}." in response.content.decode()


def test_it_refuses_to_move_a_recipient_to_another_organization(
    admin_client, container, other_container
):
    jane = RecipientFactory(container=container, alias="jdoe", primary_smtp="jane@org1.example")
    form = recipient_form(other_container, alias="jdoe", primary_smtp="jane@org1.example")
    response = admin_client.post(url(Recipient, "change", jane.pk), form)
    assert response.status_code == 200
    assert Recipient.objects.get(pk=jane.pk).container == container


def test_it_finds_recipients_by_name_alias_and_address(admin_client, container):
    RecipientFactory(
        container=container, display_name="Zed Zulu", alias="zz", primary_smtp="z@q.ex"
    )
    RecipientFactory(container=container)
    for query in ("zulu", "zz", "z@q.ex"):
        response = admin_client.get(url(Recipient, "changelist"), {"q": query})
        assert [r.alias for r in response.context["cl"].result_list] == ["zz"], query


def test_it_filters_imported_contacts(admin_client, container):
    RecipientFactory(container=container, alias="own")
    RecipientFactory(container=container, alias="theirs", global_key="ORG2:9")
    for value, expected in (("yes", ["theirs"]), ("no", ["own"])):
        response = admin_client.get(url(Recipient, "changelist"), {"imported": value})
        assert [r.alias for r in response.context["cl"].result_list] == expected


def test_it_shows_membership_only_for_distribution_lists(admin_client, container):
    mailbox = RecipientFactory(container=container)
    dl = RecipientFactory(container=container, kind=Kind.DISTRIBUTION_LIST)
    assert (
        "Membership" not in admin_client.get(url(Recipient, "change", mailbox.pk)).content.decode()
    )
    assert "Membership" in admin_client.get(url(Recipient, "change", dl.pk)).content.decode()


def test_it_shows_the_requestor_pages_of_the_original_tool(admin_client):
    exported = ExportedContainerFactory()
    content = admin_client.get(url(type(exported.config), "change", exported.config.pk)).content
    assert b"Export Config" in content
    assert b"Import Config" in content
    assert exported.container.dn.encode() in content


def test_it_finds_a_tombstone_by_part_of_its_guid(admin_client, container):
    changes.delete_recipients([RecipientFactory(container=container)])
    changes.delete_recipients([RecipientFactory(container=container)])
    wanted = Tombstone.objects.first()
    fragment = str(wanted.guid)[9:18]
    response = admin_client.get(url(Tombstone, "changelist"), {"q": fragment})
    assert list(response.context["cl"].result_list) == [wanted]


def test_it_finds_a_message_by_part_of_its_batch(admin_client, every_model):
    message = Message.objects.get()
    fragment = str(message.batch)[:8]
    response = admin_client.get(url(Message, "changelist"), {"q": fragment})
    assert list(response.context["cl"].result_list) == [message]


@pytest.mark.filterwarnings("error::django.core.paginator.UnorderedObjectListWarning")
def test_it_suggests_containers_by_dn(admin_client, container, other_container):
    query = {
        "app_label": "requestor",
        "model_name": "requestorconfig",
        "field_name": "import_container",
        "term": "org2",
    }
    response = admin_client.get(reverse("admin:autocomplete"), query)
    assert response.json()["results"] == [
        {"id": str(other_container.pk), "text": other_container.dn}
    ]


def test_it_leaves_an_imported_contacts_attributes_to_the_master(admin_client, container):
    contact = RecipientFactory(
        container=container,
        kind=Kind.CUSTOM_RECIPIENT,
        global_key="ORG2:7",
        origin_organization="ORG2",
    )
    response = admin_client.get(url(Recipient, "change", contact.pk))
    assert response.status_code == 200
    assert 'name="display_name"' not in response.content.decode()
    assert 'name="custom_attribute_1"' in response.content.decode()


def test_it_approves_and_rejects_held_batches_with_who_and_when(admin_client, admin_user):
    requestor = AllowedRequestorFactory()
    first, second = hold_of(requestor), hold_of(requestor)
    change = url(Hold, "changelist")

    admin_client.post(change, {"action": "approve", "_selected_action": [first.pk]})
    admin_client.post(change, {"action": "reject", "_selected_action": [first.pk, second.pk]})

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.decision, first.decided_by) == (Hold.Decision.APPROVED, admin_user)
    assert (second.decision, second.decided_by) == (Hold.Decision.REJECTED, admin_user)
    assert admin_client.get(url(Hold, "add")).status_code == 403


def test_it_quarantines_and_releases_requestors(admin_client, admin_user):
    requestor = AllowedRequestorFactory()
    change = url(AllowedRequestor, "changelist")

    admin_client.post(
        change, {"action": "quarantine_requestors", "_selected_action": [requestor.pk]}
    )
    requestor.refresh_from_db()
    assert requestor.quarantined and requestor.quarantined_by == admin_user

    hold_of(requestor)
    response = admin_client.post(
        change, {"action": "release_requestors", "_selected_action": [requestor.pk]}, follow=True
    )
    assert "approve or reject it" in response.content.decode()
    assert AllowedRequestor.objects.get(pk=requestor.pk).quarantined
    Hold.objects.update(decision=Hold.Decision.REJECTED)
    admin_client.post(change, {"action": "release_requestors", "_selected_action": [requestor.pk]})
    assert not AllowedRequestor.objects.get(pk=requestor.pk).quarantined
