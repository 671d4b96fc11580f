"""The long lists' filters (runs, messages, recipients; pages and API alike), what a message
page shows of the entries it carried and its .eml download, and the links between objects."""

import hashlib
from datetime import timedelta
from email import policy
from email.parser import BytesParser

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from console import status
from console.constants import ConsoleRole
from directory import changes
from directory.constants import Kind
from requestor.constants import RunStatus, Trigger
from requestor.cycle import run_cycle
from requestor.models import Conflict, Run
from tests.console.conftest import add_history, logged_in, make_user
from tests.console.test_escaping import ESCAPED, HOSTILE
from transport import archive
from transport.constants import ATTACHMENT_NAME, Direction, MessageKind, Status
from transport.inbox import pump
from transport.models import Message

RUNS = "/o/ORG2/runs/"
MESSAGES = "/o/ORG2/messages/"


def cycle(org) -> Run:
    run = run_cycle(org.config.pk)
    pump()
    return Run.objects.get(pk=run.pk)


def make_run(world, days_ago: int = 0, **fields) -> Run:
    fields.setdefault("trigger", Trigger.SCHEDULE)
    fields.setdefault("status", RunStatus.OK)
    run = world.org2.config.runs.create(**fields)
    Run.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(days=days_ago))
    return run


def make_message(world, days_ago: int = 0, **fields) -> Message:
    fields.setdefault("direction", Direction.OUTBOUND)
    fields.setdefault("status", Status.SENT)
    fields.setdefault("kind", MessageKind.EXPORT)
    fields.setdefault("sender", world.org2.config.dn)
    fields.setdefault("recipient", "/o=ORG1/ou=Site1/cn=Recipients/cn=MASTER")
    fields.setdefault("payload", b"")
    message = Message.objects.create(organization=world.org2.organization, **fields)
    Message.objects.filter(pk=message.pk).update(
        created_at=timezone.now() - timedelta(days=days_ago)
    )
    return message


def listed(response, path: str) -> set[int]:
    """The ids of the objects a list page links to under `path` (such as /o/ORG2/runs/)."""
    body = response.content.decode()
    found = set()
    for piece in body.split(f'href="{path}')[1:]:
        number = piece.split("/", 1)[0]
        if number.isdigit():
            found.add(int(number))
    return found


def days(n: int) -> str:
    return (timezone.localdate() - timedelta(days=n)).isoformat()


# --- runs -------------------------------------------------------------------------------------


def test_it_filters_runs_by_status_trigger_and_dates(world, operator_client):
    ok_old = make_run(world, days_ago=10)
    failed_manual = make_run(world, status=RunStatus.FAILED, trigger=Trigger.MANUAL)
    ok_manual = make_run(world, trigger=Trigger.MANUAL, days_ago=2)
    make_run(world, status=RunStatus.FAILED, days_ago=5)

    def ids(**params):
        response = operator_client.get(RUNS, params)
        assert response.status_code == 200
        return listed(response, RUNS)

    assert len(ids()) == 4
    assert ids(trigger=Trigger.MANUAL) == {failed_manual.pk, ok_manual.pk}
    assert ids(status=RunStatus.OK, trigger=Trigger.MANUAL) == {ok_manual.pk}
    assert ids(until=days(7)) == {ok_old.pk}
    assert ids(since=days(3), status=RunStatus.OK) == {ok_manual.pk}
    assert ids(since=days(3), until=days(1)) == {ok_manual.pk}


@pytest.mark.parametrize(
    "params",
    [{"since": "2026-13-45"}, {"status": "exploded"}, {"since": days(1), "until": days(3)}],
    ids=["bad-date", "unknown-state", "backwards"],
)
def test_it_says_a_bad_run_filter_and_lists_nothing(world, operator_client, params):
    make_run(world)
    response = operator_client.get(RUNS, params)
    assert response.status_code == 200
    assert 'id="filter-errors"' in response.content.decode()
    assert listed(response, RUNS) == set()


def test_the_pager_keeps_the_filters(world, operator_client):
    for _ in range(55):
        make_run(world, trigger=Trigger.MANUAL)
    make_run(world)
    response = operator_client.get(RUNS, {"trigger": Trigger.MANUAL})
    body = response.content.decode()
    assert "Page 1 of 2 (55)" in body
    assert "?trigger=manual&amp;page=2" in body
    second = operator_client.get(RUNS, {"trigger": Trigger.MANUAL, "page": 2})
    assert len(listed(second, RUNS)) == 5
    assert 'value="manual" selected' in second.content.decode()


# --- messages ---------------------------------------------------------------------------------


