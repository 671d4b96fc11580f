"""The dashboard's history (console.activity): per organization and per hour or day, the
numbers the runs, messages and held batches in the database add up to, after real cycles of
the three-organization scenario; served as JSON to whoever may read each organization, in a
fixed number of queries, and drawn on the dashboard with a table of the same numbers."""

from collections import defaultdict
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from console import activity
from console.constants import ConsoleRole
from directory import changes
from directory.models import Recipient
from master.models import AllowedRequestor
from requestor.constants import RunStatus, Trigger
from requestor.models import Run
from tests.console.conftest import logged_in, make_user
from tests.engine.helpers import add_many, cycle, synced_fixtures
from transport.constants import Direction, MessageKind, Status
from transport.models import Hold, Message


def _thirty_in_org2(scenario):
    add_many(scenario["ORG2"], 27)


synced_base, synced_scenario = synced_fixtures(prepare=_thirty_in_org2)


@pytest.fixture
def busy(synced_scenario):
    """After the initial sync: ORG2 deletes 8 of its 30 people and the master ORG1 holds that
    export; ORG3 changes a person and runs a cycle; a cycle of ORG3 then fails; two older runs
    of ORG3 (three days ago and forty days ago, a repair among them) and an older message."""
    AllowedRequestor.objects.filter(organization_name="ORG2").update(delete_limit=5)
    org2 = synced_scenario["ORG2"].organization
    people = list(Recipient.objects.filter(organization=org2).exportable().order_by("pk")[:8])
    changes.delete_recipients(people)
    assert cycle(synced_scenario["ORG2"]).status == RunStatus.HELD
    person = Recipient.objects.filter(organization__name="ORG3").exportable().first()
    person.title = "Changed"
    changes.save_recipient(person)
    assert cycle(synced_scenario["ORG3"]).status == RunStatus.OK
    config3 = synced_scenario["ORG3"].config
    Run.objects.create(
        config=config3,
        trigger=Trigger.SCHEDULE,
        status=RunStatus.FAILED,
        error="OperationalError: disk full",
        finished_at=timezone.now(),
    )
    for days, repair, exported in ((3, "import", 7), (40, "", 11)):
        old = timezone.now() - timedelta(days=days)
        run = Run.objects.create(
            config=config3,
            trigger=Trigger.SCHEDULE,
            status=RunStatus.OK,
            exported=exported,
            imported=2,
            master_lag=5,
            repair=repair,
        )
        Run.objects.filter(pk=run.pk).update(
            started_at=old, finished_at=old + timedelta(seconds=90)
        )
    message = Message.objects.filter(organization=config3.organization).first()
    message.pk = None
    message.save()
    Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(days=3))
    return synced_scenario


def floor(moment, step):
    local = timezone.localtime(moment)
    if step == "hour":
        return local.replace(minute=0, second=0, microsecond=0)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def oracle(organization, window) -> dict:
    """The series recomputed in Python from every row of the organization (no grouping by the
    database): what the endpoint must say."""
    now = timezone.now()
    span = timedelta(hours=24) if window == "24h" else timedelta(days=30)
    step = "hour" if window == "24h" else "day"
    since = floor(now, step) - span + (timedelta(hours=1) if step == "hour" else timedelta(days=1))
    sums = defaultdict(lambda: defaultdict(int))
    durations, lags = defaultdict(list), defaultdict(list)
    for run in Run.objects.filter(config__organization=organization, started_at__gte=since):
        bucket = sums[floor(run.started_at, step)]
        bucket["runs"] += 1
        bucket["failed"] += run.status == RunStatus.FAILED
        for name in ("exported", "imported", "updated", "deleted"):
            bucket[name] += getattr(run, name)
        bucket["repairs"] += bool(run.repair)
        if run.finished_at:
            durations[floor(run.started_at, step)].append(
                (run.finished_at - run.started_at).total_seconds()
            )
        if run.master_lag is not None:
            lags[floor(run.started_at, step)].append(run.master_lag)
    for message in Message.objects.filter(organization=organization, created_at__gte=since):
        name = "sent" if message.direction == Direction.OUTBOUND else "received"
        sums[floor(message.created_at, step)][name] += 1
    for hold in Hold.objects.filter(organization=organization, held_at__gte=since):
        sums[floor(hold.held_at, step)]["held"] += 1
    expected = {}
    for bucket, values in sums.items():
        expected[bucket] = dict(values)
    for bucket, values in durations.items():
        expected.setdefault(bucket, {})["duration"] = sum(values) / len(values)
    for bucket, values in lags.items():
        expected.setdefault(bucket, {})["lag"] = max(values)
    return expected


