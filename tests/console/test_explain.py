""" "Why is X (not) here?" (console.explain): one test per reason an entry is, or is not, in an
organization's address book, then the command, the API, the console pages, who may see what,
and the bound on queries.

The scenario (tests/engine/conftest.py): ORG1 runs the master and a requestor, ORG2 exports up to
trust level 50 with the suffix " (ORG2)", ORG3 exports up to trust level 10 and rewrites its
addresses to @org3.com; each exports the mailboxes and lists of its Recipients container, not
its Contractors container, and imports into its InterOrg container.
"""

import io

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from console import explain
from console.constants import ConsoleRole
from directory import changes
from directory.constants import Kind
from directory.factories import RecipientFactory
from directory.models import Organization
from master import quarantine
from master.models import AllowedRequestor, GlobalEntry
from requestor.models import Conflict, FilteredEntry, RequestorConfig
from tests.console.conftest import logged_in, make_user, token_client
from tests.engine.helpers import add_many, cycle, person, synced_fixtures
from transport.models import Hold

synced_base, synced = synced_fixtures()

Status, Verdict = explain.Status, explain.Verdict


def ask(org: str, query: str, **options) -> explain.Explanation:
    return explain.explain(Organization.objects.get(name=org), query, **options)


def trace_of(org: str, query: str, **options) -> explain.Trace:
    result = ask(org, query, **options)
    assert len(result.traces) == 1, [m.key for m in result.matches]
    return result.traces[0]


def step(trace: explain.Trace, key: str) -> explain.Step:
    return next(s for s in trace.steps if s.key == key)


def statuses(trace: explain.Trace) -> dict[str, str]:
    return {s.key: s.status for s in trace.steps}


def blocked_by(trace: explain.Trace, key: str) -> explain.Step:
    """The trace says the entry is not here, decided by step `key`, which says what to do."""
    assert trace.verdict.kind == Verdict.NOT_HERE, trace.verdict
    assert trace.verdict.step == key, trace.verdict
    decided = step(trace, key)
    assert decided.status == Status.BLOCKS
    assert trace.verdict.reason == decided.found
    assert trace.verdict.fix == decided.fix != ""
    return decided


def add_to_org3(synced, **values):
    org3 = synced["ORG3"]
    return org3.add(**values)


# --- One test per reason ------------------------------------------------------------------------


def test_it_says_an_exported_and_synced_person_is_here(synced):
    trace = trace_of("ORG2", "ORG3 User 1")

    assert trace.verdict.kind == Verdict.HERE
    assert set(statuses(trace).values()) == {Status.OK}
    assert trace.match.key == f"ORG3:{person('org3user1').guid}"
    assert step(trace, "scope").facts["in_scope"] is True
    assert step(trace, "master").facts["deleted"] is False
    assert step(trace, "contact").facts["up_to_date"] is True
    assert "entries of the master (ORG1)" in trace.match.found_in


def test_it_finds_a_person_by_the_address_it_has_here_or_at_its_origin(synced):
    exported = trace_of("ORG2", "ORG3USER1@org3.com")
    at_origin = trace_of("ORG2", "org3user1@org3.example")

    assert exported.match.key == at_origin.match.key
    assert exported.verdict.kind == at_origin.verdict.kind == Verdict.HERE


def test_it_says_a_container_is_not_exported_and_the_contact_leaves(synced):
    moved = person("org3user1")
    moved.container = synced["ORG3"].contractors
    changes.save_recipient(moved)
    cycle(synced["ORG3"])

    leaving = trace_of("ORG2", "ORG3 User 1")
    cycle(synced["ORG2"])
    gone = trace_of("ORG2", "ORG3 User 1")

    assert leaving.verdict.kind == Verdict.LEAVING
    assert leaving.verdict.step == "scope"
    assert step(leaving, "master").facts["deleted"] is True
    scope = blocked_by(gone, "scope")
    assert "/o=ORG3/ou=Site3/cn=Contractors is not exported" in scope.found
    assert "exported containers on the Export Config page of ORG3" in scope.fix
    assert any(link.view == "export-config" for link in scope.links)