def test_it_filters_messages(world, operator_client):
    export = make_message(world, message_id="<abc.123@org2.example>")
    reply = make_message(
        world,
        direction=Direction.INBOUND,
        status=Status.PROCESSED,
        kind=MessageKind.REPLY,
        sender="master@org1.example",
        recipient="requestor@org2.example",
        summary={"sender": {"organization": "ORG1", "address": "master@org1.example"}},
        headers="Subject: InterOrg reply ORG1 part 1/1\nFrom: master@org1.example",
        days_ago=4,
    )
    refused = make_message(
        world,
        direction=Direction.INBOUND,
        status=Status.REJECTED,
        kind=MessageKind.UNKNOWN,
        sender="intruder@evil.example",
        days_ago=9,
    )

    def ids(**params):
        response = operator_client.get(MESSAGES, params)
        assert response.status_code == 200
        return listed(response, MESSAGES)

    assert ids() == {export.pk, reply.pk, refused.pk}
    assert ids(direction=Direction.INBOUND) == {reply.pk, refused.pk}
    assert ids(kind=MessageKind.REPLY) == {reply.pk}
    assert ids(status=Status.REJECTED, direction=Direction.INBOUND) == {refused.pk}
    assert ids(origin="org1") == {reply.pk}
    assert ids(origin="evil") == {refused.pk}
    assert ids(q="abc.123") == {export.pk}  # Message-ID
    assert ids(q="reply ORG1 part") == {reply.pk}  # subject
    assert ids(q="intruder@") == {refused.pk}  # address
    assert ids(since=days(5), until=days(3)) == {reply.pk}
    assert ids(since=days(5), direction=Direction.INBOUND) == {reply.pk}


def test_it_says_a_bad_message_filter(world, operator_client):
    make_message(world)
    response = operator_client.get(MESSAGES, {"until": "yesterday", "kind": "letter"})
    body = response.content.decode()
    assert response.status_code == 200
    assert 'id="filter-errors"' in body
    assert "Enter a valid date." in body
    assert listed(response, MESSAGES) == set()


def test_it_refuses_a_nul_in_a_filter(world, operator_client):
    assert operator_client.get(MESSAGES, {"q": "a\x00b"}).status_code == 400


# --- the API's lists --------------------------------------------------------------------------


def test_the_api_filters_runs_and_messages_alike(world, operator_api):
    manual = make_run(world, trigger=Trigger.MANUAL)
    make_run(world, days_ago=3)
    export = make_message(world, message_id="<find.me@org2.example>")
    make_message(world, direction=Direction.INBOUND, kind=MessageKind.REPLY, days_ago=3)

    def ids(url, **params):
        response = operator_api.get(url, {"organization": "ORG2", **params})
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids("/api/v1/runs/", trigger="manual") == {manual.pk}
    assert ids("/api/v1/runs/", since=days(1)) == {manual.pk}
    assert ids("/api/v1/runs/", status="ok", trigger="manual") == {manual.pk}
    assert ids("/api/v1/messages/", kind="export", direction="out") == {export.pk}
    assert ids("/api/v1/messages/", search="find.me") == {export.pk}
    assert ids("/api/v1/messages/", since=days(1), status="sent") == {export.pk}


def test_the_api_refuses_a_bad_filter(world, operator_api):
    response = operator_api.get("/api/v1/messages/", {"since": "2026-02-30"})
    assert response.status_code == 400
    assert "since" in response.json()
    response = operator_api.get("/api/v1/runs/", {"trigger": "whim"})
    assert response.status_code == 400
    assert "trigger" in response.json()


# --- the directory ----------------------------------------------------------------------------


def test_it_finds_recipients_by_kind_origin_and_container(world, operator_client):
    add_history(world.org2)
    url = "/o/ORG2/directory/"
    response = operator_client.get(url, {"origin": "ORG9"})
    found = listed(response, "/o/ORG2/directory/recipients/")
    contact = world.org2.organization.recipients.get(global_key__isnull=False)
    assert found == {contact.pk}
    response = operator_client.get(url, {"origin": "own", "q": "Person 1"})
    person = world.org2.organization.recipients.get(alias="person1.org2")
    assert listed(response, "/o/ORG2/directory/recipients/") == {person.pk}
    response = operator_client.get(url, {"kind": Kind.CUSTOM_RECIPIENT})
    assert listed(response, "/o/ORG2/directory/recipients/") == {contact.pk}
    response = operator_client.get(url, {"container": world.org2.imported.pk, "origin": "own"})
    assert listed(response, "/o/ORG2/directory/recipients/") == set()
    response = operator_client.get(url, {"container": "999999"})
    assert 'id="filter-errors"' in response.content.decode()