def served(data, name) -> dict:
    """The non-empty buckets of one organization in a served history, like the oracle's."""
    org = next(o for o in data["organizations"] if o["name"] == name)
    found = {}
    for n, at in enumerate(data["buckets"]):
        values = {
            series: values[n]
            for series, values in org["series"].items()
            if values[n] not in (0, None)
        }
        if values:
            found[timezone.localtime(timezone.datetime.fromisoformat(at))] = values
    return found


def superuser():
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(username="root").first()
    return logged_in(user or make_user("root", is_superuser=True, is_staff=True))


@pytest.mark.parametrize("window", ["24h", "30d"])
def test_the_numbers_are_what_the_database_holds(busy, window):
    response = superuser().get("/history.json", {"window": window})
    assert response.status_code == 200
    data = response.json()
    assert [o["name"] for o in data["organizations"]] == ["ORG1", "ORG2", "ORG3"]
    assert len(data["buckets"]) == {"24h": 24, "30d": 30}[window]
    for name in ("ORG1", "ORG2", "ORG3"):
        expected = oracle(busy[name].organization, window)
        found = served(data, name)
        assert found.keys() == {k for k, v in expected.items() if any(v.values())}
        for bucket, values in expected.items():
            values = {k: v for k, v in values.items() if v}
            if "duration" in values:
                duration = pytest.approx(values.pop("duration"), abs=0.1)
                assert found[bucket].pop("duration") == duration
            assert found[bucket] == values, (name, bucket)


def test_the_busy_scenario_shows_in_each_series(busy):
    data = superuser().get("/history.json", {"window": "30d"}).json()
    totals = {o["name"]: o["totals"] for o in data["organizations"]}
    # The master ORG1 held ORG2's export; ORG3 failed once, repaired once three days ago.
    assert totals["ORG1"]["held"] == 1
    assert totals["ORG3"]["failed"] == 1 and totals["ORG3"]["repairs"] == 1
    assert totals["ORG3"]["exported"] >= 7 + 1
    assert all(totals[name]["sent"] > 0 and totals[name]["received"] > 0 for name in totals)
    # Forty days ago is outside the window; three days ago is outside the last 24 hours.
    day = next(o for o in data["organizations"] if o["name"] == "ORG3")["series"]
    assert day["exported"][-4] == 7 and day["duration"][-4] == 90.0 and day["lag"][-4] == 5
    hourly = superuser().get("/history.json").json()
    assert hourly["window"] == "24h"
    assert next(o for o in hourly["organizations"] if o["name"] == "ORG3")["totals"]["repairs"] == 0


def test_a_run_records_the_lag_it_caught_up_on(synced_scenario):
    person = Recipient.objects.filter(organization__name="ORG3").exportable().first()
    person.title = "Changed"
    changes.save_recipient(person)
    cycle(synced_scenario["ORG3"])
    # ORG2 is one master USN behind (console.status's lag) until its next run applies it.
    assert cycle(synced_scenario["ORG2"]).master_lag == 1
    assert cycle(synced_scenario["ORG2"]).master_lag == 0


def test_each_user_sees_the_organizations_they_may_read(busy):
    operator = logged_in(make_user("oscar", {busy["ORG2"].organization: ConsoleRole.OPERATOR}))
    data = operator.get("/history.json").json()
    assert [o["name"] for o in data["organizations"]] == ["ORG2"]
    assert operator.get("/o/ORG2/history.json").json()["organizations"][0]["name"] == "ORG2"
    assert operator.get("/o/ORG3/history.json").status_code == 404
    anonymous = logged_in(make_user("nobody")).get("/history.json").json()
    assert anonymous["organizations"] == []
    from django.test import Client

    assert Client().get("/history.json").status_code == 302