def test_it_says_a_kind_is_not_exported_from_the_container(synced):
    add_to_org3(synced, alias="printer", display_name="Hall Printer", kind=Kind.CUSTOM_RECIPIENT)
    cycle(synced["ORG3"])
    cycle(synced["ORG2"])

    scope = blocked_by(trace_of("ORG2", "Hall Printer"), "scope")

    assert "custom recipient" in scope.found
    assert "mailboxes, distribution lists" in scope.found
    assert scope.fix.startswith("Check custom recipients")
    assert scope.facts["kinds_exported"] == [Kind.MAILBOX, Kind.DISTRIBUTION_LIST]


def test_it_says_the_trust_level_is_above_the_threshold(synced):
    add_to_org3(synced, alias="vip", display_name="Very Important", trust_level=20)
    cycle(synced["ORG3"])
    cycle(synced["ORG2"])

    scope = blocked_by(trace_of("ORG2", "Very Important"), "scope")

    assert "trust level 20 is above the trust level ORG3 exports (10)" in scope.found
    assert (scope.facts["trust_level"], scope.facts["threshold"]) == (20, 10)
    assert "to 10 or less" in scope.fix


def test_it_says_a_person_is_hidden_from_other_organizations(synced):
    hidden = person("org3user2")
    hidden.hidden_from_others = True
    changes.save_recipient(hidden)
    cycle(synced["ORG3"])
    cycle(synced["ORG2"])

    scope = blocked_by(trace_of("ORG2", "ORG3 User 2"), "scope")

    assert "hidden from other organizations" in scope.found
    assert scope.facts["hidden_from_others"] is True
    assert not synced["ORG2"].contacts().filter(global_key__endswith=str(hidden.guid)).exists()


def test_it_says_an_imported_contact_is_never_exported_again(synced):
    # A contact ORG3 imported from a partner's master: ORG9 is not in this installation.
    contact = RecipientFactory(
        container=synced["ORG3"].imported,
        kind=Kind.CUSTOM_RECIPIENT,
        alias="partner",
        display_name="Partner Person",
        primary_smtp="partner@elsewhere.example",
        origin_organization="ORG9",
        global_key="ORG9:00000000-0000-0000-0000-000000000009",
        master_usn=1,
    )
    cycle(synced["ORG3"])
    cycle(synced["ORG2"])

    trace = trace_of("ORG2", "partner@elsewhere.example")
    scope = blocked_by(trace, "scope")

    assert "ORG3 holds it only as a contact imported from ORG9" in scope.found
    assert step(trace, "origin").status == Status.UNKNOWN
    assert not GlobalEntry.objects.filter(global_key=contact.global_key).exists()


def test_it_says_a_new_person_is_not_exported_yet(synced):
    add_to_org3(synced, alias="nina", display_name="Nina New")

    waiting = trace_of("ORG2", "nina@org3.com")
    cycle(synced["ORG3"])
    cycle(synced["ORG2"])
    arrived = trace_of("ORG2", "nina@org3.com")

    assert waiting.verdict.kind == Verdict.NEXT_CYCLE
    assert waiting.verdict.step == "scope"
    assert waiting.match.key == f"ORG3:{person('nina').guid}"
    assert "not exported yet" in waiting.verdict.reason
    assert step(waiting, "master").status == Status.INFO
    assert arrived.verdict.kind == Verdict.HERE


def test_it_finds_a_person_not_exported_yet_by_the_name_the_others_will_see(synced):
    synced["ORG2"].add(alias="sam", display_name="Sam Suffix")

    trace = trace_of("ORG3", "Sam Suffix (ORG2)")

    assert trace.match.key == f"ORG2:{person('sam').guid}"
    assert trace.verdict.kind == Verdict.NEXT_CYCLE


def test_it_says_a_person_deleted_at_its_origin_has_a_tombstone_at_the_master(synced):
    gone = person("org3user3")
    key = f"ORG3:{gone.guid}"
    changes.delete_recipients([gone])
    cycle(synced["ORG3"])

    leaving = trace_of("ORG2", "org3user3@org3.com")
    cycle(synced["ORG2"])
    by_key = trace_of("ORG2", key)

    assert leaving.verdict.kind == Verdict.LEAVING
    assert leaving.verdict.step == "origin"
    master = step(by_key, "master")
    assert master.status == Status.BLOCKS
    assert master.facts["deleted"] is True
    assert "tombstone" in master.found
    origin = blocked_by(by_key, "origin")
    assert "deleted in ORG3" in origin.found
    contact = step(by_key, "contact")
    assert (contact.facts["present"], contact.facts["hidden"]) == (False, True)
    assert "is hidden since" in contact.found and "grace period of 7 days" in contact.found


