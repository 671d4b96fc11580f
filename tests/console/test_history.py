"""The history of an entry across organizations (console.history): the timeline of one person
of ORG3 renamed twice, moved out of its export scope and back, then deleted, as the master
(ORG1) stamped it and as ORG1 and ORG2 imported it; what retention leaves out; the command, the
API and the pages; who may see what; and the bound on queries.

The scenario (tests/engine/conftest.py): ORG1 runs the master and a requestor, ORG2 and ORG3
requestors; ORG3 rewrites its addresses to @org3.com and exports its Recipients container, not
its Contractors container. The story is played once per module, inside the module's rolled-back
transaction; each test runs in its own savepoint on top of it.
"""

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from console import history
from console.constants import ConsoleRole
from directory import changes
from directory.constants import Role
from directory.models import Organization, Recipient
from master.housekeeping import compact_ledger
from master.models import AllowedRequestor, LedgerEntry
from requestor.constants import Trigger
from requestor.cycle import run_cycle
from requestor.housekeeping import compact_imported_changes
from requestor.models import ImportedChange, Run
from tests.console.conftest import logged_in, make_user, token_client
from tests.engine.conftest import make_org
from tests.engine.helpers import cycle, load_scenario, person, synced_fixtures
from transport.inbox import pump

synced_base, synced = synced_fixtures()

ORGS = ("ORG3", "ORG2", "ORG1")


def everyone_cycles(scenario) -> None:
    for name in ORGS:
        cycle(scenario[name])


def cycle_by(org, user) -> Run:
    """An Execute Now of `org` by `user`, delivered and processed."""
    run = run_cycle(org.config.pk, Trigger.MANUAL, user)
    pump()
    org.refresh()
    return run


@pytest.fixture(scope="module")
def story_base(synced_base, django_db_blocker):
    """ORG3's first person renamed (by alice's Execute Now), renamed again with a new title,
    moved to the Contractors container (out of scope) where its phone changes, moved back,
    then deleted; every organization cycles after each step."""
    with django_db_blocker.unblock():
        scenario = load_scenario()
        alice = make_user("alice", {scenario["ORG3"].organization: ConsoleRole.ADMINISTRATOR})
        ann = person("org3user1")
        ann.display_name = "Ann Example"
        changes.save_recipient(ann)
        cycle_by(scenario["ORG3"], alice)
        cycle(scenario["ORG2"])
        cycle(scenario["ORG1"])
        ann.display_name, ann.title = "Ann Example-Smith", "Director"
        changes.save_recipient(ann)
        everyone_cycles(scenario)
        ann.container, ann.phone = scenario["ORG3"].contractors, "+1 555 0100"
        changes.save_recipient(ann)
        everyone_cycles(scenario)
        ann.container = scenario["ORG3"].recipients
        changes.save_recipient(ann)
        everyone_cycles(scenario)
        changes.delete_recipients([ann])
        everyone_cycles(scenario)
        yield f"ORG3:{ann.guid}"


@pytest.fixture
def key(story_base, synced) -> str:
    return story_base


def org(name: str) -> Organization:
    return Organization.objects.get(name=name)


def reader_of(*names: str, username: str = "oscar"):
    return make_user(username, {org(name): ConsoleRole.OPERATOR for name in names})


def can_read(*names: str):
    readable = {org(name).pk for name in names}
    return readable.__contains__


def changes_at(entry: history.History, place: str, organization: str) -> list[str]:
    return [
        event.change
        for event in entry.events
        if event.place == place and event.organization == organization
    ]


def versions(entry: history.History) -> list[history.Event]:
    return [event for event in entry.events if event.place == history.MASTER]


def contact(name: str, key: str) -> Recipient:
    return Recipient.objects.get(organization__name=name, global_key=key)


# --- The timeline -------------------------------------------------------------------------------


