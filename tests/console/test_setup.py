"""Setting up without the demo: sites and containers created, renamed, moved and deleted from
the console and the API; a new organization added from either, with the pairing information
(agent address, key fingerprint) its administrator hands to the other installation; forms that
say clearly what is wrong with what they were given."""

import base64
import hashlib

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from console.constants import ADMINISTRATORS_GROUP, ConsoleRole
from directory.factories import ContainerFactory
from directory.models import Container, Organization, Site
from master.models import MasterConfig
from requestor.models import RequestorConfig
from tests.console.conftest import logged_in, make_user, token_client
from transport.models import SigningKey

HOSTILE = "<b>x</b>\x00"


def sites_of(org) -> list[str]:
    return sorted(Site.objects.filter(organization=org.organization).values_list("name", flat=True))


def independent_fingerprint(organization: Organization) -> str:
    """The active key's fingerprint recomputed here from the public key stored in the DB."""
    key = SigningKey.objects.get(organization=organization, active=True)
    return hashlib.sha256(base64.b64decode(key.public_key)).hexdigest()


@pytest.fixture
def installer(world):
    """A member of the InterOrg administrators group: may add organizations."""
    user = make_user("ivy")
    user.groups.add(Group.objects.get_or_create(name=ADMINISTRATORS_GROUP)[0])
    return user


# Sites --------------------------------------------------------------------------------------


def test_console_adds_renames_and_deletes_a_site(world, admin_client_):
    add = reverse("console:site-add", kwargs={"org": "ORG2"})
    assert admin_client_.post(add, {"name": "Branch"}).status_code == 302
    branch = Site.objects.get(organization=world.org2.organization, name="Branch")

    edit = reverse("console:site-edit", kwargs={"org": "ORG2", "pk": branch.pk})
    lab = ContainerFactory(site=branch, name="Lab")
    assert admin_client_.post(edit, {"name": "Annex"}).status_code == 302
    lab.refresh_from_db()
    assert lab.dn == "/o=ORG2/ou=Annex/cn=Lab"  # the containers' DNs follow

    delete = reverse("console:site-delete", kwargs={"org": "ORG2", "pk": branch.pk})
    refused = admin_client_.post(delete, {"confirm": "yes"}, follow=True)
    assert "still holds" in refused.content.decode()
    assert Site.objects.filter(pk=branch.pk).exists()

    lab.delete()
    assert admin_client_.post(delete, {"confirm": "yes"}).status_code == 302
    assert sites_of(world.org2) == ["Site2"]


def test_api_adds_renames_and_deletes_a_site(world, admin_api):
    made = admin_api.post(
        "/api/v1/sites/", {"organization": "ORG2", "name": "Branch"}, format="json"
    )
    assert made.status_code == 201, made.json()
    pk = made.json()["id"]
    assert made.json()["dn"] == "/o=ORG2/ou=Branch"
    lab = ContainerFactory(site=Site.objects.get(pk=pk), name="Lab")

    renamed = admin_api.patch(f"/api/v1/sites/{pk}/", {"name": "Annex"}, format="json")
    assert renamed.status_code == 200, renamed.json()
    lab.refresh_from_db()
    assert lab.dn == "/o=ORG2/ou=Annex/cn=Lab"

    refused = admin_api.delete(f"/api/v1/sites/{pk}/")
    assert refused.status_code == 409
    assert "still holds 1 container" in refused.json()["detail"]
    lab.delete()
    assert admin_api.delete(f"/api/v1/sites/{pk}/").status_code == 204
    assert sites_of(world.org2) == ["Site2"]