def test_it_says_the_origin_is_quarantined_at_the_master(synced):
    requestor = AllowedRequestor.objects.get(organization_name="ORG3")
    quarantine.quarantine(requestor, "Checked by hand.")
    add_to_org3(synced, alias="quentin", display_name="Quentin Waits")
    cycle(synced["ORG3"])
    cycle(synced["ORG2"])

    master = blocked_by(trace_of("ORG2", "Quentin Waits"), "master")

    assert "ORG3 is quarantined on the master" in master.found
    assert "Checked by hand." in master.found
    assert master.fix == "Release it on the Held batches page of ORG1."
    assert master.links[0].href == reverse("console:held", kwargs={"org": "ORG1"})


def test_it_says_a_batch_of_the_origin_is_held_at_the_master(synced):
    AllowedRequestor.objects.filter(organization_name="ORG3").update(delete_limit=0)
    changes.delete_recipients([person("org3user3")])
    add_to_org3(synced, alias="hedda", display_name="Hedda Held")
    cycle(synced["ORG3"])
    assert Hold.objects.filter(decision=Hold.Decision.PENDING).exists()

    master = blocked_by(trace_of("ORG2", "Hedda Held"), "master")

    assert master.found.startswith("A batch of ORG3 is held at the master")
    assert master.fix == "Approve or reject it on the Held batches page of ORG1."


def test_it_says_this_requestor_has_not_applied_the_masters_usn_yet(synced):
    add_to_org3(synced, alias="bea", display_name="Bea Behind")
    cycle(synced["ORG3"])

    trace = trace_of("ORG2", "Bea Behind")

    assert trace.verdict.kind == Verdict.NEXT_CYCLE
    assert trace.verdict.step == "requestor"
    requestor = step(trace, "requestor")
    assert requestor.status == Status.WAITING
    entry_usn = step(trace, "master").facts["entry_usn"]
    assert requestor.facts["master_usn"] < entry_usn
    assert f"this entry is at {entry_usn}" in requestor.found
    assert step(trace, "scope").status == Status.OK


def configure_import(**values) -> None:
    config = RequestorConfig.objects.get(organization__name="ORG2")
    for name, value in values.items():
        setattr(config, name, value)
    config.full_clean()
    config.save()


def test_it_says_the_domain_is_not_imported(synced):
    configure_import(import_all_domains=False, import_domains="org1.example")
    cycle(synced["ORG2"])

    trace = trace_of("ORG2", "org3user1@org3.com")
    imported = blocked_by(trace, "import")

    assert "Its domain org3.com is not among the domains ORG2 imports (org1.example)" in (
        imported.found
    )
    assert "Add org3.com to 'domains to import'" in imported.fix
    assert imported.facts["filtered"]["reason"] == FilteredEntry.Reason.DOMAIN
    assert "entries ORG2 does not import" in trace.match.found_in


def test_it_says_the_address_is_excluded(synced):
    configure_import(excluded_addresses="org3user2@org3.com")
    before = trace_of("ORG2", "org3user2@org3.com")
    cycle(synced["ORG2"])

    imported = blocked_by(trace_of("ORG2", "org3user2@org3.com"), "import")

    assert before.verdict.kind == Verdict.LEAVING
    assert "org3user2@org3.com is among the addresses ORG2 never imports" in imported.found
    assert imported.facts["excluded_address"] is True
    assert imported.facts["filtered"]["reason"] == FilteredEntry.Reason.ADDRESS


def test_it_says_the_organization_is_excluded(synced):
    configure_import(excluded_organizations="ORG3")
    cycle(synced["ORG2"])

    imported = blocked_by(trace_of("ORG2", "ORG3 User 2"), "import")

    assert "ORG2 never imports entries of ORG3" in imported.found
    assert imported.fix.startswith("Remove ORG3 from 'organizations never to import'")