def test_it_follows_an_entry_across_three_organizations(key):
    entry = history.history(key)

    assert changes_at(entry, history.MASTER, "ORG1") == [
        "created",
        "updated",
        "updated",
        "deleted",
        "returned",
        "deleted",
    ]
    imported = ["added", "updated", "updated", "hidden", "restored", "hidden"]
    assert changes_at(entry, history.IMPORT, "ORG2") == imported
    assert changes_at(entry, history.IMPORT, "ORG1") == imported
    assert [event.at for event in entry.events] == sorted(event.at for event in entry.events)
    assert (entry.display_name, entry.address) == ("Ann Example-Smith", "org3user1@org3.com")
    assert entry.source is None and entry.deleted_at is not None
    assert entry.origin_note.startswith("Deleted in ORG3 on ")
    assert [(c.organization.name, c.hidden_at is not None) for c in entry.contacts] == [
        ("ORG1", True),
        ("ORG2", True),
    ]
    assert entry.cuts == [] and entry.not_shown == []


def test_each_version_says_what_it_changed_and_from_which_message_and_run(key):
    stamped = versions(history.history(key))

    assert [event.attributes for event in stamped] == [
        [],
        ["display_name"],
        ["display_name", "title"],
        [],
        ["phone"],  # changed while out of scope: compared with its last live version
        [],
    ]
    usns = [event.master_usn for event in stamped]
    assert usns == sorted(usns) and len(set(usns)) == 6
    assert stamped[2].attribute_labels == ["display name", "title"]
    assert "Changed: display name, title" in stamped[2].text
    renamed = stamped[1]
    assert renamed.run.requested_by.username == "alice"
    assert renamed.run.trigger == Trigger.MANUAL
    assert renamed.run.batch == renamed.batch
    ledger = LedgerEntry.objects.get(global_key=key, usn=renamed.master_usn)
    assert renamed.links[0].href == reverse(
        "console:message", kwargs={"org": "ORG1", "pk": ledger.message_id}
    )
    assert renamed.links[1].href == reverse(
        "console:run", kwargs={"org": "ORG3", "pk": renamed.run.pk}
    )


def test_each_import_says_what_it_did_with_its_run_reply_and_contact(key):
    imports = [
        e
        for e in history.history(key).events
        if e.place == history.IMPORT and e.organization == "ORG2"
    ]

    assert [event.attributes for event in imports] == [
        [],
        ["display_name"],
        ["display_name", "title"],
        [],
        ["phone"],
        [],
    ]
    assert imports[3].text.startswith("Hidden in ORG2 for its grace period")
    assert imports[4].text.startswith("Restored in ORG2: the same contact is shown again")
    hidden = imports[5]
    assert hidden.run.config.organization.name == "ORG2"
    assert [link.view for link in hidden.links] == ["message", "run", "recipient"]
    assert hidden.links[2].pk == contact("ORG2", key).pk
    assert hidden.master_usn == versions(history.history(key))[-1].master_usn


def test_it_compares_each_version_with_the_one_before(key):
    """A hand-made ledger of an entry from an organization of another installation."""
    scenario = load_scenario()
    remote = "ORG9:00000000-0000-4000-8000-000000000009"
    first = {"display_name": "Zoe", "primary_smtp": "zoe@org9.example", "title": "Clerk"}
    versions_written = [
        ("upsert", first),
        ("upsert", first),  # stamped again with the same General attributes
        ("upsert", {**first, "title": "Manager", "city": "Springfield"}),
        ("delete", {}),
        ("upsert", {**first, "title": "Manager", "phone": "+1 555 0199"}),
    ]
    for number, (op, attrs) in enumerate(versions_written, 1):
        LedgerEntry.objects.create(
            master=scenario.master,
            usn=scenario.master.usn + number,
            global_key=remote,
            origin="ORG9",
            op=op,
            source_usn=number,
            attrs=attrs,
        )

    entry = history.history(remote)

    assert [(event.change, event.attributes) for event in entry.events] == [
        ("created", []),
        ("restated", []),
        ("updated", ["title", "city"]),
        ("deleted", []),
        ("returned", ["phone", "city"]),  # compared with the last live version
    ]
    assert [event.label for event in entry.events] == [
        "created",
        "stamped again",
        "updated",
        "deleted",
        "back",
    ]
    assert entry.events[2].source_usn == 3
    assert entry.origin_note.startswith("ORG9 is not an organization of this installation")
    assert (entry.display_name, entry.address) == ("Zoe", "zoe@org9.example")


