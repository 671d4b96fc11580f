"""Hostile input never ends in a server error: a NUL character anywhere in a request (its path,
query string, form fields, cookies, headers or JSON values) and JSON nested deeper than anyone
needs are refused with 400 and a message, before a view or the database sees them. PostgreSQL
refuses NUL in text outright (a 500 without this guard); SQLite would store it."""

import json

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from directory.models import Recipient
from requestor.models import Run
from tests.console.conftest import add_history
from tests.console.test_views_access import ADMIN_PAGES, CHANGES, READ_PAGES, _name, url

NUL = "\x00"
MESSAGE = b"NUL character"
# Every parameter a console page, an admin list or the API reads from the query string.
PARAMETERS = ["q", "status", "direction", "page", "at", "org", "organization", "term", "search"]


@pytest.fixture
def synced(world):
    add_history(world.org2)
    return world


@pytest.fixture
def root(db, django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "x")


@pytest.fixture
def root_client(root) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(root)
    return client


def organization_pages(world) -> list[str]:
    """Every console page of an organization with a search box, filter or form, and the
    dashboard's search."""
    org = world.org2.name
    pages = [url(world, *page) for page in READ_PAGES + ADMIN_PAGES]
    pages += [
        reverse(f"console:{name}", kwargs={"org": org})
        for name in ("explain", "history", "address-book-as-of", "alerts", "held", "preview")
    ]
    return [*pages, reverse("console:dashboard"), reverse("console:explain-search")]


def assert_refused(response, api: bool = False) -> None:
    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert MESSAGE in response.content
    if api:
        assert response["Content-Type"] == "application/json"
        assert "detail" in response.json()
    else:
        assert response["Content-Type"].startswith("text/html")


def test_it_refuses_a_nul_in_every_query_parameter_of_every_console_page(synced, root_client):
    for page in organization_pages(synced):
        for parameter in PARAMETERS:
            response = root_client.get(page, {parameter: f"a{NUL}b"})
            assert_refused(response)


def test_it_refuses_a_nul_in_a_parameter_name(synced, root_client):
    assert_refused(root_client.get(reverse("console:dashboard"), {f"q{NUL}": "x"}))


def test_it_refuses_a_nul_in_the_path(synced, root_client):
    assert_refused(root_client.get("/o/ORG%002/"))
    assert_refused(root_client.get("/api/v1/organizations/ORG%002/explain/?q=x"), api=True)


def test_it_refuses_a_nul_in_a_cookie_or_header(synced, root_client):
    root_client.cookies["sessionid"] = f"abcdefgh{NUL}"
    assert_refused(root_client.get(reverse("console:dashboard")))
    anonymous = Client(raise_request_exception=False)
    response = anonymous.get("/api/v1/runs/", HTTP_AUTHORIZATION=f"Token abc{NUL}def")
    assert_refused(response, api=True)


@pytest.mark.parametrize("page", CHANGES, ids=_name)
def test_it_refuses_a_nul_in_every_console_form_and_changes_nothing(synced, root_client, page):
    target = url(synced, *page)
    before = (Run.objects.count(), list(Recipient.objects.values_list("display_name", flat=True)))
    data = {"confirm": "yes", "display_name": f"x{NUL}", "alias": "y", "reason": NUL, "next": NUL}
    assert_refused(root_client.post(target, data))
    after = (Run.objects.count(), list(Recipient.objects.values_list("display_name", flat=True)))
    assert after == before


def test_it_refuses_a_nul_in_a_form_of_either_encoding(synced, root_client):
    target = reverse("console:alerts", kwargs={"org": synced.org2.name})
    assert_refused(root_client.post(target, {"addresses": f"a@b.example{NUL}"}))
    encoded = "addresses=a%40b.example%00"
    form = "application/x-www-form-urlencoded"
    assert_refused(root_client.post(target, encoded, content_type=form))
    assert_refused(
        root_client.patch("/api/v1/organizations/ORG2/alerts/", encoded, content_type=form),
        api=True,
    )


def test_it_refuses_a_nul_on_the_login_page(world):
    client = Client(raise_request_exception=False)
    assert_refused(client.post(reverse("login"), {"username": f"alice{NUL}", "password": "x"}))
    assert_refused(client.post(reverse("admin:login"), {"username": NUL, "password": NUL}))


