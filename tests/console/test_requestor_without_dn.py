"""A requestor that reaches its master only over SMTP has no use for an EX address (DN): the
console's pages, the API and the admin take it without one, and ask for one only when the master
is reached by its EX address, the one case where the replies come back to it."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from console.models import OrganizationRole
from directory.factories import OrganizationFactory
from requestor.models import RequestorConfig
from tests.console.conftest import MASTER_DN, logged_in
from tests.console.test_requestor_pages import export_data, import_data
from tests.workers.test_admin import form_data
from transport.registry import is_local_address

NEEDS_DN = "needs its own EX address (DN)"


def administrator_of(*organizations):
    user = get_user_model().objects.create_user("erin")
    for organization in organizations:
        OrganizationRole.objects.create(user=user, organization=organization, role="administrator")
    return logged_in(user)


@pytest.fixture
def smtp_only(world):
    """ORG2, its master reached by SMTP address."""
    RequestorConfig.objects.filter(pk=world.org2.config.pk).update(
        master_address="master@org1.example"
    )
    world.org2.config.refresh_from_db()
    return world.org2.config


def test_the_setup_page_takes_a_requestor_without_dn(db, world):
    first, second = (
        OrganizationFactory(name=f"ORG{n}", mail_domain=f"org{n}.example") for n in (5, 6)
    )
    client = administrator_of(first, second)

    for org in (first, second):  # two of them: a missing DN is not a duplicate
        response = client.post(
            f"/o/{org.name}/requestor/setup/",
            {
                "enabled": "on",
                "address": f"requestor@{org.mail_domain}",
                "master_address": "master@hub.example",
            },
        )
        assert response.status_code == 302, response.content.decode()
        assert RequestorConfig.objects.get(organization=org).dn == ""


def test_the_setup_page_asks_for_the_dn_when_the_master_is_reached_by_ex(db, world):
    org = OrganizationFactory(name="ORG5", mail_domain="org5.example")
    client = administrator_of(org)

    response = client.post(
        "/o/ORG5/requestor/setup/",
        {"enabled": "on", "address": "requestor@org5.example", "master_address": MASTER_DN},
    )

    assert response.status_code == 200
    assert NEEDS_DN in response.content.decode()
    assert not RequestorConfig.objects.filter(organization=org).exists()


def test_export_config_can_leave_the_dn_out(smtp_only, admin_client_, world):
    page = admin_client_.get(reverse("console:export-config", kwargs={"org": "ORG2"}))
    assert "only when the master runs in this installation" in page.content.decode()

    response = admin_client_.post(
        reverse("console:export-config", kwargs={"org": "ORG2"}), export_data(smtp_only, dn="")
    )

    assert response.status_code == 302, response.content.decode()
    smtp_only.refresh_from_db()
    assert smtp_only.dn == ""
    assert smtp_only.own_address == "requestor@org2.example"


def test_import_config_refuses_an_ex_master_without_dn(smtp_only, admin_client_):
    RequestorConfig.objects.filter(pk=smtp_only.pk).update(dn="")
    smtp_only.refresh_from_db()

    response = admin_client_.post(
        reverse("console:import-config", kwargs={"org": "ORG2"}),
        import_data(smtp_only, master_address=MASTER_DN, master_address_type="EX"),
    )

    assert response.status_code == 200
    assert NEEDS_DN in response.content.decode()
    smtp_only.refresh_from_db()
    assert smtp_only.master_address == "master@org1.example"


def test_the_api_takes_a_requestor_without_dn(smtp_only, admin_api):
    url = f"/api/v1/requestor-configs/{smtp_only.pk}/"

    response = admin_api.patch(url, {"dn": ""}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["dn"] == ""

    response = admin_api.patch(url, {"master_address": MASTER_DN}, format="json")
    assert response.status_code == 400
    assert NEEDS_DN in response.content.decode()
    smtp_only.refresh_from_db()
    assert (smtp_only.dn, smtp_only.master_address) == ("", "master@org1.example")


def test_two_requestors_may_both_be_without_dn_but_not_share_one(smtp_only, world):
    world.org3.config.master_address = "master@org1.example"
    world.org3.config.dn = ""
    smtp_only.dn = ""
    smtp_only.full_clean()
    smtp_only.save()
    world.org3.config.full_clean()
    world.org3.config.save()

    world.org3.config.dn = world.org1.config.dn
    with pytest.raises(Exception, match="EX address"):
        world.org3.config.full_clean()


def test_an_empty_address_reaches_no_requestor_without_dn(smtp_only):
    RequestorConfig.objects.filter(pk=smtp_only.pk).update(dn="")

    assert not is_local_address("")
    assert is_local_address("requestor@org2.example")


def test_the_admin_takes_a_requestor_without_dn_and_asks_for_one_for_an_ex_master(
    smtp_only, admin_client
):
    url, data = form_data(admin_client, smtp_only, dn="")
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    smtp_only.refresh_from_db()
    assert smtp_only.dn == ""

    url, data = form_data(admin_client, smtp_only, master_address=MASTER_DN)
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert NEEDS_DN in str(response.context["adminform"].form.errors)
    smtp_only.refresh_from_db()
    assert smtp_only.master_address == "master@org1.example"