def test_a_container_page_filters_by_kind_and_origin(world, operator_client):
    add_history(world.org2)
    url = f"/o/ORG2/directory/containers/{world.org2.imported.pk}/"
    contact = world.org2.organization.recipients.get(global_key__isnull=False)
    response = operator_client.get(url, {"origin": "ORG9", "kind": Kind.CUSTOM_RECIPIENT})
    assert listed(response, "/o/ORG2/directory/recipients/") == {contact.pk}
    response = operator_client.get(url, {"origin": "ORG7"})
    assert listed(response, "/o/ORG2/directory/recipients/") == set()


# --- a message's entries and its .eml -----------------------------------------------------------


@pytest.fixture
def synced(world):
    """ORG1 and ORG2 after a real cycle each, with a hostile display name in ORG1's export."""
    person = world.org1.organization.recipients.exportable().first()
    person.display_name = HOSTILE
    changes.save_recipient(person)
    cycle(world.org1)
    run = cycle(world.org2)
    assert run.status == RunStatus.OK
    return world, run


def test_a_message_page_lists_the_entries_it_carried(synced, operator_client):
    world, run = synced
    export = Message.objects.get(
        organization=world.org2.organization, direction=Direction.OUTBOUND, batch=run.batch
    )
    body = operator_client.get(f"{MESSAGES}{export.pk}/").content.decode()
    assert 'id="entries-table"' in body
    for person in world.org2.organization.recipients.exportable():
        assert person.primary_smtp in body
    reply = Message.objects.get(
        organization=world.org2.organization,
        direction=Direction.INBOUND,
        kind=MessageKind.REPLY,
        summary__in_reply_to=str(run.batch),
    )
    body = operator_client.get(f"{MESSAGES}{reply.pk}/").content.decode()
    assert "person0@org1.example" in body
    assert ESCAPED in body
    assert HOSTILE not in body


def test_a_message_page_shows_a_bounded_number_of_entries(synced, operator_client, monkeypatch):
    world, run = synced
    monkeypatch.setattr("console.message_contents.ENTRIES_SHOWN", 1)
    export = Message.objects.get(
        organization=world.org2.organization, direction=Direction.OUTBOUND, batch=run.batch
    )
    body = operator_client.get(f"{MESSAGES}{export.pk}/").content.decode()
    assert 'id="entries-more"' in body
    assert body.count("<tr><td>") == 1


def test_it_downloads_a_rejected_mail_kept_byte_for_byte(world, operator_client, settings):
    settings.INTERORG_KEEP_REJECTED_BODIES = True
    raw = b"From: intruder@evil.example\r\nSubject: hi\r\n\r\nnot for you \xff\r\n"
    message = make_message(
        world,
        direction=Direction.INBOUND,
        status=Status.REJECTED,
        kind=MessageKind.UNKNOWN,
        digest=archive.digest_of(raw),
        **archive.rejected(raw),
    )
    response = operator_client.get(f"{MESSAGES}{message.pk}/eml/")
    assert response.status_code == 200
    assert response["Content-Type"] == "message/rfc822"
    assert response["Content-Disposition"] == f'attachment; filename="message-{message.pk}.eml"'
    assert response.content == raw


def test_it_refuses_the_eml_of_a_body_not_kept(world, operator_client):
    raw = b"From: intruder@evil.example\r\n\r\nbody\r\n"
    message = make_message(
        world,
        direction=Direction.INBOUND,
        status=Status.REJECTED,
        digest=archive.digest_of(raw),
        **archive.rejected(raw),
    )
    assert message.body_dropped
    response = operator_client.get(f"{MESSAGES}{message.pk}/eml/")
    assert response.status_code == 404
    assert "was not kept" in response.content.decode()
    page = operator_client.get(f"{MESSAGES}{message.pk}/").content.decode()
    assert 'id="no-eml"' in page and 'id="download-eml"' not in page


def test_the_eml_of_a_sent_part_carries_its_signed_payload(synced, operator_client):
    world, run = synced
    export = Message.objects.get(
        organization=world.org2.organization, direction=Direction.OUTBOUND, batch=run.batch
    )
    response = operator_client.get(f"{MESSAGES}{export.pk}/eml/")
    assert response.status_code == 200
    mail = BytesParser(policy=policy.default).parsebytes(response.content)
    [part] = [p for p in mail.iter_attachments() if p.get_filename() == ATTACHMENT_NAME]
    payload = part.get_content()
    assert hashlib.sha256(payload).digest() == hashlib.sha256(bytes(export.payload)).digest()
    assert "".join(mail["X-InterOrg-Signature"].split()) == export.signature


# --- links ------------------------------------------------------------------------------------


