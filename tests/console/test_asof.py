"""An organization's address book as of a past time (requestor.asof): what it held before and
after a batch, what was removed, added and changed since and by which change, the limits of the
history, the console page, the API, who may look, and the bound on queries.

The scenario (tests/engine/conftest.py): ORG1 runs the master and a requestor, ORG2 and ORG3
requestors; ORG2 imports ORG1's and ORG3's people (ORG3 rewrites its addresses to @org3.com).
All rows of a quick test share nearly the same time, so each test moves the history written so
far into the past (`pause`) before the next batch: the times asked are then distinct.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from console.constants import ConsoleRole
from directory import changes
from directory.models import Organization
from requestor import asof, grace
from requestor.models import ImportedChange, RequestorConfig
from tests.console.conftest import logged_in, make_user, token_client
from tests.engine.helpers import add_many, cycle, person, rename, synced_fixtures

synced_base, synced = synced_fixtures()

HOUR = timedelta(hours=1)


def pause(hours: int = 2) -> None:
    """Move the whole import history `hours` into the past."""
    ImportedChange.objects.update(at=F("at") - timedelta(hours=hours))


def org2() -> Organization:
    return Organization.objects.get(name="ORG2")


def names(entries) -> list[str]:
    return sorted(entry.display_name for entry in entries)


def listed(result: asof.AddressBookAsOf, show: str) -> list[asof.Entry]:
    return result.explain(result.entries(show))


def a_batch(synced):
    """ORG3 deletes one person and adds another, ORG1 renames one; ORG2's cycle imports it all.
    Returns ORG2's run."""
    changes.delete_recipients([person("org3user2")])
    synced["ORG3"].add(alias="newcomer", display_name="New Comer")
    rename("org1user1", "Renamed One")
    cycle(synced["ORG3"])
    cycle(synced["ORG1"])
    return cycle(synced["ORG2"])


def contacts_of_org2(synced) -> list[str]:
    return sorted(synced["ORG2"].contacts().values_list("display_name", flat=True))


# --- The address book then, and the difference to now -------------------------------------------


def test_it_lists_the_address_book_before_a_batch_and_what_changed_since(synced):
    before = contacts_of_org2(synced)
    pause()
    run = a_batch(synced)

    result = asof.address_book(org2(), timezone.now() - HOUR)

    assert names(listed(result, asof.THEN)) == before
    assert names(listed(result, asof.REMOVED)) == ["ORG3 User 2"]
    assert names(listed(result, asof.ADDED)) == ["New Comer"]
    [changed] = listed(result, asof.CHANGED)
    assert (changed.then.display_name, changed.display_name) == ("ORG1 User 1", "Renamed One")
    assert (
        changed.change.op == ImportedChange.Op.UPDATED and "display_name" in changed.change.detail
    )
    assert changed.change.run_id == run.pk
    assert result.counts == {"then": 6, "removed": 1, "added": 1, "changed": 1}


def test_it_lists_the_address_book_after_the_batch_as_it_is_now(synced):
    pause()
    a_batch(synced)

    result = asof.address_book(org2(), timezone.now())

    assert names(listed(result, asof.THEN)) == contacts_of_org2(synced)
    assert result.counts == {"then": 6, "removed": 0, "added": 0, "changed": 0}


def test_it_lists_the_address_book_between_two_batches(synced):
    pause(4)
    changes.delete_recipients([person("org3user1")])
    cycle(synced["ORG3"])
    cycle(synced["ORG2"])
    between = contacts_of_org2(synced)
    pause(2)
    a_batch(synced)

    result = asof.address_book(org2(), timezone.now() - HOUR)
    earlier = asof.address_book(org2(), timezone.now() - 3 * HOUR)

    assert names(listed(result, asof.THEN)) == between
    assert "ORG3 User 1" not in between
    assert names(listed(result, asof.REMOVED)) == ["ORG3 User 2"]
    assert names(listed(earlier, asof.REMOVED)) == ["ORG3 User 1", "ORG3 User 2"]


def test_it_names_the_change_the_run_and_the_origin_that_removed_an_entry(synced):
    pause()
    run = a_batch(synced)

    [gone] = listed(asof.address_book(org2(), timezone.now() - HOUR), asof.REMOVED)

    assert gone.origin == "ORG3"
    assert gone.primary_smtp == "org3user2@org3.com"
    assert gone.change.op == ImportedChange.Op.HIDDEN
    assert gone.change.run_id == run.pk
    assert gone.change.batch is not None
    assert gone.change.at > timezone.now() - HOUR
    assert gone.then.op == ImportedChange.Op.ADDED
    assert gone.now == gone.change and not gone.present_now


