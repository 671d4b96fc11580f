"""What the console says is true and readable: one meaning of lag on the dashboard, the
master's table and the API; Import All and Export All runs labelled in the run history;
recipients that are not exported marked in the directory; times in the user's own zone."""

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from django.urls import reverse
from rest_framework.test import APIClient

from console import status
from console.constants import ConsoleRole
from console.models import ConsoleProfile
from console.timezones import TZ_COOKIE
from directory import changes
from master.models import AllowedRequestor
from requestor import actions
from requestor.constants import RunAction, RunStatus
from requestor.cycle import run_cycle
from requestor.models import RequestorConfig, Run
from tests.console.conftest import logged_in, make_user
from transport.inbox import pump


def api_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def cycle(org) -> None:
    run_cycle(org.config.pk)
    pump()


def both_sides(world):
    """ORG2's lag on its own dashboard line, and the master's (ORG1) row of ORG2."""
    own = status.organization_status(world.org2.organization)
    master = status.organization_status(world.org1.organization)
    row = next(v for v in master.requestors if v.requestor.organization_name == "ORG2")
    return own, row


def test_right_after_a_sync_both_lag_columns_say_0(world):
    cycle(world.org1)
    cycle(world.org3)
    cycle(world.org2)  # one Execute Now of ORG2: its export, then the master's reply
    own, row = both_sides(world)
    assert own.last_run.status == RunStatus.OK
    # The number the master's table showed before: the master USN ORG2 reported in the export
    # that started this cycle, from before the reply it has imported since.
    assert world.master.__class__.objects.get().usn - row.requestor.reported_master_usn > 0
    assert own.lag == 0
    assert row.unsent == 0
    assert row.requestor.sent_master_usn == own.config.master_usn


def test_the_master_counts_what_it_has_not_sent_yet(world):
    cycle(world.org2)
    cycle(world.org3)  # new entries at the master since ORG2's reply
    own, row = both_sides(world)
    assert own.lag == row.unsent > 0


def test_the_pages_and_the_api_name_the_two_quantities_apart(world):
    user = make_user(
        "both",
        {
            world.org1.organization: ConsoleRole.ADMINISTRATOR,
            world.org2.organization: ConsoleRole.ADMINISTRATOR,
        },
    )
    cycle(world.org1)
    cycle(world.org2)
    body = logged_in(user).get("/").content.decode()
    assert re.search(r'<th class="num" title="Master USN lag: [^"]+">Lag</th>', body)
    assert re.search(r'<th class="num" title="Master changes not yet sent[^"]+">Unsent</th>', body)
    rows = api_for(user).get("/api/v1/status/").json()
    org1 = next(r for r in rows if r["organization"] == "ORG1")
    org2 = next(r for r in rows if r["organization"] == "ORG2")
    assert org2["lag"] == 0
    views = {v["organization_name"]: v for v in org1["requestors"]}
    assert views["ORG2"]["unsent"] == 0 and "lag" not in views["ORG2"]
    requestor = AllowedRequestor.objects.get(organization_name="ORG2")
    assert views["ORG2"]["sent_master_usn"] == requestor.sent_master_usn > 0


def test_an_import_all_run_is_labelled_with_its_full_reply(world, admin_client_, administrator):
    cycle(world.org1)
    cycle(world.org3)
    cycle(world.org2)
    outcome = actions.import_all(
        RequestorConfig.objects.get(pk=world.org2.config.pk), administrator
    )
    run = Run.objects.get(pk=outcome.run.pk)
    assert run.status == RunStatus.OK
    assert run.action == RunAction.IMPORT_ALL and run.full_reply and not run.full_export
    body = admin_client_.get(reverse("console:runs", kwargs={"org": "ORG2"})).content.decode()
    row = body.split(f">{run.pk}</a>", 1)[1].split("</tr>", 1)[0]
    assert "full reply" in row and "Import All Recipients" in row
    assert f"updated {run.updated}" in row
    earlier = Run.objects.filter(config=world.org2.config).exclude(pk=run.pk).first()
    assert earlier.action == ""  # Execute Now (its first reply was full: a first contact)
    one = api_for(administrator).get(f"/api/v1/runs/{run.pk}/").json()
    assert one["action"] == "import_all" and one["full_reply"] is True


def test_an_export_all_run_is_labelled(world, admin_client_):
    cycle(world.org2)
    admin_client_.post(reverse("console:export-all", kwargs={"org": "ORG2"}), {"confirm": "yes"})
    run = Run.objects.filter(config=world.org2.config).first()
    assert run.action == RunAction.EXPORT_ALL and run.full_export
    body = admin_client_.get(reverse("console:run", kwargs={"org": "ORG2", "pk": run.pk}))
    assert "Export All Recipients" in body.content.decode()


def test_the_directory_marks_recipients_above_the_export_trust_level(world, admin_client_):
    RequestorConfig.objects.filter(pk=world.org2.config.pk).update(trust_level=3)
    people = list(world.org2.recipients.recipients.order_by("pk"))
    people[0].trust_level = 5
    changes.save_recipient(people[0])
    url = reverse("console:container", kwargs={"org": "ORG2", "pk": world.org2.recipients.pk})
    body = admin_client_.get(url).content.decode()
    rows = {p.display_name: body.split(p.display_name, 1)[1].split("</tr>", 1)[0] for p in people}
    assert "not exported" in rows[people[0].display_name]
    assert "above the export trust level 3" in rows[people[0].display_name]
    assert "not exported" not in rows[people[1].display_name]
    detail = reverse("console:recipient", kwargs={"org": "ORG2", "pk": people[0].pk})
    assert "above the export trust level 3" in admin_client_.get(detail).content.decode()


def test_times_follow_the_saved_zone_then_the_browsers(world, admin_client_, administrator):
    run = Run.objects.create(config=world.org2.config, trigger="manual", status=RunStatus.OK)
    at = datetime(2026, 1, 15, 12, 0, tzinfo=ZoneInfo("UTC"))
    Run.objects.filter(pk=run.pk).update(started_at=at)
    runs = reverse("console:runs", kwargs={"org": "ORG2"})
    admin_client_.cookies[TZ_COOKIE] = "Asia/Tokyo"
    body = admin_client_.get(runs).content.decode()
    assert "Times in Asia/Tokyo" in body and "2026-01-15 21:00:00" in body
    response = admin_client_.post(reverse("console:time-zone"), {"time_zone": "Europe/Paris"})
    assert response.status_code == 302
    assert ConsoleProfile.objects.get(user=administrator).time_zone == "Europe/Paris"
    body = admin_client_.get(runs).content.decode()
    assert "Times in Europe/Paris" in body and "2026-01-15 13:00:00" in body
    # The API keeps ISO 8601 with the offset, whatever the zone.
    before = api_for(administrator).get(f"/api/v1/runs/{run.pk}/").json()["started_at"]
    assert datetime.fromisoformat(before) == at
    assert admin_client_.get(f"/api/v1/runs/{run.pk}/").json()["started_at"] == before


def test_an_unknown_zone_is_refused_with_a_form_error(world, admin_client_, administrator):
    for bad in ("Mars/Olympus_Mons", "../../etc/passwd", "x" * 300):
        response = admin_client_.post(reverse("console:time-zone"), {"time_zone": bad})
        assert response.status_code == 400
        assert "not a known time zone" in response.content.decode()
    assert not ConsoleProfile.objects.filter(user=administrator).exclude(time_zone="").exists()
    admin_client_.cookies[TZ_COOKIE] = "Not/AZone"
    body = admin_client_.get("/").content.decode()
    assert "Times in UTC" in body
