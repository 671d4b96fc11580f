"""Who may open and post each console page: anonymous visitors are sent to the login page,
outsiders find nothing (404), operators read but cannot change (403), administrators can."""

import pytest
from django.test import Client
from django.urls import reverse

from directory.models import Recipient
from requestor.models import Run
from tests.console.conftest import add_history
from transport.models import Message


@pytest.fixture
def synced(world):
    """The world with a run, messages and an imported contact in ORG2."""
    add_history(world.org2)
    return world


def _ids(world) -> dict:
    org2 = world.org2.organization
    return {
        "org": org2.name,
        "container": world.org2.recipients.pk,
        "recipient": Recipient.objects.filter(organization=org2).exportable().first().pk,
        "run": Run.objects.filter(config__organization=org2).first().pk,
        "message": Message.objects.filter(organization=org2).first().pk,
    }


# (url name, the URL's arguments from _ids)
READ_PAGES = [
    ("console:overview", ["org"]),
    ("console:server-type", ["org"]),
    ("console:directory-service", ["org"]),
    ("console:master-config", ["org"]),
    ("console:export-config", ["org"]),
    ("console:import-config", ["org"]),
    ("console:schedule", ["org"]),
    ("console:containers", ["org"]),
    ("console:container", ["org", "container:pk"]),
    ("console:recipient", ["org", "recipient:pk"]),
    ("console:recipient-history", ["org", "recipient:pk"]),
    ("console:history", ["org"]),
    ("console:runs", ["org"]),
    ("console:run", ["org", "run:pk"]),
    ("console:messages", ["org"]),
    ("console:message", ["org", "message:pk"]),
    ("console:conflicts", ["org"]),
]
ADMIN_PAGES = [
    ("console:requestor-setup", ["org"]),
    ("console:import-all", ["org"]),
    ("console:export-all", ["org"]),
    ("console:recipient-add", ["org", "container:container"]),
    ("console:recipient-edit", ["org", "recipient:pk"]),
    ("console:recipient-delete", ["org", "recipient:pk"]),
]
CHANGES = [
    ("console:server-type", ["org"]),
    ("console:directory-service", ["org"]),
    ("console:recipient-trust-level", ["org", "recipient:pk"]),
    ("console:master-config", ["org"]),
    ("console:export-config", ["org"]),
    ("console:import-config", ["org"]),
    ("console:schedule", ["org"]),
    ("console:execute-now", ["org"]),
    *ADMIN_PAGES,
]


def url(world, name: str, args: list[str]) -> str:
    ids = _ids(world)
    kwargs = {}
    for arg in args:
        key, _, kwarg = arg.partition(":")
        kwargs[kwarg or key] = ids[key]
    return reverse(name, kwargs=kwargs)


def _name(param) -> str:
    return param[0].split(":")[1] if isinstance(param, tuple) else str(param)


@pytest.mark.parametrize("page", READ_PAGES + ADMIN_PAGES, ids=_name)
def test_it_sends_anonymous_visitors_to_the_login_page(synced, anonymous_client, page):
    target = url(synced, *page)
    response = anonymous_client.get(target)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("page", CHANGES, ids=_name)
def test_it_refuses_changes_by_anonymous_visitors(synced, anonymous_client, page):
    before = Run.objects.count()
    response = anonymous_client.post(url(synced, *page), {})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert Run.objects.count() == before


@pytest.mark.parametrize("page", READ_PAGES + ADMIN_PAGES, ids=_name)
def test_it_hides_the_organization_from_outsiders(synced, outsider_client, page):
    assert outsider_client.get(url(synced, *page)).status_code == 404


@pytest.mark.parametrize("page", CHANGES, ids=_name)
def test_it_refuses_changes_by_outsiders(synced, outsider_client, page):
    before = Run.objects.count()
    assert outsider_client.post(url(synced, *page), {}).status_code == 404
    assert Run.objects.count() == before


@pytest.mark.parametrize("page", READ_PAGES, ids=_name)
def test_it_shows_every_page_to_operators(synced, operator_client, page):
    response = operator_client.get(url(synced, *page))
    assert response.status_code == 200
    assert b"Read only" in response.content


@pytest.mark.parametrize("page", ADMIN_PAGES, ids=_name)
def test_it_refuses_administrator_pages_to_operators(synced, operator_client, page):
    assert operator_client.get(url(synced, *page)).status_code == 403


@pytest.mark.parametrize("page", CHANGES, ids=_name)
def test_it_refuses_changes_by_operators(synced, operator_client, page):
    before = (Run.objects.count(), Recipient.objects.count())
    assert operator_client.post(url(synced, *page), {"confirm": "yes"}).status_code == 403
    assert (Run.objects.count(), Recipient.objects.count()) == before


@pytest.mark.parametrize("page", READ_PAGES + ADMIN_PAGES, ids=_name)
def test_it_shows_every_page_to_administrators(synced, admin_client_, page):
    response = admin_client_.get(url(synced, *page), follow=True)
    assert response.status_code == 200
    assert b"Administrator" in response.content


def test_it_shows_the_dashboard_with_only_the_users_organizations(synced, operator_client):
    response = operator_client.get(reverse("console:dashboard"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Organization 2" in body
    assert "Organization 3" not in body
    assert "Organization 1" not in body


def test_it_shows_superusers_every_organization(synced, django_user_model):
    root = django_user_model.objects.create_superuser("root", "root@example.com", "x")
    client = Client()
    client.force_login(root)
    body = client.get(reverse("console:dashboard")).content.decode()
    assert all(f"Organization {n}" in body for n in (1, 2, 3))


@pytest.mark.parametrize("page", CHANGES, ids=_name)
def test_it_requires_the_csrf_token_on_every_form(synced, administrator, page):
    client = Client(enforce_csrf_checks=True)
    client.force_login(administrator)
    before = Run.objects.count()
    assert client.post(url(synced, *page), {"confirm": "yes"}).status_code == 403
    assert Run.objects.count() == before


def test_it_logs_in_and_out(world, administrator):
    client = Client(enforce_csrf_checks=True)
    page = client.get(reverse("login"))
    token = page.cookies["csrftoken"].value
    response = client.post(
        reverse("login"),
        {"username": "alice", "password": "correct-horse-battery-staple"},
        HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code == 302
    assert client.get(reverse("console:dashboard")).status_code == 200
    token = client.cookies["csrftoken"].value
    client.post(reverse("logout"), HTTP_X_CSRFTOKEN=token)
    assert client.get(reverse("console:dashboard")).status_code == 302


def test_it_refuses_a_wrong_password(world, administrator):
    response = Client().post(reverse("login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b"did not match" in response.content