def test_it_names_the_hiding_change_when_the_grace_period_has_removed_the_contact(synced):
    pause()
    run = a_batch(synced)
    RequestorConfig.objects.filter(pk=synced["ORG2"].config.pk).update(grace_days=0)
    assert grace.purge_expired() == 1

    [gone] = listed(asof.address_book(org2(), timezone.now() - HOUR), asof.REMOVED)

    assert (gone.change.op, gone.change.run_id) == (ImportedChange.Op.HIDDEN, run.pk)
    assert gone.now.op == ImportedChange.Op.REMOVED


def test_a_contact_hidden_and_restored_since_is_neither_removed_nor_added(synced):
    pause()
    moved = person("org3user1")
    moved.container = synced["ORG3"].contractors  # out of ORG3's export scope
    changes.save_recipient(moved)
    cycle(synced["ORG3"])
    cycle(synced["ORG2"])
    moved.container = synced["ORG3"].recipients  # and back
    changes.save_recipient(moved)
    cycle(synced["ORG3"])
    cycle(synced["ORG2"])

    result = asof.address_book(org2(), timezone.now() - HOUR)

    assert result.counts["removed"] == result.counts["added"] == 0
    [entry] = listed(asof.address_book(org2(), timezone.now() - HOUR, "ORG3 User 1"), asof.THEN)
    assert entry.now.op == ImportedChange.Op.RESTORED
    assert entry.state_now == "in the address book"


def test_a_contact_changed_twice_since_shows_its_latest_change(synced):
    pause()
    for name in ("Renamed Once", "Renamed Twice"):
        rename("org1user1", name)
        cycle(synced["ORG1"])
        cycle(synced["ORG2"])

    [changed] = listed(asof.address_book(org2(), timezone.now() - HOUR), asof.CHANGED)

    assert changed.then.display_name == "ORG1 User 1"
    assert changed.change.display_name == changed.display_name == "Renamed Twice"


def test_it_searches_the_lists_by_name_or_address(synced):
    pause()
    a_batch(synced)
    at = timezone.now() - HOUR

    by_name = asof.address_book(org2(), at, "user 2")
    by_address = asof.address_book(org2(), at, "ORG3USER2@")
    by_old_name = asof.address_book(org2(), at, "ORG1 User 1")

    assert names(listed(by_name, asof.REMOVED)) == ["ORG3 User 2"]
    assert by_name.counts["then"] == 2  # ORG1 User 2 and ORG3 User 2
    assert names(listed(by_address, asof.REMOVED)) == ["ORG3 User 2"]
    assert names(listed(by_old_name, asof.CHANGED)) == ["Renamed One"]


def test_it_counts_own_recipients_and_contacts_imported_before_the_history(synced):
    ImportedChange.objects.filter(organization=org2(), global_key__startswith="ORG1:").delete()
    pause()

    result = asof.address_book(org2(), timezone.now() - HOUR)

    assert result.own_recipients == 3
    assert result.untracked == 3
    assert names(listed(result, asof.THEN)) == ["ORG3 User 1", "ORG3 User 2", "ORG3 User 3"]


# --- The limits of the history -----------------------------------------------------------------


def test_it_refuses_a_time_before_the_retention(synced, settings):
    settings.INTERORG_HISTORY_RETENTION_DAYS = 30
    pause(24 * 40)

    with pytest.raises(asof.AsOfError, match="kept for 30 days") as refused:
        asof.address_book(org2(), timezone.now() - timedelta(days=31))

    assert "ask for a time after" in str(refused.value)
    assert asof.address_book(org2(), timezone.now() - timedelta(days=29)).counts["then"] == 6


def test_it_refuses_a_time_in_the_future(synced):
    with pytest.raises(asof.AsOfError, match="is in the future"):
        asof.address_book(org2(), timezone.now() + HOUR)


def test_it_refuses_a_time_before_the_history_starts(synced):
    pause()
    starts = ImportedChange.objects.filter(organization=org2()).order_by("at").first().at

    with pytest.raises(asof.AsOfError, match="starts at") as refused:
        asof.address_book(org2(), starts - HOUR)

    assert asof.shown(starts) in str(refused.value)
    assert "upgraded" in str(refused.value)