def test_an_unknown_window_is_refused_clearly(busy, caplog):
    response = superuser().get("/o/ORG2/history.json", {"window": "7y"})
    assert response.status_code == 400
    assert response.json() == {"error": "Unknown window '7y': use one of 24h, 30d."}
    assert "Unknown window '7y'" in caplog.text
    page = superuser().get("/", {"window": "7y"})
    assert page.status_code == 200 and "Unknown window" in page.content.decode()


def add_runs(org, count: int) -> None:
    for n in range(count):
        run = Run.objects.create(
            config=org.config,
            trigger=Trigger.SCHEDULE,
            status=RunStatus.FAILED if n % 3 else RunStatus.OK,
            exported=n,
            master_lag=n,
            repair="export" if n % 5 == 0 else "",
            finished_at=timezone.now(),
        )
        Run.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(hours=n % 30))
        Message.objects.create(
            organization=org.organization,
            direction=Direction.OUTBOUND if n % 2 else Direction.INBOUND,
            status=Status.SENT,
            kind=MessageKind.EXPORT,
            sender="a@b.example",
            recipient="c@d.example",
            payload=b"",
        )


def count(client, url, params=None) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params or {})
    assert response.status_code == 200
    return len(captured)


@pytest.mark.parametrize("url", ["/history.json", "/o/ORG3/history.json", "/"])
def test_the_queries_do_not_grow_with_the_history(busy, url):
    client = superuser()
    add_runs(busy["ORG3"], 3)
    few = {window: count(client, url, {"window": window}) for window in ("24h", "30d")}
    add_runs(busy["ORG3"], 40)
    add_runs(busy["ORG2"], 40)
    assert {window: count(client, url, {"window": window}) for window in ("24h", "30d")} == few
    if url != "/":
        # One query per source (runs, messages, held batches), the session and user besides.
        with CaptureQueriesContext(connection) as captured:
            activity.history([busy["ORG3"].organization], activity.WINDOWS["30d"])
        assert len(captured) == 3


def test_the_dashboard_draws_the_history_with_a_table_of_the_same_numbers(busy):
    page = superuser().get("/", {"window": "30d"}).content.decode()
    data = superuser().get("/history.json", {"window": "30d"}).json()
    assert 'id="history-data"' in page and "vendor/uplot-1.6.32/uPlot.iife.min.js" in page
    assert "console/charts.js" in page and 'data-window="30d"' in page
    org3 = next(o for o in data["organizations"] if o["name"] == "ORG3")
    table = page.split('id="history-table-ORG3"')[1].split("</table>")[0]
    # The row of three days ago: its exported, duration and lag as served.
    day = data["buckets"][-4][:10]
    row = table.split(f'<th scope="row">{day}')[1].split("</tr>")[0]
    assert f'<td class="num">{org3["series"]["exported"][-4]}</td>' in row
    assert '<td class="num">90.0</td>' in row and '<td class="num">5</td>' in row


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "America/New_York"])
def test_buckets_follow_the_time_zone(busy, settings, zone):
    settings.TIME_ZONE = zone
    for window in ("24h", "30d"):
        data = superuser().get("/history.json", {"window": window}).json()
        for name in ("ORG2", "ORG3"):
            expected = oracle(busy[name].organization, window)
            assert served(data, name).keys() == {k for k, v in expected.items() if any(v.values())}


def test_the_api_serves_the_same_history(busy):
    from tests.console.conftest import token_client

    user = make_user("oscar", {busy["ORG2"].organization: ConsoleRole.OPERATOR})
    api = token_client(user)
    response = api.get("/api/v1/organizations/ORG2/activity/", {"window": "30d"})
    assert response.status_code == 200
    page = logged_in(user).get("/o/ORG2/history.json", {"window": "30d"}).json()
    found = response.json()
    assert found.pop("generated_at") and page.pop("generated_at")
    assert found == page and found["organizations"][0]["totals"]["runs"] > 0
    assert api.get("/api/v1/organizations/ORG3/activity/").status_code == 404
    refused = api.get("/api/v1/organizations/ORG2/activity/", {"window": "1w"})
    assert refused.status_code == 400
    assert refused.json() == {"window": ["Unknown window '1w': use one of 24h, 30d."]}
