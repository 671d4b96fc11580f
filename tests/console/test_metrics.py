"""/metrics: the Prometheus exposition of runs, cycle durations, messages, lag, verification,
held batches and quarantines, read from the database at scrape time, per organization, for
whoever may read those organizations (an API token or a console session)."""

from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from console import status as dashboard
from console.constants import OPERATORS_GROUP, ConsoleRole
from directory import changes
from directory.constants import Role
from directory.models import Organization, Recipient
from master.models import AllowedRequestor
from requestor import schedule
from requestor.constants import RunStatus, Trigger
from requestor.cycle import run_cycle
from requestor.models import RequestorConfig, Run
from tests.console.conftest import logged_in, make_user, token_client
from tests.engine.conftest import make_org
from tests.engine.helpers import add_many, cycle, synced_fixtures
from transport.constants import Direction, Status
from transport.inbox import pump
from transport.models import Hold, Message

URL = "/metrics"
BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)


def _thirty_in_org2(scenario):
    add_many(scenario["ORG2"], 27)


synced_base, synced_scenario = synced_fixtures(prepare=_thirty_in_org2)


@pytest.fixture
def busy(synced_scenario):
    """After the initial sync: ORG2 deletes 8 of its 30 people and the master ORG1 holds that
    export and quarantines ORG2; ORG3 changes a person and runs a cycle; a cycle of ORG3 then
    fails; ORG1 runs every 15 minutes, ORG3 daily at 02:00 and 14:00."""
    AllowedRequestor.objects.filter(organization_name="ORG2").update(delete_limit=5)
    org2 = synced_scenario["ORG2"].organization
    people = list(Recipient.objects.filter(organization=org2).exportable().order_by("pk")[:8])
    changes.delete_recipients(people)
    assert cycle(synced_scenario["ORG2"]).status == RunStatus.HELD
    person = Recipient.objects.filter(organization__name="ORG3").exportable().first()
    person.title = "Changed"
    changes.save_recipient(person)
    assert cycle(synced_scenario["ORG3"]).status == RunStatus.OK
    Run.objects.create(
        config=synced_scenario["ORG3"].config,
        trigger=Trigger.SCHEDULE,
        status=RunStatus.FAILED,
        error="OperationalError: disk full",
        finished_at=timezone.now(),
    )
    schedule.set_every_minutes(synced_scenario["ORG1"].config, 15)
    schedule.set_daily(synced_scenario["ORG3"].config, ["02:00", "14:00"])
    return synced_scenario


def scrape(client) -> dict:
    """{metric name: {frozenset(labels): value}} of one scrape."""
    response = client.get(URL)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: dict = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            key = frozenset(sample.labels.items())
            samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def series(samples: dict, name: str, **labels) -> dict:
    """The samples of `name` whose labels include `labels`, keyed by their other labels."""
    found = {}
    for key, value in samples.get(name, {}).items():
        label_dict = dict(key)
        if all(label_dict.get(k) == v for k, v in labels.items()):
            rest = tuple(sorted((k, v) for k, v in label_dict.items() if k not in labels))
            found[rest] = value
    return found


def at(moment):
    """A timestamp sample equal to `moment` (to the microsecond the database keeps)."""
    return pytest.approx(moment.timestamp(), rel=0, abs=1e-5)


def superuser_session():
    root = get_user_model().objects.filter(username="root").first()
    return logged_in(root or make_user("root", is_superuser=True, is_staff=True))


def test_anonymous_visitors_and_bad_tokens_are_refused(synced_scenario):
    from rest_framework.test import APIClient

    assert APIClient().get(URL).status_code == 401
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert bad.get(URL).status_code == 401
    body = APIClient().get(URL, HTTP_ACCEPT="text/plain").content.decode()
    assert "interorg_" not in body


def test_a_user_without_any_organization_sees_no_series(synced_scenario):
    samples = scrape(token_client(make_user("nobody")))
    assert not any(name.startswith("interorg_") and values for name, values in samples.items()), (
        samples
    )


