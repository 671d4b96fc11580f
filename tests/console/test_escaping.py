"""User-supplied text is escaped on every page: a recipient (or anything else) named
<script>alert(1)</script> is shown as text, never run."""

import pytest
from django.urls import reverse

from directory import changes
from directory.models import Organization
from master.models import AllowedRequestor
from requestor.models import Conflict, Run
from tests.console.conftest import add_history
from tests.console.test_views_access import ADMIN_PAGES, READ_PAGES, _ids, _name, url
from transport.models import Message

HOSTILE = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.fixture
def hostile(world):
    """Hostile text everywhere a user or a remote organization can put some."""
    org2 = world.org2
    add_history(org2)
    Organization.objects.filter(pk=org2.organization.pk).update(display_name=HOSTILE)
    person = org2.organization.recipients.exportable().first()
    person.display_name = HOSTILE
    person.title = HOSTILE
    person.address = HOSTILE
    changes.save_recipient(person)
    with changes.writing():  # as a hostile master's entries would have written them
        org2.organization.recipients.filter(global_key__isnull=False).update(
            display_name=HOSTILE, origin_organization=HOSTILE[:64]
        )
    Run.objects.filter(config=org2.config).update(error=HOSTILE, status="failed")
    Message.objects.filter(organization=org2.organization).update(
        error=HOSTILE, summary={HOSTILE: HOSTILE, "count": HOSTILE}, sender=HOSTILE
    )
    Conflict.objects.create(
        config=org2.config,
        global_key="k",
        origin=HOSTILE[:64],
        display_name=HOSTILE,
        address=HOSTILE,
        reason=HOSTILE,
    )
    org2.config.append_display_name = HOSTILE
    org2.config.save()
    AllowedRequestor.objects.filter(organization_name="ORG2").update(label=HOSTILE)
    return world


def assert_escaped(response) -> None:
    body = response.content.decode()
    assert HOSTILE not in body
    assert "<script>alert" not in body


@pytest.mark.parametrize("page", READ_PAGES + ADMIN_PAGES, ids=_name)
def test_it_escapes_hostile_text_on_every_page(hostile, admin_client_, page):
    response = admin_client_.get(url(hostile, *page), follow=True)
    assert response.status_code == 200
    assert_escaped(response)


@pytest.mark.parametrize(
    "page",
    [
        "console:overview",
        "console:server-type",
        "console:export-config",
        "console:runs",
        "console:messages",
        "console:conflicts",
    ],
)
def test_it_shows_the_hostile_text_as_text(hostile, admin_client_, page):
    response = admin_client_.get(reverse(page, kwargs={"org": "ORG2"}))
    assert ESCAPED in response.content.decode() or "&lt;script&gt;" in response.content.decode()


def test_it_escapes_the_dashboard(hostile, admin_client_):
    response = admin_client_.get(reverse("console:dashboard"))
    assert_escaped(response)
    assert ESCAPED in response.content.decode()


def test_it_escapes_the_message_detail_summary(hostile, admin_client_):
    response = admin_client_.get(url(hostile, "console:message", ["org", "message:pk"]))
    assert_escaped(response)
    assert ESCAPED in response.content.decode()


def test_it_escapes_a_hostile_search(hostile, admin_client_):
    ids = _ids(hostile)
    response = admin_client_.get(
        f"/o/ORG2/directory/containers/{ids['container']}/", {"q": HOSTILE}
    )
    assert_escaped(response)


def test_it_returns_hostile_text_as_json_data(hostile, admin_api):
    response = admin_api.get("/api/v1/recipients/", {"organization": "ORG2"})
    assert response["Content-Type"] == "application/json"
    assert HOSTILE in {row["display_name"] for row in response.json()["results"]}
