"""A batch as one story (console.batch): the origin's run, the master's guard, what the master
stamped and what each organization imported of it, on the page, in the API and from the
command line; and, end to end, a mass delete at the origin undone by the origin's own restore
within the grace period: the same contacts come back everywhere."""

import io
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from console import batch as batches
from console.constants import ConsoleRole
from directory import changes
from directory.constants import Role
from directory.models import Organization, Recipient, allocate_usns
from master.models import AllowedRequestor
from requestor.constants import RunStatus
from requestor.cycle import sync_all
from requestor.models import RequestorConfig
from tests.console.conftest import logged_in, make_user, token_client
from tests.engine.conftest import make_org
from tests.engine.helpers import (
    add_many,
    assert_converged,
    cycle,
    rename,
    synced_fixtures,
)
from transport import holds
from transport.models import Hold

API = "/api/v1"


def _thirty_in_org2(scenario):
    add_many(scenario["ORG2"], 27)  # and its 3 people: 30 live entries at the master


synced_base, synced = synced_fixtures(prepare=_thirty_in_org2)

# What a restore from a backup (or the AD recycle bin) brings back: the object as it was,
# GUID included, with a fresh local USN.
KEPT = [
    field.attname
    for field in Recipient._meta.concrete_fields
    if field.attname not in ("id", "usn", "created_at", "changed_at")
]


def user(name: str, *orgs: str, role: str = ConsoleRole.ADMINISTRATOR):
    return make_user(name, {Organization.objects.get(name=org): role for org in orgs})


def bulk_people(count: int) -> list[Recipient]:
    return list(
        Recipient.objects.filter(
            organization__name="ORG2", global_key__isnull=True, alias__startswith="bulk"
        ).order_by("pk")[:count]
    )


def delete_people(count: int) -> list[dict]:
    """Delete ORG2's first `count` bulk people; what a backup of them holds."""
    people = bulk_people(count)
    saved = list(Recipient.objects.filter(pk__in=[p.pk for p in people]).values(*KEPT))
    changes.delete_recipients(people)
    return saved


def restore_people(saved: list[dict]) -> None:
    """ORG2 restores its people from its backup: the same objects, the same GUIDs."""
    organization_id = saved[0]["organization_id"]
    with transaction.atomic():
        first = allocate_usns(organization_id, len(saved))
        changes.insert_recipients(
            organization_id,
            [*KEPT, "usn"],
            [[row[name] for name in KEPT] + [first + n] for n, row in enumerate(saved)],
        )


def contacts_of_org2(name: str) -> dict[str, tuple]:
    """ORG2's contacts at organization `name`: (pk, guid, hidden_at) by global key."""
    rows = Recipient.objects.filter(organization__name=name, origin_organization="ORG2")
    return {
        key: (pk, guid, hidden)
        for key, pk, guid, hidden in rows.values_list("global_key", "pk", "guid", "hidden_at")
    }


def line_of(story: batches.Story, name: str) -> str:
    (line,) = [line for line in story.lines if line.startswith(f"{name}:")]
    return line


def group_counts(story: batches.Story, name: str) -> dict[str, int]:
    (imported,) = [i for i in story.imports if i.organization.name == name]
    return {group.op: group.count for group in imported.groups}


def set_guard(limit: int) -> None:
    AllowedRequestor.objects.filter(organization_name="ORG2").update(delete_limit=limit)


# --- The story ---------------------------------------------------------------------------------


def test_it_tells_a_batch_of_renames_and_deletes_at_the_master_and_each_organization(synced):
    rename("bulk10", "Renamed Ten")
    rename("bulk11", "Renamed Eleven")
    gone = [person.display_name for person in bulk_people(3)]
    delete_people(3)
    run = cycle(synced["ORG2"])
    runs = {name: cycle(synced[name]) for name in ("ORG1", "ORG3")}

    story = batches.story(run.batch)

    assert story.kind == "export"
    assert story.origin.run == run and story.origin.name == "ORG2"
    assert story.guard.holds == []
    master = story.master
    assert (master.organization.name, master.upserts, master.deletes) == ("ORG1", 2, 3)
    assert [n.name for n in master.upserted] == ["Renamed Ten (ORG2)", "Renamed Eleven (ORG2)"]
    assert [n.name for n in master.deleted] == [f"{name} (ORG2)" for name in gone]
    assert master.usn_through - master.usn_from == 4
    assert [reply.summary["in_reply_to"] for reply in master.replies] == [str(run.batch)]
    assert [i.organization.name for i in story.imports] == ["ORG1", "ORG3"]
    for name in ("ORG1", "ORG3"):
        assert group_counts(story, name) == {"updated": 2, "hidden": 3}
        line = line_of(story, name)
        assert "2 updated at " in line and f"by run {runs[name].pk}" in line
        assert line.endswith("0 added") and "3 hidden" in line
    (imported,) = [i for i in story.imports if i.organization.name == "ORG3"]
    updated = imported.groups[0]
    assert {n.detail for n in updated.sample} == {"display_name"}
    assert story.lines[0].startswith(f"ORG2: run {run.pk} (")
    assert "ORG1 (master): stamped 2 upserts and 3 deletes" in story.lines[2]


