"""Who may call each API endpoint: anonymous callers get 401, outsiders find nothing (404, or a
400 "does not exist" for a reference in a body), operators read but cannot change (403)."""

import pytest
from rest_framework.test import APIClient

from directory.constants import Role
from directory.factories import ContainerFactory
from directory.models import Organization, Recipient
from master.models import AllowedRequestor, MasterConfig
from requestor.models import Conflict, ExportedContainer, RequestorConfig, Run
from tests.console.conftest import add_history
from transport.models import Message

API = "/api/v1"


@pytest.fixture
def objects(world):
    """ORG2's objects, with a master of its own so that master endpoints have ORG2 rows."""
    org2 = world.org2
    add_history(org2)
    org2.organization.role = Role.BOTH
    org2.organization.save()
    master = MasterConfig.objects.create(
        organization=org2.organization,
        address="master@org2.example",
        dn="/o=ORG2/ou=Site2/cn=Recipients/cn=MASTER",
    )
    allowed = AllowedRequestor.objects.create(
        master=master, address="requestor@branch.example", organization_name="BRANCH"
    )
    conflict = Conflict.objects.create(
        config=org2.config,
        global_key="ORG3:x",
        origin="ORG3",
        display_name="Someone",
        address="person0@org2.example",
        reason="The address belongs to a local recipient.",
    )
    return {
        "org": org2.name,
        "container": org2.recipients.pk,
        "recipient": Recipient.objects.filter(organization=org2.organization)
        .exportable()
        .first()
        .pk,
        "run": Run.objects.filter(config=org2.config).first().pk,
        "message": Message.objects.filter(organization=org2.organization).first().pk,
        "conflict": conflict.pk,
        "config": org2.config.pk,
        "exported": ExportedContainer.objects.filter(config=org2.config).first().pk,
        "master": master.pk,
        "allowed": allowed.pk,
        "other_container": ContainerFactory(site=org2.recipients.site, name="Contractors").pk,
    }


READS = [
    "/status/",
    "/organizations/",
    "/organizations/{org}/",
    "/organizations/{org}/status/",
    "/containers/",
    "/containers/{container}/",
    "/recipients/",
    "/recipients/{recipient}/",
    "/recipients/{recipient}/history/",
    "/runs/",
    "/runs/{run}/",
    "/messages/",
    "/messages/{message}/",
    "/conflicts/",
    "/conflicts/{conflict}/",
    "/requestor-configs/",
    "/requestor-configs/{config}/",
    "/exported-containers/",
    "/exported-containers/{exported}/",
    "/master-configs/",
    "/master-configs/{master}/",
    "/allowed-requestors/",
    "/allowed-requestors/{allowed}/",
]
DETAILS = [path for path in READS if "{" in path]
LISTS = [path for path in READS if "{" not in path and path != "/status/"]


def new_recipient(ids):
    return {
        "container": ids["container"],
        "kind": "mailbox",
        "display_name": "New Person",
        "alias": "new.person",
        "primary_smtp": "new.person@org2.example",
    }


# (method, path, body); each changes something of ORG2
CHANGES = [
    ("post", "/recipients/", new_recipient),
    ("patch", "/recipients/{recipient}/", lambda ids: {"title": "Boss"}),
    ("delete", "/recipients/{recipient}/", None),
    ("patch", "/organizations/{org}/", lambda ids: {"display_name": "Renamed"}),
    ("delete", "/organizations/{org}/", None),
    ("patch", "/requestor-configs/{config}/", lambda ids: {"trust_level": 9}),
    ("delete", "/requestor-configs/{config}/", None),
    ("post", "/requestor-configs/{config}/execute-now/", None),
    ("post", "/requestor-configs/{config}/import-all/", None),
    ("post", "/requestor-configs/{config}/export-all/", None),
    (
        "post",
        "/exported-containers/",
        lambda ids: {"config": ids["config"], "container": ids["other_container"]},
    ),
    ("patch", "/exported-containers/{exported}/", lambda ids: {"custom_recipients": True}),
    ("delete", "/exported-containers/{exported}/", None),
    ("patch", "/master-configs/{master}/", lambda ids: {"max_attachment_size": 65536}),
    ("delete", "/master-configs/{master}/", None),
    (
        "post",
        "/allowed-requestors/",
        lambda ids: {
            "master": ids["master"],
            "address": "requestor@other.example",
            "organization_name": "OTHER",
        },
    ),
    ("patch", "/allowed-requestors/{allowed}/", lambda ids: {"enabled": False}),
    ("delete", "/allowed-requestors/{allowed}/", None),
]