def test_it_says_where_retention_cut_the_history(key):
    old = timezone.now() - timedelta(days=100)
    LedgerEntry.objects.update(created_at=old)
    ImportedChange.objects.update(at=old)
    compact_ledger()
    compact_imported_changes(days=90)

    entry = history.history(key)

    assert [(e.place, e.organization, e.change) for e in entry.events] == [
        ("master", "ORG1", "deleted"),
        ("import", "ORG2", "hidden"),
        ("import", "ORG1", "hidden"),
    ]
    assert [(cut.place, cut.organization, cut.days) for cut in entry.cuts] == [
        ("master", "ORG1", 60),
        ("import", "ORG1", 90),
        ("import", "ORG2", 90),
    ]
    assert "keeps every version for its tombstone lifetime (60 days" in entry.cuts[0].text


def test_the_earliest_version_kept_is_not_called_created_when_older_ones_may_be_gone(key):
    bob = person("org3user2")
    old = timezone.now() - timedelta(days=100)
    LedgerEntry.objects.update(created_at=old)
    compact_ledger()
    young_source = history.history(f"ORG3:{bob.guid}")
    with changes.writing():  # (a recipient made before the ledger's horizon)
        Recipient.objects.filter(pk=bob.pk).update(created_at=old)

    old_source = history.history(f"ORG3:{bob.guid}")

    assert changes_at(young_source, history.MASTER, "ORG1") == ["created"]
    assert changes_at(old_source, history.MASTER, "ORG1") == ["earliest"]
    assert versions(old_source)[0].text.startswith("The earliest version ORG1's ledger keeps")
    assert [cut.place for cut in old_source.cuts] == ["master"]


def test_an_own_recipient_never_exported_has_its_source_and_no_versions(key):
    secret = load_scenario()["ORG3"].add(alias="secret", display_name="Secret", trust_level=99)

    entry = history.recipient_history(secret)

    assert entry.key == f"ORG3:{secret.guid}"
    assert entry.source == secret and entry.found
    assert entry.events == []
    assert entry.notes[0].startswith("No master of this installation holds a version of it")


# --- Who may see what ---------------------------------------------------------------------------


def test_a_reader_of_one_organization_sees_only_its_imports(key):
    entry = history.history(key, can_read=can_read("ORG2"))

    assert {(event.place, event.organization) for event in entry.events} == {("import", "ORG2")}
    assert [c.organization.name for c in entry.contacts] == ["ORG2"]
    assert entry.not_shown == ["ORG1", "ORG3"]
    assert entry.origin_note == "Not shown: you cannot read ORG3."
    assert entry.deleted_at is None
    assert entry.notes == ["Not shown: what ORG1 and ORG3 hold of it (you cannot read them)."]


def test_a_reader_of_the_master_sees_its_versions_but_not_the_origins_runs(key):
    entry = history.history(key, can_read=can_read("ORG1", "ORG2"))

    stamped = versions(entry)
    assert len(stamped) == 6
    assert all(event.run is None for event in stamped)
    assert all([link.view for link in event.links] == ["message"] for event in stamped)
    assert entry.not_shown == ["ORG3"]


def test_an_entry_only_others_can_see_is_not_found_by_its_key(key):
    secret = load_scenario()["ORG3"].add(alias="secret", display_name="Secret", trust_level=99)

    lookup = history.look_up(org("ORG2"), f"ORG3:{secret.guid}", can_read=can_read("ORG2"))

    assert lookup.history is None and lookup.matches == []


# --- Finding the entry --------------------------------------------------------------------------


def test_it_finds_the_entry_by_address_name_or_key_in_an_organization(key):
    by_address = history.look_up(org("ORG2"), "ORG3USER1@org3.com")
    by_name = history.look_up(org("ORG2"), "Ann Example-Smith")
    by_key = history.look_up(org("ORG2"), key.lower())

    assert by_address.history.key == by_name.history.key == by_key.history.key == key


def test_it_lists_the_matches_when_the_question_names_several(key):
    lookup = history.look_up(org("ORG2"), "ORG3 User")

    assert lookup.narrow and lookup.history is None
    assert {match.key for match in lookup.matches} == {
        f"ORG3:{person('org3user2').guid}",
        f"ORG3:{person('org3user3').guid}",
    }


@pytest.mark.parametrize("query", ["", "a\x00b", "y" * 300], ids=["empty", "nul", "too-long"])
def test_it_refuses_a_bad_question(key, query):
    with pytest.raises(history.QueryError):
        history.look_up(org("ORG2"), query)


# --- The bound on queries -----------------------------------------------------------------------