def test_runs_and_messages_equal_the_archive(busy):
    samples = scrape(superuser_session())

    runs = Counter(Run.objects.values_list("config__organization__name", "status"))
    assert {
        (dict(k)["organization"], dict(k)["status"]): v
        for k, v in samples["interorg_runs"].items()
        if v
    } == dict(runs)
    # Every state is there for each organization, zero or not, so that alerts see a 0.
    assert len(samples["interorg_runs"]) == 3 * len(RunStatus.values)
    assert runs[("ORG2", RunStatus.HELD)] == 1 and runs[("ORG3", RunStatus.FAILED)] == 1

    messages = Counter(Message.objects.values_list("organization__name", "direction", "status"))
    scraped = {
        (dict(k)["organization"], dict(k)["direction"], dict(k)["status"]): v
        for k, v in samples["interorg_messages"].items()
        if v
    }
    assert scraped == {(org or "", d, s): n for (org, d, s), n in messages.items()}
    assert messages[("ORG1", Direction.INBOUND, Status.HELD)] >= 1


def test_the_cycle_duration_histogram_counts_the_finished_runs(busy):
    samples = scrape(superuser_session())

    for name in ("ORG1", "ORG2", "ORG3"):
        durations = [
            (run.finished_at - run.started_at).total_seconds()
            for run in Run.objects.filter(
                config__organization__name=name, finished_at__isnull=False
            )
        ]
        assert durations
        buckets = series(samples, "interorg_run_duration_seconds_bucket", organization=name)
        for bound in BUCKETS:
            expected = sum(1 for d in durations if d <= bound)
            assert buckets[(("le", str(float(bound))),)] == expected, (name, bound)
        assert buckets[(("le", "+Inf"),)] == len(durations)
        count = series(samples, "interorg_run_duration_seconds_count", organization=name)
        assert count == {(): len(durations)}
        total = series(samples, "interorg_run_duration_seconds_sum", organization=name)[()]
        assert total == pytest.approx(sum(durations), abs=1e-3)


def test_state_lag_verification_and_schedule_follow_the_dashboard(busy):
    samples = scrape(superuser_session())

    for organization in Organization.objects.all():
        line = dashboard.organization_status(organization)
        name = organization.name
        states = series(samples, "interorg_organization_state", organization=name)
        assert {dict(k)["state"] for k, v in states.items() if v == 1} == {line.state}, name
        assert sum(states.values()) == 1
        lag = series(samples, "interorg_lag_usns", organization=name)
        assert lag == ({} if line.lag is None else {(): line.lag})
        verified = series(samples, "interorg_verified_timestamp_seconds", organization=name)
        if line.sync.state == "verified":
            assert verified == {(): at(line.sync.at)}
        else:
            assert verified == {}
        last_ok = series(samples, "interorg_last_success_timestamp_seconds", organization=name)
        assert last_ok == {(): at(line.last_ok_at)}
        last_run = series(samples, "interorg_last_run_timestamp_seconds", organization=name)
        assert last_run == {(): at(line.last_run.started_at)}
    states = {
        dict(k)["organization"]: dict(k)["state"]
        for k, v in samples["interorg_organization_state"].items()
        if v
    }
    assert states == {"ORG1": "ok", "ORG2": "held", "ORG3": "failing"}
    assert samples["interorg_lag_usns"][frozenset({("organization", "ORG2")})] > 0
    intervals = {
        dict(k)["organization"]: v for k, v in samples["interorg_schedule_interval_seconds"].items()
    }
    # ORG3's longest gap is 14:00 to 02:00 the next day; ORG2 has no schedule.
    assert intervals == {"ORG1": 15 * 60, "ORG3": 12 * 3600}