def call(client, method: str, path: str, body, ids):
    url = API + path.format(**ids)
    data = body(ids) if body else None
    return getattr(client, method)(url, data, format="json")


def state() -> tuple:
    """Everything a change could touch, to check that a refused one touched nothing."""
    return (
        list(Recipient.objects.order_by("pk").values_list("pk", "title", "usn")),
        list(ExportedContainer.objects.order_by("pk").values_list("pk", "custom_recipients")),
        list(AllowedRequestor.objects.order_by("pk").values_list("pk", "enabled")),
        list(MasterConfig.objects.order_by("pk").values_list("pk", "max_attachment_size")),
        Run.objects.count(),
        list(
            RequestorConfig.objects.order_by("pk").values_list(
                "pk", "trust_level", "master_usn", "requestor_usn"
            )
        ),
        list(Organization.objects.order_by("pk").values_list("pk", "display_name")),
    )


def _id(value) -> str:
    if isinstance(value, tuple):
        return f"{value[0]} {value[1]}"
    return value


@pytest.mark.parametrize("path", READS, ids=_id)
def test_it_refuses_anonymous_reads(objects, anonymous_api, path):
    response = anonymous_api.get(API + path.format(**objects))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Token")


@pytest.mark.parametrize("change", CHANGES, ids=_id)
def test_it_refuses_anonymous_changes(objects, anonymous_api, change):
    before = state()
    assert call(anonymous_api, *change, objects).status_code == 401
    assert state() == before


@pytest.mark.parametrize("path", DETAILS, ids=_id)
def test_it_hides_other_organizations_objects_from_outsiders(objects, outsider_api, path):
    assert outsider_api.get(API + path.format(**objects)).status_code == 404


@pytest.mark.parametrize("path", LISTS, ids=_id)
def test_it_lists_only_the_callers_organizations(objects, outsider_api, path):
    response = outsider_api.get(API + path)
    assert response.status_code == 200
    rows = response.json()["results"]
    assert "ORG2" not in str(rows)


@pytest.mark.parametrize("change", CHANGES, ids=_id)
def test_it_refuses_changes_by_outsiders(objects, outsider_api, change):
    before = state()
    response = call(outsider_api, *change, objects)
    # An object of another organization does not exist for them; neither does a reference to one.
    expected = 400 if change[0] == "post" and "{" not in change[1] else 404
    assert response.status_code == expected, response.content
    assert state() == before


@pytest.mark.parametrize("path", READS, ids=_id)
def test_it_lets_operators_read(objects, operator_api, path):
    response = operator_api.get(API + path.format(**objects))
    assert response.status_code == 200
    assert "ORG2" in response.content.decode()


@pytest.mark.parametrize("change", CHANGES, ids=_id)
def test_it_refuses_changes_by_operators(objects, operator_api, change):
    before = state()
    assert call(operator_api, *change, objects).status_code == 403
    assert state() == before


@pytest.mark.parametrize(
    "change", [c for c in CHANGES if c[0] != "delete" or "organizations" not in c[1]], ids=_id
)
def test_it_lets_administrators_change(objects, admin_api, change):
    response = call(admin_api, *change, objects)
    # The requestor's buttons answer 202 Accepted with the run to follow.
    expected = (202,) if change[1].endswith(("-now/", "-all/")) else (200, 201, 204)
    assert response.status_code in expected, response.content


def test_it_keeps_organizations_for_installation_administrators(objects, admin_api):
    assert call(admin_api, "delete", "/organizations/{org}/", None, objects).status_code == 403
    response = admin_api.post(f"{API}/organizations/", {"name": "ORG7", "display_name": "Seven"})
    assert response.status_code == 403


def test_it_refuses_session_changes_without_csrf(objects, administrator):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(administrator)
    assert client.get(f"{API}/runs/").status_code == 200
    response = client.post(f"{API}/requestor-configs/{objects['config']}/execute-now/")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