def test_site_names_clash_and_hostile_names_are_refused(world, admin_client_, admin_api):
    clash = admin_api.post("/api/v1/sites/", {"organization": "ORG2", "name": "site2"})
    assert clash.status_code == 400
    assert "already has a site of that name" in str(clash.json())

    hostile = admin_api.post("/api/v1/sites/", {"organization": "ORG2", "name": HOSTILE})
    assert hostile.status_code == 400

    add = reverse("console:site-add", kwargs={"org": "ORG2"})
    page = admin_client_.post(add, {"name": "<b>x</b>/y"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert 'class="error-summary"' in html
    assert sites_of(world.org2) == ["Site2"]


def test_only_administrators_change_sites(world, operator_client, operator_api, outsider_api):
    site = world.org2.recipients.site
    assert (
        operator_client.get(reverse("console:site-add", kwargs={"org": "ORG2"})).status_code == 403
    )
    refused = operator_api.post("/api/v1/sites/", {"organization": "ORG2", "name": "Mine"})
    assert refused.status_code in (400, 403)
    assert outsider_api.patch(f"/api/v1/sites/{site.pk}/", {"name": "Mine"}).status_code == 404
    assert outsider_api.delete(f"/api/v1/sites/{site.pk}/").status_code == 404
    assert sites_of(world.org2) == ["Site2"]


# Containers ---------------------------------------------------------------------------------


def test_a_container_moves_to_another_site_from_console_and_api(world, admin_client_, admin_api):
    annex = Site.objects.create(organization=world.org2.organization, name="Annex")
    lab = ContainerFactory(site=world.org2.recipients.site, name="Lab")
    inner = ContainerFactory(site=lab.site, parent=lab, name="Inner")

    edit = reverse("console:container-edit", kwargs={"org": "ORG2", "pk": lab.pk})
    assert (
        admin_client_.post(edit, {"site": annex.pk, "parent": "", "name": "Lab"}).status_code == 302
    )
    inner.refresh_from_db()
    assert (inner.site_id, inner.dn) == (annex.pk, "/o=ORG2/ou=Annex/cn=Lab/cn=Inner")

    back = admin_api.patch(
        f"/api/v1/containers/{lab.pk}/", {"site": world.org2.recipients.site_id}, format="json"
    )
    assert back.status_code == 200, back.json()
    inner.refresh_from_db()
    assert inner.dn == "/o=ORG2/ou=Site2/cn=Lab/cn=Inner"


def test_a_container_with_recipients_is_not_deleted(world, admin_api, admin_client_):
    full = world.org2.recipients
    refused = admin_api.delete(f"/api/v1/containers/{full.pk}/")
    assert refused.status_code == 409
    assert "holds 2 recipients" in refused.json()["detail"]
    delete = reverse("console:container-delete", kwargs={"org": "ORG2", "pk": full.pk})
    assert admin_client_.post(delete, {"confirm": "yes"}).status_code == 302
    page = admin_client_.get(reverse("console:containers", kwargs={"org": "ORG2"}))
    assert "holds 2 recipients" in page.content.decode()  # the refusal, shown as it returns
    assert Container.objects.filter(pk=full.pk).exists()


def test_container_name_clash_and_hostile_names(world, admin_api, admin_client_):
    site = world.org2.recipients.site_id
    clash = admin_api.post("/api/v1/containers/", {"site": site, "name": "recipients"})
    assert clash.status_code == 400
    assert "already exists" in str(clash.json())
    assert admin_api.post("/api/v1/containers/", {"site": site, "name": HOSTILE}).status_code == 400
    page = admin_client_.post(
        reverse("console:container-add", kwargs={"org": "ORG2"}),
        {"site": site, "parent": "", "name": "<i>a</i>/b"},
    )
    assert page.status_code == 200 and "<i>a</i>" not in page.content.decode()
    assert not Container.objects.filter(name__contains="<").exists()


def test_the_admin_deletes_through_the_same_rule(world, admin_client):
    response = admin_client.post(
        reverse("admin:directory_container_delete", args=[world.org2.recipients.pk]),
        {"post": "yes"},
        follow=True,
    )
    assert "holds 2 recipients" in response.content.decode()
    assert Container.objects.filter(pk=world.org2.recipients.pk).exists()


# Organizations -------------------------------------------------------------------------------

BRANCH = {
    "name": "ORG9",
    "display_name": "Branch nine",
    "mail_domain": "org9.example",
    "site": "Main",
    "containers": "Recipients\nInterOrg Contacts",
    "role": "requestor",
    "requestor_address": "interorg-org9@org9.example",
    "master_address": "master@org1.example",
}


def test_console_adds_an_organization_and_shows_its_pairing(world, installer):
    client = logged_in(installer)
    response = client.post(reverse("console:organization-add"), BRANCH, follow=True)
    assert response.status_code == 200
    org = Organization.objects.get(name="ORG9")
    assert org.mail_domain == "org9.example"
    assert [c.dn for c in Container.objects.filter(organization=org).order_by("dn")] == [
        "/o=ORG9/ou=Main/cn=InterOrg Contacts",
        "/o=ORG9/ou=Main/cn=Recipients",
    ]
    config = RequestorConfig.objects.get(organization=org)
    assert config.address == "interorg-org9@org9.example"
    assert config.import_container.name == "InterOrg Contacts"
    html = response.content.decode()
    assert response.redirect_chain[-1][0].endswith("/o/ORG9/pairing/")
    assert independent_fingerprint(org) in html
    assert "interorg-org9@org9.example" in html


def test_api_adds_a_master_and_answers_with_its_pairing(world, installer):
    api = token_client(installer)
    data = {
        **BRANCH,
        "name": "HUB",
        "mail_domain": "hub.example",
        "role": "master",
        "master_agent_address": "interorg-hub@hub.example",
        "containers": ["Recipients"],
    }
    data.pop("requestor_address")
    data.pop("master_address")
    response = api.post("/api/v1/organizations/setup/", data, format="json")
    assert response.status_code == 201, response.json()
    org = Organization.objects.get(name="HUB")
    body = response.json()
    assert body["fingerprint"] == independent_fingerprint(org)
    assert body["agents"] == [{"service": "master", "address": "interorg-hub@hub.example"}]
    assert MasterConfig.objects.get(organization=org).dn == "/o=HUB/ou=Main/cn=Recipients/cn=MASTER"
    again = api.get("/api/v1/organizations/HUB/pairing/")
    assert again.json()["fingerprint"] == body["fingerprint"]


def test_only_installation_administrators_add_organizations(world, administrator):
    client = logged_in(administrator)  # administrator of ORG2 only
    assert client.get(reverse("console:organization-add")).status_code == 403
    api = token_client(administrator)
    assert api.post("/api/v1/organizations/setup/", BRANCH, format="json").status_code == 403
    assert not Organization.objects.filter(name="ORG9").exists()


def test_a_bad_setup_is_refused_whole(world, installer):
    """A clash late in the setup (the requestor address is taken) leaves nothing behind."""
    api = token_client(installer)
    taken = {**BRANCH, "requestor_address": world.org2.config.address}
    response = api.post("/api/v1/organizations/setup/", taken, format="json")
    assert response.status_code == 400
    assert "requestor_address" in response.json()
    assert not Organization.objects.filter(name="ORG9").exists()
    assert not Site.objects.filter(name="Main").exists()


# Validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("domain", ["not a domain", "org9..example", "-bad.example", "a@b.example"])
def test_a_bad_mail_domain_is_named_in_the_summary_and_at_the_field(world, installer, domain):
    client = logged_in(installer)
    response = client.post(reverse("console:organization-add"), {**BRANCH, "mail_domain": domain})
    assert response.status_code == 200
    html = response.content.decode()
    summary = html.split('class="error-summary"', 1)[1].split("</div>", 1)[0]
    assert "Mail domain" in summary and "Enter a domain" in summary
    field = html.split('id="id_mail_domain"', 1)[1]
    assert "Enter a domain" in field.split("</div>", 1)[0]
    assert html.count("Enter a domain") == 2  # one message, in the summary and at the field
    assert not Organization.objects.filter(name="ORG9").exists()

    api = token_client(installer)
    refused = api.post("/api/v1/organizations/setup/", {**BRANCH, "mail_domain": domain})
    assert refused.status_code == 400
    assert refused.json()["mail_domain"] == [
        "Enter a domain such as org1.example: letters, digits and hyphens between dots."
    ]


def test_forms_mark_required_fields_and_offer_cancel(world, installer, admin_client_):
    html = logged_in(installer).get(reverse("console:organization-add")).content.decode()
    assert 'class="required"' in html and ">Cancel</a>" in html
    for url in (
        reverse("console:site-add", kwargs={"org": "ORG2"}),
        reverse("console:container-add", kwargs={"org": "ORG2"}),
        reverse("console:server-type", kwargs={"org": "ORG2"}),
    ):
        assert ">Cancel</a>" in admin_client_.get(url).content.decode(), url


def test_the_server_type_form_checks_the_mail_domain(world, admin_client_):
    response = admin_client_.post(
        reverse("console:server-type", kwargs={"org": "ORG2"}),
        {"display_name": "Two", "role": "requestor", "mail_domain": "bad domain"},
    )
    assert "Enter a domain" in response.content.decode()
    world.org2.organization.refresh_from_db()
    assert world.org2.organization.mail_domain == "org2.example"


def test_a_container_does_not_move_to_another_organizations_site(world):
    """Someone who administers two organizations sees both's sites, but a container stays in its
    own: a move to another organization's site (or into one of its containers) is a clear 400
    and changes nothing."""
    both = make_user(
        "both",
        {
            world.org2.organization: ConsoleRole.ADMINISTRATOR,
            world.org3.organization: ConsoleRole.ADMINISTRATOR,
        },
    )
    admin_api = token_client(both)
    lab = ContainerFactory(site=world.org2.recipients.site, name="Lab")
    elsewhere = world.org3.recipients
    for body in (
        {"name": "Lab", "site": elsewhere.site_id},
        {"site": elsewhere.site_id, "parent": elsewhere.pk},
        {"parent": elsewhere.pk},
    ):
        refused = admin_api.patch(f"/api/v1/containers/{lab.pk}/", body, format="json")
        assert refused.status_code == 400, (body, refused.content)
        assert "ORG2" in str(refused.json()), refused.json()
        moved = Container.objects.get(pk=lab.pk)
        assert (moved.site_id, moved.organization_id, moved.dn) == (
            lab.site_id,
            lab.organization_id,
            "/o=ORG2/ou=Site2/cn=Lab",
        )
    replaced = admin_api.put(
        f"/api/v1/containers/{lab.pk}/", {"name": "type", "site": elsewhere.site_id}, format="json"
    )
    assert replaced.status_code == 400, replaced.content


def test_the_admin_keeps_a_container_in_its_organization(world, admin_client):
    lab = ContainerFactory(site=world.org2.recipients.site, name="Lab")
    change = reverse("admin:directory_container_change", args=[lab.pk])
    page = admin_client.post(change, {"site": world.org3.recipients.site_id, "name": "Lab"})
    assert page.status_code == 200  # the form again, with the error
    assert "A container stays in its organization (ORG2)" in page.content.decode()
    assert Container.objects.get(pk=lab.pk).dn == "/o=ORG2/ou=Site2/cn=Lab"