def test_an_organization_that_has_not_cycled_yet_is_waiting(synced):
    delete_people(2)
    run = cycle(synced["ORG2"])
    cycle(synced["ORG1"])

    story = batches.story(run.batch)

    states = {i.organization.name: i.state for i in story.imports}
    assert states == {"ORG1": "done", "ORG3": "waiting"}
    assert "ORG3: nothing yet: it applied master USNs through" in line_of(story, "ORG3")


def test_it_names_who_approved_a_held_mass_delete(synced):
    set_guard(5)
    delete_people(8)
    run = cycle(synced["ORG2"])
    assert run.status == RunStatus.HELD

    held = batches.story(run.batch)

    (hold,) = held.guard.holds
    assert hold.decision == Hold.Decision.PENDING and held.guard.quarantined
    assert held.master.count == 0
    assert "ORG1 (guard): held at " in held.lines[1] and "(8 deletes of 30)" in held.lines[1]
    assert "ORG2 is quarantined meanwhile" in held.lines[1]
    assert line_of(held, "ORG3").startswith("ORG3: nothing to import")

    holds.approve(hold.pk, user("hub", "ORG1"))
    cycle(synced["ORG3"])
    story = batches.story(run.batch)

    assert not story.guard.quarantined
    assert story.guard.holds[0].decided_by.username == "hub"
    assert "; approved by hub at " in story.lines[1]
    assert (story.master.upserts, story.master.deletes) == (0, 8)
    assert group_counts(story, "ORG3") == {"hidden": 8}
    assert story.imports[0].state == "waiting"  # ORG1 has not cycled since


def test_a_reply_held_by_an_import_guard_is_linked_to_the_batch_and_leads_to_it(synced):
    RequestorConfig.objects.filter(organization__name="ORG3").update(
        import_delete_limit=5, import_delete_percent=100
    )
    delete_people(8)
    run = cycle(synced["ORG2"])
    cycle(synced["ORG3"])
    (hold,) = Hold.objects.filter(kind="reply")

    story = batches.story(run.batch)
    (org3,) = [i for i in story.imports if i.organization.name == "ORG3"]
    assert org3.reply_holds == [hold] and org3.state == "waiting"
    assert "a reply held by its import guard at " in org3.line
    assert "waiting for an administrator" in org3.line

    reply = batches.story(hold.batch)
    assert reply.kind == "reply" and reply.reply_to.name == "ORG3"
    assert reply.reply_holds == [hold]
    assert [(c.batch, c.origin, c.count, c.deletes) for c in reply.carried] == [
        (run.batch, "ORG2", 8, 8)
    ]
    client = logged_in(user("reader", "ORG1", "ORG3", role=ConsoleRole.OPERATOR))
    held_page = client.get("/o/ORG3/held/").content.decode()
    assert f'href="/o/ORG3/batches/{hold.batch}/">This batch everywhere</a>' in held_page
    page = client.get(f"/o/ORG3/batches/{hold.batch}/").content.decode()
    assert f'href="/o/ORG3/batches/{run.batch}/"><code>{run.batch}</code></a>' in page
    assert "Reply of the master ORG1 to ORG3" in page
    # A reader of ORG3 alone sees whose changes its reply carries (it received them anyway).
    watcher = logged_in(user("watcher", "ORG3", role=ConsoleRole.OPERATOR))
    page = watcher.get(f"/o/ORG3/batches/{hold.batch}/").content.decode()
    assert f'href="/o/ORG3/batches/{run.batch}/"><code>{run.batch}</code></a>' in page
    assert "ORG1 (master): not shown" not in page

    holds.approve(hold.pk, user("branch", "ORG3"))
    story = batches.story(run.batch)
    (org3,) = [i for i in story.imports if i.organization.name == "ORG3"]
    assert org3.state == "done" and group_counts(story, "ORG3") == {"hidden": 8}
    assert "approved by branch at " in org3.line