def test_it_reads_no_more_when_versions_and_organizations_grow(key):
    scenario = load_scenario()
    bob = person("org3user2")
    bob_key = f"ORG3:{bob.guid}"

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            entry = history.as_dict(history.history(bob_key))  # (runs and who started them)
        return len(captured.captured_queries), len(entry["events"])

    before, events_before = queries()
    for number in range(4):
        bob.display_name, bob.office = f"Bob {number}", f"Room {number}"
        changes.save_recipient(bob)
        # Each run started by someone else: who started it is read with the run.
        for name in ORGS:
            cycle_by(scenario[name], make_user(f"user{number}{name}"))
    org4 = make_org(4, Role.REQUESTOR)
    org4.add()
    AllowedRequestor.objects.create(
        master=scenario.master, address=org4.config.dn, organization_name="ORG4"
    )
    cycle(org4)
    cycle(org4)
    after, events_after = queries()

    assert events_after == events_before + 4 * 3 + 1
    assert after == before
    assert before <= 12


# --- The command --------------------------------------------------------------------------------


def run_history(*args) -> str:
    out = io.StringIO()
    call_command("history", *args, stdout=out)
    return out.getvalue()


def test_the_command_prints_the_timeline(key):
    output = run_history("org2", "Ann", "Example-Smith")

    assert output.startswith("History of Ann Example-Smith <org3user1@org3.com>\n")
    assert f"Global key {key}, from ORG3." in output
    assert "Source: Deleted in ORG3 on " in output
    assert "Contact in ORG2: Ann Example-Smith <org3user1@org3.com>, hidden since" in output
    assert "master ORG1   Changed: display name, title; ORG1 stamped master USN" in output
    assert "ORG2          Restored in ORG2: the same contact is shown again" in output
    assert "(Execute Now by alice)" in output
    assert output.count("\n20") == 18  # six versions, six imports in each of two organizations


def test_the_command_lists_the_matches_with_their_keys(key):
    output = run_history("ORG2", "ORG3 User")

    assert output.startswith("2 entries match 'ORG3 User': narrow the question")
    assert f"ORG3:{person('org3user2').guid}  ORG3 User 2 <org3user2@org3.com>" in output


def test_the_command_says_when_nothing_matches(key):
    assert run_history("ORG2", "Nobody At All").startswith("Nothing matches 'Nobody At All'.")


def test_the_command_refuses_an_unknown_organization_and_a_bad_question(key):
    with pytest.raises(CommandError, match=r"No organization named 'ORG9' \(known: ORG1, ORG2"):
        run_history("ORG9", "anyone")
    with pytest.raises(CommandError, match="cannot contain NUL"):
        run_history("OR\x00G2", "anyone")
    with pytest.raises(CommandError, match="NUL"):
        run_history("ORG2", "a\x00b")


# --- The API ------------------------------------------------------------------------------------


def api_url(name: str = "ORG2") -> str:
    return f"/api/v1/organizations/{name}/history/"


def recipient_api_url(pk: int) -> str:
    return f"/api/v1/recipients/{pk}/history/"


def test_the_api_answers_the_history_as_json(key):
    client = token_client(reader_of("ORG1", "ORG2", "ORG3"))

    body = client.get(api_url(), {"q": key}).json()

    entry = body["history"]
    assert entry["key"] == key and body["matches"] == []
    assert [e["change"] for e in entry["events"] if e["place"] == "master"][:3] == [
        "created",
        "updated",
        "updated",
    ]
    renamed = [e for e in entry["events"] if e["place"] == "master"][1]
    assert renamed["attributes"] == ["display_name"]
    assert renamed["run"]["requested_by"] == "alice" and renamed["run"]["trigger"] == "manual"
    assert renamed["links"][0]["href"].startswith("/o/ORG1/messages/")
    assert entry["contacts"][1]["organization"] == "ORG2"
    assert entry["deleted_at"] is not None


def test_the_api_answers_a_recipients_history(key):
    client = token_client(reader_of("ORG2"))

    response = client.get(recipient_api_url(contact("ORG2", key).pk))

    assert response.status_code == 200
    body = response.json()
    assert body["key"] == key
    assert {e["organization"] for e in body["events"]} == {"ORG2"}
    assert body["not_shown"] == ["ORG1", "ORG3"]