def test_it_says_a_conflict_holds_the_entry_and_links_the_local_recipient(synced):
    local = synced["ORG2"].add(
        alias="clash", display_name="Local Clash", primary_smtp="clash@org3.com"
    )
    add_to_org3(synced, alias="clash", display_name="Remote Clash")
    cycle(synced["ORG3"])
    cycle(synced["ORG2"])
    assert Conflict.objects.filter(config__organization__name="ORG2").count() == 1

    conflict = blocked_by(trace_of("ORG2", "Remote Clash"), "conflict")
    by_address = ask("ORG2", "clash@org3.com")

    assert "clash@org3.com belongs to a recipient of this organization" in conflict.found
    assert "Change the primary SMTP address of Local Clash in ORG2" in conflict.fix
    assert conflict.links[0].href == reverse(
        "console:recipient", kwargs={"org": "ORG2", "pk": local.pk}
    )
    verdicts = {trace.match.display_name: trace.verdict.kind for trace in by_address.traces}
    assert verdicts == {"Local Clash": Verdict.HERE, "Remote Clash": Verdict.NOT_HERE}


def test_it_says_what_a_master_in_another_installation_keeps_from_view(synced):
    add_to_org3(synced, alias="far", display_name="Far Away")
    cycle(synced["ORG3"])
    configure_import(master_address="master@hub.example")

    here = trace_of("ORG2", "ORG3 User 1")
    missing = trace_of("ORG2", "Far Away")

    assert here.verdict.kind == Verdict.HERE
    master = step(missing, "master")
    assert master.status == Status.UNKNOWN
    assert "(master@hub.example) is in another installation" in master.found
    assert master.facts == {"local": False, "applied_master_usn": synced["ORG2"].config.master_usn}
    assert missing.verdict.kind == Verdict.NOT_HERE
    assert missing.verdict.text == "Is not here; what keeps it out is not visible from here."
    assert "entries of the master (ORG1)" not in missing.match.found_in


def test_it_says_when_nothing_matches_and_where_it_looked(synced):
    result = ask("ORG2", "nobody@nowhere.example")

    assert (result.matches, result.traces) == ([], [])
    assert "the address book of ORG2" in result.searched
    assert "the entries of the master (ORG1)" in result.searched


def test_it_says_an_own_recipient_is_here_and_whether_the_others_get_it(synced):
    trace = trace_of("ORG2", "org2user1@org2.example")

    assert trace.verdict.kind == Verdict.HERE
    assert "own recipients" in trace.verdict.reason
    assert [s.key for s in trace.steps] == ["entry", "origin", "scope"]
    assert step(trace, "scope").found.startswith("The other organizations get it")


def test_it_lists_many_matches_to_narrow_the_question(synced):
    result = ask("ORG2", "User")

    assert result.narrow and result.traces == []
    assert len(result.matches) > explain.EXPLAINED
    assert len({match.key for match in result.matches}) == len(result.matches)


@pytest.mark.parametrize(
    ("query", "message"),
    [("  ", "Give a primary SMTP address"), ("a\x00b", "NUL"), ("x" * 257, "at most 256")],
    ids=["empty", "nul", "too-long"],
)
def test_it_refuses_a_bad_question(synced, query, message):
    with pytest.raises(explain.ExplainError, match=message):
        ask("ORG2", query)