def test_a_mass_delete_undone_by_the_origins_restore_brings_the_same_contacts_back(synced):
    """ORG2 deletes 8 people (a mass delete its administrator approves at the master); ORG1 and
    ORG3 hide them. ORG2 restores them from its backup within the grace period (the same
    GUIDs): every other organization shows the same contacts again, not new ones."""
    before = {name: contacts_of_org2(name) for name in ("ORG1", "ORG3")}
    hub = user("hub", "ORG1", "ORG2", "ORG3")
    set_guard(5)
    saved = delete_people(8)
    keys = {f"ORG2:{row['guid']}" for row in saved}
    delete_run = cycle(synced["ORG2"])
    hold = Hold.objects.get(batch=delete_run.batch)
    holds.approve(hold.pk, hub)
    for name in ("ORG2", "ORG1", "ORG3"):
        cycle(synced[name])
    for name in ("ORG1", "ORG3"):
        hidden = {k for k, (_, _, at) in contacts_of_org2(name).items() if at is not None}
        assert hidden == keys, name
    deleted = batches.story(delete_run.batch)
    assert "approved by hub" in deleted.lines[1]
    for name in ("ORG1", "ORG3"):
        assert line_of(deleted, name).startswith(f"{name}: 8 hidden at ")
        assert line_of(deleted, name).endswith("; 0 added")

    restore_people(saved)
    restore_run = cycle(synced["ORG2"])
    for name in ("ORG1", "ORG3", "ORG2", "ORG1", "ORG3"):
        cycle(synced[name])

    assert_converged(synced)
    for name in ("ORG1", "ORG3"):
        after = contacts_of_org2(name)
        assert after.keys() == before[name].keys(), name
        for key in keys:
            pk, guid, hidden_at = after[key]
            assert (pk, guid, hidden_at) == (before[name][key][0], before[name][key][1], None)
    restored = batches.story(restore_run.batch)
    assert (restored.master.upserts, restored.master.deletes) == (8, 0)
    assert restored.guard.holds == []
    for name in ("ORG1", "ORG3"):
        assert group_counts(restored, name) == {"restored": 8}
        assert line_of(restored, name).startswith(f"{name}: 8 restored at ")
        assert line_of(restored, name).endswith("; 0 added")

    body = logged_in(hub).get(f"/o/ORG2/batches/{restore_run.batch}/").content.decode()
    assert "ORG1: 8 restored at " in body and "ORG3: 8 restored at " in body
    assert body.count('class="op-restored"') == 2 and "Not shown" not in body


def test_a_batch_that_is_unknown_is_not_found(synced):
    with pytest.raises(batches.BatchNotFound):
        batches.story(uuid.uuid4())


@pytest.mark.parametrize("text", ["", "nope", "1234", "\x00" + str(uuid.UUID(int=1)), "x" * 100])
def test_it_refuses_what_is_not_a_batch_id(text):
    with pytest.raises(ValueError, match="Not a batch id"):
        batches.parse_batch(text)


# --- Queries -----------------------------------------------------------------------------------


def queries_of_story(batch) -> int:
    with CaptureQueriesContext(connection) as queries:
        batches.story(batch)
    return len(queries)


def test_the_number_of_queries_does_not_grow_with_the_entries(synced):
    # No guard holds the larger batch.
    AllowedRequestor.objects.filter(organization_name="ORG2").update(delete_percent=100)
    RequestorConfig.objects.update(import_delete_percent=100)
    rename("bulk26", "Renamed bulk26")
    delete_people(1)
    small = cycle(synced["ORG2"])
    for name in ("ORG1", "ORG3"):
        cycle(synced[name])
    for alias in ("bulk20", "bulk21", "bulk22", "bulk23"):
        rename(alias, f"Renamed {alias}")
    delete_people(12)
    large = cycle(synced["ORG2"])
    for name in ("ORG1", "ORG3"):
        cycle(synced[name])

    assert batches.story(large.batch).master.count == 16
    assert group_counts(batches.story(large.batch), "ORG3") == {"updated": 4, "hidden": 12}
    assert queries_of_story(large.batch) == queries_of_story(small.batch)