def test_the_api_lists_the_matches_when_the_question_names_several(key):
    body = token_client(reader_of("ORG2")).get(api_url(), {"q": "ORG3 User"}).json()

    assert body["history"] is None and len(body["matches"]) == 2


@pytest.mark.parametrize(
    "query",
    [{}, {"q": ""}, {"q": "z" * 257}],
    ids=["none", "empty", "long"],
)
def test_the_api_refuses_a_bad_question_with_400(key, query):
    response = token_client(reader_of("ORG2")).get(api_url(), query)

    assert response.status_code == 400
    assert "q" in response.json()


def test_the_api_hides_histories_from_outsiders_and_anonymous_callers(key):
    outsider = token_client(reader_of("ORG3"))
    pk = contact("ORG2", key).pk

    assert outsider.get(api_url(), {"q": key}).status_code == 404
    assert outsider.get(recipient_api_url(pk)).status_code == 404
    assert APIClient().get(api_url(), {"q": key}).status_code == 401
    assert APIClient().get(recipient_api_url(pk)).status_code == 401


def test_the_api_documents_both_actions(key):
    client = token_client(reader_of("ORG2"))

    schema = client.get("/api/schema/", {"format": "json"}).json()

    assert "/api/v1/organizations/{name}/history/" in schema["paths"]
    assert "/api/v1/recipients/{id}/history/" in schema["paths"]
    assert "HistoryEvent" in schema["components"]["schemas"]


# --- The console --------------------------------------------------------------------------------


def recipient_page(pk: int, name: str = "ORG2") -> str:
    return reverse("console:recipient", kwargs={"org": name, "pk": pk})


def history_page(pk: int, name: str = "ORG2") -> str:
    return reverse("console:recipient-history", kwargs={"org": name, "pk": pk})


def search_page(name: str = "ORG2") -> str:
    return reverse("console:history", kwargs={"org": name})


def test_the_recipient_page_leads_to_its_history(key):
    client = logged_in(reader_of("ORG1", "ORG2", "ORG3"))
    pk = contact("ORG2", key).pk

    page = client.get(recipient_page(pk)).content.decode()
    response = client.get(history_page(pk))

    assert f'href="{history_page(pk)}"' in page
    assert response.status_code == 200
    body = response.content.decode()
    assert body.count('<tr class="history-master') == 6
    assert body.count('<tr class="history-import') == 12
    assert "display name, title" in body
    assert "Execute Now by alice" in body
    run = versions(history.history(key))[1].run
    assert reverse("console:run", kwargs={"org": "ORG3", "pk": run.pk}) in body
    assert recipient_page(contact("ORG1", key).pk, "ORG1") in body


def test_the_history_page_finds_an_entry_and_lists_several_matches(key):
    client = logged_in(reader_of("ORG2"))

    found = client.get(search_page(), {"q": "ann example-smith"}).content.decode()
    several = client.get(search_page(), {"q": "ORG3 User"}).content.decode()
    bad = client.get(search_page(), {"q": "z" * 257})

    assert 'id="history-events"' in found and 'class="history-master' not in found
    assert "Not shown: what ORG1 and ORG3 hold of it" in found
    assert 'id="history-narrow"' in several
    assert f"?q=ORG3%3A{person('org3user2').guid}" in several
    assert bad.status_code == 200 and bad.context["history"] is None
    assert 'id="history-error"' in bad.content.decode()


def test_the_explainer_links_to_the_history(key):
    client = logged_in(reader_of("ORG2"))

    body = client.get(
        reverse("console:explain", kwargs={"org": "ORG2"}), {"q": "Ann Example-Smith"}
    ).content.decode()

    assert f"{search_page()}?q={key.replace(':', '%3A')}" in body


def test_the_pages_are_for_readers_of_the_organization_only(key):
    pk = contact("ORG2", key).pk
    outsider = logged_in(reader_of("ORG3"))
    anonymous = logged_in(reader_of("ORG2", username="olga"))
    anonymous.logout()

    assert outsider.get(history_page(pk)).status_code == 404
    assert outsider.get(search_page(), {"q": key}).status_code == 404
    # A recipient of another organization is not found under this one's name.
    assert outsider.get(history_page(contact("ORG1", key).pk, "ORG3")).status_code == 404
    for target in (history_page(pk), f"{search_page()}?q=x"):
        response = anonymous.get(target)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