def test_it_reads_no_more_when_the_directories_grow(synced):
    def queries(query: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            trace_of("ORG2", query)
        return len(captured.captured_queries)

    before = (queries("ORG3 User 1"), queries("org3user1@org3.com"))
    add_many(synced["ORG3"], 60)
    add_many(synced["ORG2"], 60)
    cycle(synced["ORG3"])
    cycle(synced["ORG2"])

    assert (queries("ORG3 User 1"), queries("org3user1@org3.com")) == before
    assert before[0] < 40
    many = ask("ORG2", "Bulk Person")
    assert many.more and len(many.matches) == explain.SEARCH_LIMIT


# --- The command --------------------------------------------------------------------------------


def run_explain(*args) -> str:
    out = io.StringIO()
    call_command("explain", *args, stdout=out)
    return out.getvalue()


def test_the_command_prints_every_step_and_the_verdict(synced):
    add_to_org3(synced, alias="vip", display_name="Very Important", trust_level=20)

    output = run_explain("org2", "Very", "Important")

    assert "Why is 'Very Important' (not) in the address book of ORG2?" in output
    assert "3. Export scope of ORG3 [keeps it out]" in output
    assert "Verdict: Is not here. Its trust level 20 is above" in output
    assert "To make it sync: Lower the recipient's trust level" in output


def test_the_command_lists_the_known_organizations_for_an_unknown_one(synced):
    with pytest.raises(
        CommandError, match=r"No organization named 'ORG9' \(known: ORG1, ORG2, ORG3\)"
    ):
        run_explain("ORG9", "anyone")


@pytest.mark.parametrize("query", ["", "a\x00b", "y" * 300], ids=["empty", "nul", "too-long"])
def test_the_command_refuses_a_bad_question(synced, query):
    with pytest.raises(CommandError):
        run_explain("ORG2", query)


# --- Who may see what ---------------------------------------------------------------------------


def reader_of(*names: str, username: str = "oscar"):
    roles = {Organization.objects.get(name=name): ConsoleRole.OPERATOR for name in names}
    return make_user(username, roles)


def test_a_reader_of_this_organization_only_sees_its_side_and_the_verdict(synced):
    raised = person("org3user1")
    raised.trust_level = 30
    changes.save_recipient(raised)
    cycle(synced["ORG3"])
    org2 = Organization.objects.get(name="ORG2").pk

    trace = trace_of("ORG2", "ORG3 User 1", can_read=lambda pk: pk == org2)

    assert trace.verdict.kind == Verdict.LEAVING
    assert "trust level" not in trace.verdict.reason
    assert trace.verdict.reason.startswith("The reason lies with ORG3, which you cannot read")
    assert trace.verdict.fix == ""
    hidden = {s.key: s for s in trace.steps if s.status == Status.NOT_SHOWN}
    assert set(hidden) == {"origin", "scope", "master"}
    assert all(s.facts == {} and s.links == [] for s in hidden.values())
    assert step(trace, "contact").status == Status.OK
    assert "directory of ORG3" not in trace.match.found_in


def test_a_reader_of_this_organization_does_not_find_what_only_others_hold(synced):
    add_to_org3(synced, alias="secret", display_name="Secret Project", trust_level=99)
    org2 = Organization.objects.get(name="ORG2").pk

    limited = ask("ORG2", "Secret Project", can_read=lambda pk: pk == org2)
    by_address = ask("ORG2", "secret@org3.example", can_read=lambda pk: pk == org2)
    by_key = ask("ORG2", f"ORG3:{person('secret').guid}", can_read=lambda pk: pk == org2)

    assert limited.matches == by_address.matches == by_key.matches == []
    assert "the entries of the master (ORG1)" not in limited.searched
    assert len(ask("ORG2", "Secret Project").traces) == 1


def test_a_reader_of_the_master_also_sees_the_masters_step(synced):
    add_to_org3(synced, alias="bea", display_name="Bea Behind")
    cycle(synced["ORG3"])
    readable = set(
        Organization.objects.filter(name__in=["ORG1", "ORG2"]).values_list("pk", flat=True)
    )

    trace = trace_of("ORG2", "bea@org3.com", can_read=readable.__contains__)

    assert step(trace, "master").status == Status.OK
    assert step(trace, "scope").status == Status.NOT_SHOWN
    assert trace.verdict.kind == Verdict.NEXT_CYCLE
    assert trace.verdict.step == "requestor"


# --- The API ------------------------------------------------------------------------------------


def api_url(org: str = "ORG2") -> str:
    return f"/api/v1/organizations/{org}/explain/"


def test_the_api_answers_the_steps_as_json(synced):
    client = token_client(reader_of("ORG2", "ORG3", "ORG1"))

    response = client.get(api_url(), {"q": "ORG3 User 1"})

    assert response.status_code == 200
    body = response.json()
    assert body["organization"] == "ORG2" and len(body["traces"]) == 1
    trace = body["traces"][0]
    assert [s["step"] for s in trace["steps"]] == [
        "entry",
        "origin",
        "scope",
        "master",
        "requestor",
        "import",
        "conflict",
        "contact",
    ]
    assert trace["verdict"]["kind"] == "here"
    assert trace["steps"][2]["facts"]["threshold"] == 10
    assert trace["steps"][1]["links"][0]["href"].startswith("/o/ORG3/directory/recipients/")


def test_the_api_hides_what_the_user_cannot_read(synced):
    client = token_client(reader_of("ORG2"))

    body = client.get(api_url(), {"q": "ORG3 User 1"}).json()

    steps = {s["step"]: s for s in body["traces"][0]["steps"]}
    assert steps["scope"]["status"] == "not_shown" and steps["scope"]["facts"] == {}
    assert steps["master"]["status"] == "not_shown"
    assert steps["contact"]["status"] == "ok"


@pytest.mark.parametrize(
    "query",
    [{}, {"q": ""}, {"q": "z" * 257}],
    ids=["none", "empty", "long"],
)
def test_the_api_refuses_a_bad_question_with_400(synced, query):
    response = token_client(reader_of("ORG2")).get(api_url(), query)

    assert response.status_code == 400
    assert "q" in response.json()


def test_the_api_hides_the_organization_from_outsiders_and_anonymous_callers(synced):
    from rest_framework.test import APIClient

    outsider = token_client(reader_of("ORG3"))

    assert outsider.get(api_url(), {"q": "ORG3 User 1"}).status_code == 404
    assert APIClient().get(api_url(), {"q": "ORG3 User 1"}).status_code == 401


# --- The console --------------------------------------------------------------------------------


def page_url(org: str = "ORG2") -> str:
    return reverse("console:explain", kwargs={"org": org})


def test_the_page_shows_the_trace_with_links(synced):
    client = logged_in(reader_of("ORG2", "ORG3", "ORG1"))
    add_to_org3(synced, alias="vip", display_name="Very Important", trust_level=20)

    response = client.get(page_url(), {"q": "Very Important"})

    assert response.status_code == 200
    body = response.content.decode()
    assert "Is not here." in body
    assert "Its trust level 20 is above the trust level ORG3 exports (10)" in body
    assert reverse("console:export-config", kwargs={"org": "ORG3"}) in body
    assert reverse("console:import-config", kwargs={"org": "ORG2"}) in body


def test_the_page_lists_many_matches_with_a_link_to_each(synced):
    client = logged_in(reader_of("ORG2"))

    body = client.get(page_url(), {"q": "User"}).content.decode()

    assert 'id="explain-narrow"' in body
    assert f"?q=ORG3%3A{person('org3user1').guid}" in body


@pytest.mark.parametrize(
    ("query", "message"),
    [("", "required"), ("w" * 300, "at most 256")],
    ids=["empty", "too-long"],
)
def test_the_page_shows_a_form_error_for_a_bad_question(synced, query, message):
    response = logged_in(reader_of("ORG2")).get(page_url(), {"q": query})

    assert response.status_code == 200
    assert message in response.content.decode()
    assert response.context["result"] is None


def test_the_dashboard_and_directory_boxes_lead_to_the_page(synced):
    client = logged_in(reader_of("ORG2"))

    dashboard = client.get(reverse("console:dashboard")).content.decode()
    directory = client.get(reverse("console:containers", kwargs={"org": "ORG2"})).content
    response = client.get(reverse("console:explain-search"), {"org": "ORG2", "q": "Jane Doe"})

    assert 'id="explain-box"' in dashboard and '<option value="ORG2">' in dashboard
    assert '<option value="ORG3">' not in dashboard
    assert b'id="explain-box"' in directory
    assert response.status_code == 302
    assert response["Location"] == f"{page_url()}?q=Jane+Doe"


def test_the_page_is_for_readers_of_the_organization_only(synced):
    outsider = logged_in(reader_of("ORG3"))
    anonymous_page = logged_in(reader_of("ORG2", username="olga"))
    anonymous_page.logout()

    assert outsider.get(page_url(), {"q": "x"}).status_code == 404
    search = outsider.get(reverse("console:explain-search"), {"org": "ORG2", "q": "x"})
    assert search.status_code == 404
    assert outsider.get(reverse("console:explain-search"), {"org": "OR\x00G2"}).status_code == 400
    for target in (f"{page_url()}?q=x", f"{reverse('console:explain-search')}?org=ORG2&q=x"):
        response = anonymous_page.get(target)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_the_exported_form_of_an_address_finds_only_that_organizations_own(synced):
    """ORG3 rewrites its addresses to org3.com: asking for org3user1@org3.com finds ORG3's own
    recipient, not ORG3's contact of an ORG2 person with the same local part."""
    synced["ORG2"].add(alias="namesake", primary_smtp="org3user1@org2.example")
    cycle(synced["ORG2"])
    cycle(synced["ORG3"])
    assert synced["ORG3"].contacts().filter(primary_smtp="org3user1@org2.example").exists()

    result = ask("ORG1", "org3user1@org3.com")

    assert [match.key for match in result.matches] == [f"ORG3:{person('org3user1').guid}"]