def test_held_batches_and_quarantines_are_counted(busy):
    samples = scrape(superuser_session())
    hold = Hold.objects.get()
    requestor = AllowedRequestor.objects.get(organization_name="ORG2")
    assert requestor.quarantined_at is not None

    held = series(samples, "interorg_held_batches", organization="ORG1")
    assert held == {(("kind", "export"),): 1, (("kind", "reply"),): 0}
    oldest = series(samples, "interorg_held_batch_oldest_timestamp_seconds")
    assert oldest == {(("kind", "export"), ("organization", "ORG1")): at(hold.held_at)}
    quarantined = series(samples, "interorg_quarantined_requestor_since_timestamp_seconds")
    assert quarantined == {
        (
            ("address", requestor.address),
            ("organization", "ORG1"),
            ("requestor", "ORG2"),
        ): at(requestor.quarantined_at)
    }
    assert series(samples, "interorg_quarantined_requestors") == {(("organization", "ORG1"),): 1}
    master_lag = series(samples, "interorg_master_requestor_lag_usns", organization="ORG1")
    assert {dict(k)["requestor"] for k in master_lag} == {"ORG1", "ORG2", "ORG3"}

    Hold.objects.update(decision=Hold.Decision.REJECTED)
    AllowedRequestor.objects.update(quarantined_at=None)
    samples = scrape(superuser_session())
    assert series(samples, "interorg_held_batches", organization="ORG1") == {
        (("kind", "export"),): 0,
        (("kind", "reply"),): 0,
    }
    assert series(samples, "interorg_held_batch_oldest_timestamp_seconds") == {}
    assert series(samples, "interorg_quarantined_requestor_since_timestamp_seconds") == {}
    assert series(samples, "interorg_quarantined_requestors") == {(("organization", "ORG1"),): 0}


def test_a_token_of_one_organization_sees_only_that_organization(busy):
    org3 = Organization.objects.get(name="ORG3")
    samples = scrape(token_client(make_user("branch", {org3: ConsoleRole.OPERATOR})))

    organizations = {
        dict(key).get("organization")
        for name, values in samples.items()
        if name.startswith("interorg_")
        for key in values
    }
    assert organizations == {"ORG3"}
    assert series(samples, "interorg_runs", organization="ORG3", status="failed") == {(): 1}
    # The master's side of ORG3 (its allowlist entry at ORG1) is ORG1's, not ORG3's.
    assert "interorg_master_requestor_lag_usns" not in samples or not series(
        samples, "interorg_master_requestor_lag_usns"
    )


def test_the_queries_do_not_grow_with_organizations_or_runs(busy):
    operators = Group.objects.get_or_create(name=OPERATORS_GROUP)[0]
    everywhere = make_user("watch")
    everywhere.groups.add(operators)
    one_org = make_user("one", {Organization.objects.get(name="ORG3"): ConsoleRole.OPERATOR})
    root = make_user("admin", is_superuser=True)

    def queries(user) -> int:
        client = logged_in(user)
        client.get(URL)  # the session's own queries settle on the first request
        with CaptureQueriesContext(connection) as captured:
            assert client.get(URL).status_code == 200
        return len(captured)

    before = queries(root)
    assert queries(one_org) == queries(everywhere)

    master = busy.master
    for number in range(4, 9):
        org = make_org(number, Role.REQUESTOR)
        AllowedRequestor.objects.create(
            master=master, address=org.config.dn, organization_name=org.name
        )
        org.add()
        cycle(org)
        cycle(org)
        schedule.set_every_minutes(org.config, 5 + number)
    assert RequestorConfig.objects.count() == 8
    assert Organization.objects.count() == 8

    assert queries(root) == before
    assert before <= 20, before


def test_openmetrics_is_served_to_a_scraper_asking_for_it(synced_scenario):
    client = superuser_session()
    response = client.get(URL, HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().endswith("# EOF\n")
    plain = client.get(URL, HTTP_ACCEPT="text/plain")
    assert plain["Content-Type"].startswith("text/plain; version=0.0.4")


def test_a_reply_refused_here_makes_the_organization_failing_as_on_the_dashboard(
    synced_scenario,
):
    config = synced_scenario["ORG2"].config
    config.import_container = None
    config.save()
    run = run_cycle(config.pk)
    pump()
    assert Run.objects.get(pk=run.pk).status == RunStatus.WAITING
    assert Message.objects.filter(
        direction=Direction.INBOUND, status=Status.REJECTED, organization__name="ORG2"
    ).exists()
    client = superuser_session()
    client.get(URL)
    with CaptureQueriesContext(connection) as captured:
        samples = scrape(client)

    for organization in Organization.objects.all():
        line = dashboard.organization_status(organization)
        states = series(samples, "interorg_organization_state", organization=organization.name)
        assert {dict(k)["state"] for k, v in states.items() if v == 1} == {line.state}
    assert series(samples, "interorg_organization_state", organization="ORG2", state="failing") == {
        (): 1
    }
    # One more query than a scrape with nothing in flight: the replies of the waiting runs.
    assert len(captured) <= 14