def test_it_refuses_an_organization_without_history(synced):
    ImportedChange.objects.filter(organization=org2()).delete()

    with pytest.raises(asof.AsOfError, match="No import into ORG2's address book"):
        asof.address_book(org2(), timezone.now() - HOUR)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Give a time"),
        ("yesterday", "is not a time"),
        ("2025-13-40T25:61", "is not a time"),
        ("2025-03-14T09:30\x00", "Null characters"),
        ("9" * 100, "is not a time"),
        ("9999-12-31T23:59:59-12:00", "is not a time"),
    ],
    ids=["empty", "words", "out-of-range", "nul", "long", "overflow"],
)
def test_it_refuses_a_malformed_time(text, message):
    with pytest.raises(asof.AsOfError, match=message):
        asof.parse_time(text)


def test_it_reads_a_time_without_offset_in_the_servers_time_zone(settings):
    settings.TIME_ZONE = "Europe/Berlin"

    local = asof.parse_time("2025-03-14T09:30")
    explicit = asof.parse_time("2025-03-14T09:30:00+00:00")

    assert local.utcoffset() == timedelta(hours=1)
    assert explicit - local == HOUR
    assert asof.shown(explicit) == "2025-03-14 10:30 Europe/Berlin"


# --- The console page ---------------------------------------------------------------------------


def reader_of(*names_: str, username: str = "oscar"):
    roles = {Organization.objects.get(name=name): ConsoleRole.OPERATOR for name in names_}
    return make_user(username, roles)


def page_url(org: str = "ORG2") -> str:
    return reverse("console:address-book-as-of", kwargs={"org": org})


def picker(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%dT%H:%M")


def test_the_directory_page_has_the_picker(synced):
    body = logged_in(reader_of("ORG2")).get(reverse("console:containers", args=["ORG2"]))

    assert b'id="asof-box"' in body.content and b'id="explain-box"' in body.content
    assert page_url().encode() in body.content


def test_the_page_lists_who_was_removed_since_with_the_change_and_the_run(synced):
    pause()
    run = a_batch(synced)
    client = logged_in(reader_of("ORG2"))

    response = client.get(page_url(), {"at": picker(timezone.now() - HOUR), "show": "removed"})

    assert response.status_code == 200
    body = response.content.decode()
    assert "ORG3 User 2" in body and "org3user2@org3.com" in body
    assert "hidden (grace period)" in body
    assert "comes back if its entry does within the grace period" in body
    assert reverse("console:run", kwargs={"org": "ORG2", "pk": run.pk}) in body
    assert "Removed since (1)" in body and "Added since (1)" in body
    assert "In the address book then (6)" in body
    assert "3 now, not listed" in body  # ORG2's own recipients
    assert "UTC" in body


def test_the_page_searches_and_shows_each_list(synced):
    pause()
    a_batch(synced)
    client = logged_in(reader_of("ORG2"))
    at = picker(timezone.now() - HOUR)

    then = client.get(page_url(), {"at": at}).content.decode()
    added = client.get(page_url(), {"at": at, "show": "added"}).content.decode()
    changed = client.get(page_url(), {"at": at, "show": "changed"}).content.decode()
    searched = client.get(page_url(), {"at": at, "show": "then", "q": "nobody"}).content.decode()

    assert "ORG1 User 1" in then and "New Comer" not in then
    assert "New Comer" in added
    assert "Renamed One" in changed and "ORG1 User 1" in changed
    assert "Nothing matches “nobody” in this list." in searched


@pytest.mark.parametrize(
    ("at", "message"),
    [
        ("soon", "is not a time"),
        ("2000-01-01T00:00", "kept for 90 days"),
        ("2999-01-01T00:00", "is in the future"),
    ],
    ids=["malformed", "too-old", "future"],
)
def test_the_page_shows_a_form_error_for_a_bad_time(synced, at, message):
    response = logged_in(reader_of("ORG2")).get(page_url(), {"at": at})

    assert response.status_code == 200
    assert message in response.content.decode()
    assert response.context["result"] is None


def test_the_page_shows_a_form_error_for_a_bad_list_or_search(synced):
    client = logged_in(reader_of("ORG2"))
    at = picker(timezone.now())

    response = client.get(page_url(), {"at": at, "show": "everything"})
    assert response.status_code == 200
    assert response.context["result"] is None
    assert response.context["form"].errors
    # A NUL is refused before the page (tests/console/test_hostile_input.py).
    assert client.get(page_url(), {"at": at, "q": "a\x00b"}).status_code == 400


def test_the_page_without_a_time_says_where_the_history_starts(synced):
    body = logged_in(reader_of("ORG2")).get(page_url()).content.decode()

    assert "The history of this address book starts at" in body


def test_the_page_is_for_readers_of_the_organization_only(synced):
    outsider = logged_in(reader_of("ORG3"))
    anonymous = logged_in(reader_of("ORG2", username="olga"))
    anonymous.logout()
    at = picker(timezone.now())

    assert outsider.get(page_url(), {"at": at}).status_code == 404
    assert outsider.get(page_url("NOSUCH"), {"at": at}).status_code == 404
    response = anonymous.get(page_url(), {"at": at})
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


# --- The API ------------------------------------------------------------------------------------


def api_url(org: str = "ORG2") -> str:
    return f"/api/v1/organizations/{org}/address-book/"


def test_the_api_answers_the_list_then_and_the_difference_to_now(synced):
    pause()
    run = a_batch(synced)
    client = token_client(reader_of("ORG2"))
    at = (timezone.now() - HOUR).isoformat()

    then = client.get(api_url(), {"at": at}).json()
    removed = client.get(api_url(), {"at": at, "show": "removed"}).json()

    assert then["counts"] == {"then": 6, "removed": 1, "added": 1, "changed": 1}
    assert then["count"] == 6 and len(then["results"]) == 6
    assert then["own_recipients"] == 3 and then["time_zone"] == "UTC"
    [gone] = removed["results"]
    assert (gone["display_name"], gone["origin"]) == ("ORG3 User 2", "ORG3")
    assert gone["change"]["op"] == "hidden" and gone["change"]["run"] == run.pk
    assert gone["then"]["op"] == "added"


def test_the_api_pages_a_list(synced):
    pause()
    client = token_client(reader_of("ORG2"))
    params = {"at": (timezone.now() - HOUR).isoformat(), "page_size": 4}

    first = client.get(api_url(), params).json()
    second = client.get(api_url(), {**params, "page": 2}).json()

    assert (first["count"], len(first["results"]), len(second["results"])) == (6, 4, 2)
    assert first["next"] and second["previous"] and not second["next"]
    keys = {entry["key"] for entry in first["results"] + second["results"]}
    assert len(keys) == 6


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "at"),
        ({"at": "not a time"}, "at"),
        ({"at": "2000-01-01T00:00:00Z"}, "at"),
        ({"at": "2999-01-01T00:00:00Z"}, "at"),
        ({"at": "now", "show": "all"}, "show"),
        ({"at": "now", "q": "x" * 300}, "q"),
    ],
    ids=["missing", "malformed", "too-old", "future", "bad-list", "long-search"],
)
def test_the_api_refuses_bad_input_with_400(synced, params, field):
    response = token_client(reader_of("ORG2")).get(api_url(), params)

    assert response.status_code == 400
    assert field in response.json()