def test_the_number_of_queries_does_not_grow_with_the_organizations(synced):
    delete_people(1)
    before = cycle(synced["ORG2"])
    for name in ("ORG1", "ORG3"):
        cycle(synced[name])
    counted = queries_of_story(before.batch)
    for number in (4, 5):
        org = make_org(number, Role.REQUESTOR)
        AllowedRequestor.objects.create(
            master=synced.master, address=org.config.dn, organization_name=org.name
        )
        org.add()
        synced.orgs[org.name] = org
    sync_all(max_rounds=2)
    delete_people(1)
    after = cycle(synced["ORG2"])
    for name in ("ORG1", "ORG3", "ORG4", "ORG5"):
        cycle(synced[name])

    story = batches.story(after.batch)
    assert [i.organization.name for i in story.imports] == ["ORG1", "ORG3", "ORG4", "ORG5"]
    assert all(group_counts(story, i.organization.name) == {"hidden": 1} for i in story.imports)
    assert queries_of_story(after.batch) == counted


# --- The page, the API and the command ---------------------------------------------------------


@pytest.fixture
def approved(synced):
    """ORG2 deleted 8 of its people; the master held the batch, hub approved it, and ORG1 and
    ORG3 hid the contacts. The batch's run."""
    set_guard(5)
    delete_people(8)
    run = cycle(synced["ORG2"])
    hub = user("hub", "ORG1")
    holds.approve(Hold.objects.get(batch=run.batch).pk, hub)
    for name in ("ORG1", "ORG3"):
        cycle(synced[name])
    run.refresh_from_db()
    return run


def test_the_run_page_leads_to_the_story_with_every_part(approved):
    client = logged_in(user("everyone", "ORG1", "ORG2", "ORG3", role=ConsoleRole.OPERATOR))
    run_page = client.get(f"/o/ORG2/runs/{approved.pk}/").content.decode()
    link = f'href="/o/ORG2/batches/{approved.batch}/">This batch everywhere</a>'
    assert link in run_page

    body = client.get(f"/o/ORG2/batches/{approved.batch}/").content.decode()

    assert f'href="/o/ORG2/runs/{approved.pk}/">Run {approved.pk}</a>' in body
    assert 'id="batch-holds"' in body and "<strong>hub</strong>" in body
    assert "8 deletes of 30" in body and "approved by hub at" in body
    assert "ORG1 (master): stamped 0 upserts and 8 deletes" in body
    assert body.count('id="batch-org-') == 2
    assert "ORG1: 8 hidden at " in body and "ORG3: 8 hidden at " in body
    assert 'class="op-hidden"' in body and "Not shown" not in body


def test_the_message_and_held_pages_link_to_the_story(approved):
    client = logged_in(user("hub2", "ORG1", "ORG2"))
    message = approved.config.organization.messages.filter(kind="export").first()
    page = client.get(f"/o/ORG2/messages/{message.pk}/").content.decode()
    assert f'href="/o/ORG2/batches/{approved.batch}/">This batch everywhere</a>' in page

    held = client.get("/o/ORG1/held/").content.decode()
    assert f'href="/o/ORG1/batches/{approved.batch}/">This batch everywhere</a>' in held
    assert client.get(f"/o/ORG1/batches/{approved.batch}/").status_code == 200


def test_a_reader_of_one_organization_sees_its_part_only(approved):
    client = logged_in(user("branch", "ORG3", role=ConsoleRole.OPERATOR))

    body = client.get(f"/o/ORG3/batches/{approved.batch}/").content.decode()

    assert "ORG3: 8 hidden at " in body
    assert "Not shown: you cannot read ORG2." in body
    assert "Not shown: you cannot read ORG1." in body
    assert "ORG2: not shown (you cannot read ORG2)" in body
    assert "ORG1: not shown (you cannot read ORG1)" in body
    assert "ORG1 (master): not shown (you cannot read ORG1)" in body
    assert "hub" not in body and "8 deletes of 30" not in body
    assert f"/o/ORG2/runs/{approved.pk}/" not in body
    assert client.get(f"/o/ORG2/batches/{approved.batch}/").status_code == 404


def test_an_organization_the_batch_does_not_concern_finds_nothing(approved):
    from directory.factories import OrganizationFactory

    OrganizationFactory(name="ORG9")
    stranger = user("stranger", "ORG9")
    client = logged_in(stranger)

    assert client.get(f"/o/ORG9/batches/{approved.batch}/").status_code == 404
    assert client.get(f"/o/ORG3/batches/{approved.batch}/").status_code == 404
    assert token_client(stranger).get(f"{API}/batches/{approved.batch}/").status_code == 404


def test_the_page_answers_404_for_an_unknown_or_malformed_batch(synced):
    client = logged_in(user("everyone", "ORG1", "ORG2", "ORG3"))

    assert client.get(f"/o/ORG2/batches/{uuid.uuid4()}/").status_code == 404
    assert client.get("/o/ORG2/batches/not-a-batch/").status_code == 404


