"""What a visitor finds around the console: the API's index at /api/v1/, the icon every page
and browser asks for, and beat's periodic tasks among the admin's tables."""

import re

from django.contrib.auth import get_user_model
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from requestor import schedule
from tests.console.conftest import logged_in

API = "/api/v1/"


def test_the_api_root_lists_the_endpoints(admin_api):
    response = admin_api.get(API)

    assert response.status_code == 200, response.content
    index = response.json()
    for name in ("status", "organizations", "recipients", "runs", "messages", "held-batches"):
        assert index[name] == f"http://testserver{API}{name}/"
    # Every address listed answers.
    for url in index.values():
        assert admin_api.get(url).status_code == 200, url


def test_the_api_root_is_authenticated_like_the_api(anonymous_api):
    response = anonymous_api.get(API)

    assert response.status_code == 401
    assert "organizations" not in response.content.decode()


def test_favicon_is_served(anonymous_client):
    response = anonymous_client.get("/favicon.ico", follow=True)

    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert b"<svg" in b"".join(response.streaming_content)


def test_the_console_pages_name_an_icon_that_exists(admin_client_, world):
    page = admin_client_.get("/").content.decode()

    [href] = re.findall(r'<link rel="icon" [^>]*href="([^"]+)"', page)
    response = admin_client_.get(href)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"


def test_beats_periodic_tasks_are_listed_in_the_admin(world):
    every_minute, _ = IntervalSchedule.objects.get_or_create(
        every=1, period=IntervalSchedule.MINUTES
    )
    PeriodicTask.objects.create(
        name="interorg: housekeeping", task="transport.tasks.purge_archive", interval=every_minute
    )
    schedule.set_every_minutes(world.org2.config, 5)
    client = logged_in(get_user_model().objects.create_superuser("root", "root@example.com"))

    listing = client.get("/admin/django_celery_beat/periodictask/")

    assert listing.status_code == 200
    page = listing.content.decode()
    assert "interorg: housekeeping" in page
    assert '<td class="field-requestor">ORG2</td>' in page
    assert '<td class="field-runs">every 5 minutes</td>' in page
    cycle = world.org2.config.schedule_tasks.get()
    detail = client.get(f"/admin/django_celery_beat/periodictask/{cycle.pk}/change/")
    assert detail.status_code == 200
    # A requestor's entries are kept by its Schedule page: read here, never edited.
    assert 'name="_save"' not in detail.content.decode()