def test_the_api_hides_the_organization_from_outsiders_and_anonymous_callers(synced):
    outsider = token_client(reader_of("ORG3"))
    params = {"at": timezone.now().isoformat()}

    assert outsider.get(api_url(), params).status_code == 404
    assert outsider.get(api_url("NOSUCH"), params).status_code == 404
    assert APIClient().get(api_url(), params).status_code == 401
    assert (
        token_client(reader_of("ORG2", username="olga")).get(api_url(), params).status_code == 200
    )


# --- Queries ------------------------------------------------------------------------------------


def queries(client, url: str, params: dict) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params)
    assert response.status_code == 200, response.content[:500]
    return len(captured)


def test_it_reads_no_more_when_the_history_grows(synced):
    page, api = logged_in(reader_of("ORG2")), token_client(reader_of("ORG2", username="olga"))

    def measure() -> list[int]:
        at = timezone.now() - HOUR
        result = asof.address_book(org2(), at)
        assert all(result.counts.values()), result.counts  # every list shows rows
        counts = []
        for show in asof.SHOWS:
            counts.append(queries(page, page_url(), {"at": picker(at), "show": show}))
            counts.append(queries(api, api_url(), {"at": at.isoformat(), "show": show}))
        return counts

    pause()
    a_batch(synced)
    few = measure()
    pause()
    add_many(synced["ORG3"], 30, prefix="grow")
    cycle(synced["ORG3"])
    cycle(synced["ORG2"])
    pause()  # they are in the address book at the time asked
    rename("org1user2", "Renamed Two")
    changes.delete_recipients([person("org1user3"), person("grow1"), person("grow2")])
    synced["ORG3"].add(alias="latecomer", display_name="Late Comer")
    for name in ("ORG1", "ORG3", "ORG2"):
        cycle(synced[name])

    assert asof.address_book(org2(), timezone.now() - HOUR).counts["then"] > 30
    assert measure() == few