def test_anonymous_visitors_are_sent_to_the_login_page(approved):
    from django.test import Client

    response = Client().get(f"/o/ORG2/batches/{approved.batch}/")

    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_the_api_tells_the_story(approved):
    api = token_client(user("everyone", "ORG1", "ORG2", "ORG3", role=ConsoleRole.OPERATOR))

    body = api.get(f"{API}/batches/{approved.batch}/").json()

    assert (body["batch"], body["kind"]) == (str(approved.batch), "export")
    assert body["origin"]["organization"] == "ORG2" and body["origin"]["run"]["id"] == approved.pk
    assert body["origin"]["run"]["status"] == "ok"
    (hold,) = body["guard"]["holds"]
    assert (hold["decision"], hold["decided_by"], hold["deletes"]) == ("approved", "hub", 8)
    assert (body["master"]["upserts"], body["master"]["deletes"]) == (0, 8)
    assert len(body["master"]["deleted"]) == 8
    orgs = {row["organization"]: row for row in body["organizations"]}
    assert set(orgs) == {"ORG1", "ORG3"}
    for row in orgs.values():
        assert row["state"] == "done"
        assert [(c["op"], c["count"]) for c in row["changes"]] == [("hidden", 8)]
        assert row["line"].startswith(f"{row['organization']}: 8 hidden at ")
    assert body["lines"][1].startswith("ORG1 (guard): held at ")


def test_the_api_shows_a_reader_of_one_organization_its_part_only(approved):
    api = token_client(user("branch", "ORG3", role=ConsoleRole.OPERATOR))

    body = api.get(f"{API}/batches/{approved.batch}/").json()

    assert body["origin"]["shown"] is False and body["origin"]["run"] is None
    assert body["origin"]["parts"] == []
    assert body["guard"] == {
        "shown": False,
        "holds": [],
        "quarantined": False,
        "quarantine_reason": "",
    }
    assert body["master"]["shown"] is False and body["master"]["deleted"] == []
    assert body["master"]["deletes"] is None
    orgs = {row["organization"]: row for row in body["organizations"]}
    assert orgs["ORG1"]["shown"] is False and orgs["ORG1"]["changes"] == []
    assert orgs["ORG3"]["shown"] is True and orgs["ORG3"]["changes"][0]["count"] == 8
    assert "hub" not in str(body)


def test_the_api_refuses_anonymous_callers_and_bad_ids(approved):
    from rest_framework.test import APIClient

    api = token_client(user("everyone", "ORG1", "ORG2", "ORG3"))

    assert APIClient().get(f"{API}/batches/{approved.batch}/").status_code == 401
    response = api.get(f"{API}/batches/not-a-batch/")
    assert response.status_code == 400 and "Not a batch id" in response.json()["batch"][0]
    assert api.get(f"{API}/batches/{uuid.uuid4()}/").status_code == 404
    assert api.get(f"{API}/batches/%00/").status_code == 400


def test_the_command_prints_the_story(approved):
    out = io.StringIO()

    call_command("batch", str(approved.batch), stdout=out)

    text = out.getvalue()
    assert text.startswith(f"Export batch {approved.batch}\n")
    assert f"ORG2: run {approved.pk} (" in text
    assert "approved by hub at" in text
    assert "ORG1 (master): stamped 0 upserts and 8 deletes" in text
    assert "ORG3: 8 hidden at " in text and "8 hidden (grace period) at " in text


@pytest.mark.parametrize("value", ["nope", str(uuid.UUID(int=7))])
def test_the_command_says_what_is_wrong(synced, value):
    with pytest.raises(CommandError, match="Not a batch id|No batch"):
        call_command("batch", value, stdout=io.StringIO())


def test_a_batch_whose_messages_left_the_archive_says_so(synced):
    from transport.models import Message

    delete_people(1)
    run = cycle(synced["ORG2"])
    Message.objects.filter(batch=run.batch).delete()
    client = logged_in(user("everyone", "ORG1", "ORG2", "ORG3"))

    story = batches.story(run.batch)
    body = client.get(f"/o/ORG2/batches/{run.batch}/").content.decode()

    assert story.purged and story.master is None and story.imports == []
    assert story.lines[1].startswith("Its messages are no longer in the archive")
    assert "no longer in the archive" in body


def test_the_schema_documents_the_story(synced):
    client = token_client(user("everyone", "ORG1"))

    schema = client.get("/api/schema/", {"format": "json"}).json()

    operation = schema["paths"]["/api/v1/batches/{batch}/"]["get"]
    assert set(operation["responses"]) == {"200", "400", "404"}
    assert "BatchStory" in schema["components"]["schemas"]