def test_a_message_links_to_its_run_and_the_run_to_its_messages(synced, operator_client):
    world, run = synced
    export = Message.objects.get(
        organization=world.org2.organization, direction=Direction.OUTBOUND, batch=run.batch
    )
    body = operator_client.get(f"{MESSAGES}{export.pk}/").content.decode()
    assert f'id="message-run" href="{RUNS}{run.pk}/"' in body
    reply = Message.objects.get(
        organization=world.org2.organization, summary__in_reply_to=str(run.batch)
    )
    body = operator_client.get(f"{MESSAGES}{reply.pk}/").content.decode()
    assert f'id="message-run" href="{RUNS}{run.pk}/"' in body
    run_page = operator_client.get(f"{RUNS}{run.pk}/")
    assert {export.pk, reply.pk} <= listed(run_page, MESSAGES)


def test_a_recent_error_on_the_dashboard_links_to_its_message(world, operator_client):
    add_history(world.org2)
    refused = Message.objects.get(organization=world.org2.organization, status=Status.REJECTED)
    [line] = [e for e in status.recent_errors(world.org2.organization) if "Message" in e.source]
    assert line.url == f"{MESSAGES}{refused.pk}/"
    body = operator_client.get("/").content.decode()
    assert f'<a href="{MESSAGES}{refused.pk}/">' in body


def test_a_conflict_links_to_the_contact_holding_its_address(world, operator_client):
    add_history(world.org2)
    contact = world.org2.organization.recipients.get(global_key__isnull=False)
    local = world.org2.organization.recipients.get(alias="person0.org2")
    for address, holder in (("CONTACT@elsewhere.example", None), (local.primary_smtp, local)):
        Conflict.objects.create(
            config=world.org2.config,
            global_key=f"ORG3:{address}",
            origin="ORG3",
            display_name="Taken",
            address=address.lower(),
            reason="taken",
            local_recipient=holder,
        )
    response = operator_client.get("/o/ORG2/conflicts/")
    assert listed(response, "/o/ORG2/directory/recipients/") == {contact.pk, local.pk}


def test_a_contact_links_to_its_origin_organization_and_recipient(world):
    roles = {org.organization: ConsoleRole.OPERATOR for org in (world.org2, world.org3)}
    client = logged_in(make_user("both", roles))
    cycle(world.org3)
    cycle(world.org1)
    cycle(world.org2)
    person = world.org3.organization.recipients.get(alias="person0.org3")
    contact = world.org2.organization.recipients.get(global_key=f"ORG3:{person.guid}")
    body = client.get(f"/o/ORG2/directory/recipients/{contact.pk}/").content.decode()
    assert 'id="origin-organization" href="/o/ORG3/"' in body
    assert f'id="origin-recipient" href="/o/ORG3/directory/recipients/{person.pk}/"' in body


def test_a_contact_of_an_organization_the_user_may_not_see_links_nowhere(world, operator_client):
    cycle(world.org3)
    cycle(world.org1)
    cycle(world.org2)
    contact = world.org2.organization.recipients.filter(origin_organization="ORG3").first()
    body = operator_client.get(f"/o/ORG2/directory/recipients/{contact.pk}/").content.decode()
    assert 'id="origin"' in body
    assert 'id="origin-organization"' not in body


# --- queries ----------------------------------------------------------------------------------


def count_queries(client, url: str, params=None) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params or {})
    assert response.status_code == 200
    return len(captured)


@pytest.mark.parametrize(
    "url, params",
    [
        (RUNS, {"status": "ok"}),
        (MESSAGES, {"direction": "out", "q": "org"}),
        ("/o/ORG2/directory/", {"q": "o"}),
        ("/o/ORG2/conflicts/", {}),
    ],
)
def test_the_filtered_lists_take_flat_queries(world, operator_client, url, params):
    def more(n: int) -> None:
        for i in range(n):
            make_run(world)
            make_message(world, message_id=f"<m{i}.{n}@org2.example>")
            Conflict.objects.create(
                config=world.org2.config,
                global_key=f"ORG3:{n}:{i}",
                origin="ORG3",
                display_name="Taken",
                address=f"taken{n}.{i}@elsewhere.example",
                reason="taken",
            )

    more(2)
    few = count_queries(operator_client, url, params)
    more(20)
    assert count_queries(operator_client, url, params) == few


def test_the_recipients_api_filters_by_kind_and_origin(world, operator_api):
    add_history(world.org2)
    contact = world.org2.organization.recipients.get(global_key__isnull=False)

    def ids(**params):
        response = operator_api.get("/api/v1/recipients/", {"organization": "ORG2", **params})
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids(origin="org9") == {contact.pk}
    assert ids(kind=Kind.CUSTOM_RECIPIENT) == {contact.pk}
    own = ids(origin="own")
    assert contact.pk not in own and len(own) == 2
    response = operator_api.get("/api/v1/recipients/", {"kind": "robot"})
    assert response.status_code == 400 and "kind" in response.json()