def admin_changelists() -> list[str]:
    return [
        reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        for model in admin.site._registry
    ]


def test_it_refuses_a_nul_in_every_admin_search_and_filter(synced, root_client):
    changelists = admin_changelists()
    assert len(changelists) > 10
    for changelist in changelists:
        for parameter in ("q", "status", "direction", "organization__id__exact", "o", "p"):
            assert_refused(root_client.get(changelist, {parameter: NUL}))


def test_it_refuses_a_nul_in_the_admin_autocomplete(synced, root_client):
    query = {
        "term": f"a{NUL}",
        "app_label": "directory",
        "model_name": "recipient",
        "field_name": "container",
    }
    assert_refused(root_client.get(reverse("admin:autocomplete"), query))


def test_it_refuses_a_nul_in_an_admin_form(synced, root_client):
    organization = synced.org2.organization
    target = reverse("admin:directory_organization_change", args=[organization.pk])
    assert_refused(root_client.post(target, {"name": "ORG2", "display_name": f"x{NUL}"}))
    organization.refresh_from_db()
    assert organization.display_name == "Organization 2"


def api_paths(world) -> list[str]:
    org = world.org2.name
    return [
        "/api/v1/status/",
        "/api/v1/organizations/",
        "/api/v1/containers/",
        "/api/v1/recipients/",
        "/api/v1/runs/",
        "/api/v1/messages/",
        "/api/v1/conflicts/",
        "/api/v1/held-batches/",
        "/api/v1/alert-events/",
        f"/api/v1/organizations/{org}/explain/",
        f"/api/v1/organizations/{org}/history/",
        f"/api/v1/organizations/{org}/address-book/",
    ]


def test_it_refuses_a_nul_in_every_api_query_parameter(synced, root_client):
    for path in api_paths(synced):
        for parameter in PARAMETERS:
            assert_refused(root_client.get(path, {parameter: NUL}), api=True)


def write_targets(world) -> list[tuple[str, str]]:
    """(method, path) of API writes that read a JSON body (an action that reads none, such as
    execute-now, never decodes what it is sent)."""
    org2 = world.org2
    recipient = org2.organization.recipients.exportable().first()
    return [
        ("post", "/api/v1/recipients/"),
        ("patch", f"/api/v1/recipients/{recipient.pk}/"),
        ("put", f"/api/v1/requestor-configs/{org2.config.pk}/"),
        ("patch", f"/api/v1/master-configs/{world.master.pk}/"),
        ("post", "/api/v1/exported-containers/"),
        ("patch", f"/api/v1/allowed-requestors/{world.master.requestors.first().pk}/"),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"display_name": f"a{NUL}b", "alias": "x"},
        {f"display{NUL}name": "a"},
        {"display_name": "a", "members": [{"nested": [f"deep{NUL}"]}]},
    ],
    ids=["value", "key", "nested"],
)
def test_it_refuses_a_nul_in_a_json_value(synced, root_client, body):
    before = list(Recipient.objects.values_list("display_name", "alias"))
    for method, path in write_targets(synced):
        response = getattr(root_client, method)(
            path, json.dumps(body), content_type="application/json"
        )
        assert_refused(response, api=True)
    assert list(Recipient.objects.values_list("display_name", "alias")) == before


@pytest.mark.parametrize("depth", [100, 5_000, 100_000])
def test_it_refuses_deeply_nested_json(synced, root_client, depth):
    for opening, closing in (("[", "]"), ('{"a":', "}")):
        body = opening * depth + "1" + closing * depth
        for method, path in write_targets(synced):
            response = getattr(root_client, method)(path, body, content_type="application/json")
            assert response.status_code == 400, (method, path, response.status_code)
            assert b"nested" in response.content


def test_it_still_accepts_ordinary_json(synced, root_client):
    recipient = synced.org2.organization.recipients.exportable().first()
    response = root_client.patch(
        f"/api/v1/recipients/{recipient.pk}/",
        json.dumps({"display_name": "Renamed Person"}),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    recipient.refresh_from_db()
    assert recipient.display_name == "Renamed Person"
