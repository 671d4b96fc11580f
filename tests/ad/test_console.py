"""The console and the API of an organization whose directory is Active Directory (a real Samba
domain controller): the Directory Service page and its Test connection, the API's settings, and
the directory browser reading the domain live beside the mirror."""

import pytest

from console.constants import ConsoleRole
from directory.constants import Backend, DisabledAccounts, HiddenEntries
from directory.models import Container, LdapDirectory, Organization, Recipient
from tests.ad.domain import Domain
from tests.console.conftest import logged_in, make_user, token_client

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def domain(ad_dc):
    """BRANCH, scanned: Ada and Bob (a disabled account) in OU=Staff, the Staff group, and one
    contact imported from ORG1 written into OU=InterOrg."""
    ad_dc.ldap_tool("ldapadd", f"dn: OU=Staff,{ad_dc.base_dn}\nobjectClass: organizationalUnit\n\n")
    for name, extra in (("ada", []), ("bob", ["--must-change-at-next-login"])):
        ad_dc.samba_tool(
            "user",
            "create",
            name,
            "Passw0rd!x1",
            "--userou=OU=Staff",
            f"--given-name={name.title()}",
            "--surname=Example",
            f"--mail-address={name}@branch.example",
            *extra,
        )
    ad_dc.samba_tool("user", "disable", "bob")
    ad_dc.samba_tool(
        "group", "add", "Staff", "--groupou=OU=Staff", "--mail-address=staff@branch.example"
    )
    domain = Domain(ad_dc, scanned=True)
    domain.contact("grace", "Grace Hopper", title="Admiral")
    domain.publish()
    return domain


@pytest.fixture
def admin(domain):
    return logged_in(make_user("alice", {domain.organization: ConsoleRole.ADMINISTRATOR}))


def form(domain, **changes) -> dict:
    data = {
        "directory_backend": Backend.ACTIVE_DIRECTORY,
        "uri": domain.dc.uri,
        "start_tls": "on",
        "ca_file": str(domain.dc.ca_file),
        "bind_dn": domain.dc.bind_user,
        "password": "",
        "base_dn": domain.dc.base_dn,
        "timeout": 5,
        "unit_dns": "",
        "disabled_accounts": DisabledAccounts.LEAVE_OUT,
        "hidden_entries": HiddenEntries.HIDDEN_FROM_OTHERS,
    }
    data.update(changes)
    return data


def test_the_directory_service_page_offers_active_directory_and_its_settings(domain, admin):
    body = admin.get("/o/BRANCH/directory-service/").content.decode()
    assert 'value="ad"' in body and "Active Directory" in body
    for name in ("unit_dns", "disabled_accounts", "hidden_entries", "address_book_only"):
        assert f'name="{name}"' in body
    # The state: the watermark and the domain controller it belongs to.
    directory = LdapDirectory.objects.get(pk=domain.directory.pk)
    assert directory.usn_watermark > 0
    assert f"<code>{directory.usn_watermark}</code>" in body
    assert directory.invocation_id in body and "dc1.branch.example" in body
    assert "the first scan of this directory" in body
    assert f'class="deletes-read">{directory.get_deletes_read_display()}<' in body
    assert 'badge-ldap">Active Directory<' in body
    assert 'badge-ldap">AD<' in admin.get("/").content.decode()  # the dashboard


def test_it_saves_the_units_and_rules(domain, admin):
    staff = f"OU=Staff,{domain.dc.base_dn}"
    response = admin.post(
        "/o/BRANCH/directory-service/",
        form(
            domain,
            unit_dns=f"{staff}\n{domain.imports}\n",
            disabled_accounts=DisabledAccounts.INCLUDE,
            hidden_entries=HiddenEntries.LEAVE_OUT,
            address_book_only="on",
        ),
        follow=True,
    )
    assert "Directory of BRANCH saved." in response.content.decode()
    directory = LdapDirectory.objects.get(pk=domain.directory.pk)
    assert directory.unit_dns.split() == [staff, domain.imports]
    assert directory.password == domain.dc.password  # kept
    assert (directory.disabled_accounts, directory.hidden_entries) == ("include", "leave_out")
    assert directory.address_book_only


def test_it_refuses_units_outside_the_base_dn(domain, admin):
    response = admin.post(
        "/o/BRANCH/directory-service/", form(domain, unit_dns="OU=Elsewhere,DC=other,DC=example")
    )
    assert "is not under the base DN" in response.content.decode()
    response = admin.post("/o/BRANCH/directory-service/", form(domain, unit_dns="not a DN"))
    assert "is not a DN" in response.content.decode()
    assert LdapDirectory.objects.get(pk=domain.directory.pk).unit_dns == ""


def test_test_connection_reports_the_domain_controller_and_its_controls(domain, admin):
    response = admin.post("/o/BRANCH/directory-service/", form(domain, test="1"))
    body = response.content.decode()
    assert "Connection works." in body
    assert "Connected to domain controller dc1.branch.example" in body
    assert "Highest committed USN " in body
    assert "Show Deleted control supported" in body and "DirSync control supported" in body
    # Ada, Bob and the Staff group (our contact is not a recipient of BRANCH).
    assert f"3 recipients under {domain.dc.base_dn}" in body

    response = admin.post("/o/BRANCH/directory-service/", form(domain, password="wrong", test="1"))
    assert "refused the bind DN and password" in response.content.decode()


def test_the_api_sets_and_tests_active_directory(domain):
    api = token_client(make_user("root", is_superuser=True))
    body = api.get("/api/v1/organizations/BRANCH/directory/").json()
    assert body["directory_backend"] == "ad"
    assert body["state"]["usn_watermark"] > 0
    assert body["state"]["dc_host"] == "dc1.branch.example"
    assert body["state"]["full_scan_reason"] == "the first scan of this directory"
    assert body["state"]["deletes_read"] in ("tombstones", "listing")

    staff = f"OU=Staff,{domain.dc.base_dn}"
    response = api.patch(
        "/api/v1/organizations/BRANCH/directory/",
        {"unit_dns": staff, "hidden_entries": "include"},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["unit_dns"] == staff
    bad = api.patch(
        "/api/v1/organizations/BRANCH/directory/", {"unit_dns": "OU=X,DC=nope"}, format="json"
    )
    assert bad.status_code == 400 and "unit_dns" in bad.json()

    result = api.post("/api/v1/organizations/BRANCH/directory/test/").json()
    highest = int(
        domain.dc.ldap_tool("ldapsearch", "", "-b", "", "-s", "base", "highestCommittedUSN")
        .split("highestCommittedUSN: ")[1]
        .split()[0]
    )
    assert result["ok"] is True and result["recipients"] == 3
    assert result["dc_host"] == "dc1.branch.example"
    assert result["dc_service_name"].startswith("CN=NTDS Settings,CN=DC1,")
    assert result["highest_usn"] == highest
    assert result["show_deleted"] is True and result["dirsync"] is True


def test_an_organization_switches_to_active_directory_from_the_api(domain):
    Organization.objects.filter(pk=domain.organization.pk).update(directory_backend="builtin")
    api = token_client(make_user("root", is_superuser=True))
    response = api.patch(
        "/api/v1/organizations/BRANCH/directory/", {"directory_backend": "ad"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert Organization.objects.get(pk=domain.organization.pk).uses_ad


def test_the_browser_lists_the_ous_and_the_users_container(domain, admin):
    body = admin.get("/o/BRANCH/directory/").content.decode()
    for dn in (f"OU=Staff,{domain.dc.base_dn}", domain.imports, f"CN=Users,{domain.dc.base_dn}"):
        assert f'<code class="small">{dn}</code>' in body
    # The OU where hidden contacts wait is ours, not the organization's.
    assert "InterOrg Sync hidden contacts" not in body
    directory = LdapDirectory.objects.get(pk=domain.directory.pk)
    assert f"<code>{directory.usn_watermark}</code>" in body and directory.invocation_id in body


def test_the_browser_reads_a_unit_live_and_marks_imported_contacts(domain, admin):
    staff = Container.objects.get(organization=domain.organization, name="Staff")
    body = admin.get(f"/o/BRANCH/directory/containers/{staff.pk}/").content.decode()
    assert "Ada Example" in body
    assert "ada@branch.example" in body and "staff@branch.example" in body
    assert "bob@branch.example" in body  # in AD, though its disabled account is left out
    assert "disabled account: left out" in body
    ada = Recipient.objects.get(organization=domain.organization, alias="ada")
    assert f"/o/BRANCH/directory/recipients/{ada.pk}/" in body
    users = Container.objects.get(organization=domain.organization, name="Users")
    body = admin.get(f"/o/BRANCH/directory/containers/{users.pk}/").content.decode()
    assert "Administrator" in body and "no mail: not a recipient" in body

    body = admin.get(f"/o/BRANCH/directory/containers/{domain.container.pk}/").content.decode()
    assert "Grace Hopper" in body and "imported from ORG1" in body

    found = admin.get(f"/o/BRANCH/directory/containers/{staff.pk}/?q=staff@").content.decode()
    assert "staff@branch.example" in found and "ada@branch.example" not in found


def test_the_browser_shows_an_object_beside_its_mirror(domain, admin):
    ada = Recipient.objects.get(organization=domain.organization, alias="ada")
    body = admin.get(f"/o/BRANCH/directory/recipients/{ada.pk}/").content.decode()
    assert f"CN=Ada Example,OU=Staff,{domain.dc.base_dn}" in body
    assert str(ada.guid) in body and "objectGUID" in body and "uSNChanged" in body

    grace = Recipient.objects.get(organization=domain.organization, global_key="ORG1:grace")
    body = admin.get(f"/o/BRANCH/directory/recipients/{grace.pk}/").content.decode()
    assert f"CN=Grace Hopper,{domain.imports}" in body
    assert "SMTP:grace@org1.example" in body and "Admiral" in body
    assert "InterOrg Sync contact" in body


def test_the_pages_say_when_the_domain_controller_cannot_be_reached(domain, admin):
    staff = Container.objects.get(organization=domain.organization, name="Staff")
    domain.dc.stop()
    for url in ("/o/BRANCH/directory/", f"/o/BRANCH/directory/containers/{staff.pk}/"):
        response = admin.get(url)
        assert response.status_code == 200
        assert "cannot be reached" in response.content.decode()


def test_the_browser_queries_do_not_grow_with_the_objects(domain, admin):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from directory.ad.scan import scan

    staff = Container.objects.get(organization=domain.organization, name="Staff")

    def queries() -> list[int]:
        counts = []
        for url in (
            "/o/BRANCH/directory/",
            f"/o/BRANCH/directory/containers/{staff.pk}/",
        ):
            with CaptureQueriesContext(connection) as captured:
                assert admin.get(url).status_code == 200
            counts.append(len(captured.captured_queries))
        return counts

    few = queries()
    domain.dc.ldap_tool(
        "ldapadd",
        "".join(
            f"dn: CN=Person {n},OU=Staff,{domain.dc.base_dn}\nobjectClass: user\n"
            f"sAMAccountName: person{n}\nuserAccountControl: 544\n"
            f"mail: person{n}@branch.example\n\n"
            for n in range(12)
        ),
    )
    scan(domain.organization.pk)
    assert Recipient.objects.filter(container=staff).count() == 14  # Ada, the group, 12 more
    assert queries() == few


def test_the_django_admin_edits_the_units_and_rules_and_shows_the_watermark(domain, admin_client):
    client = admin_client
    directory = LdapDirectory.objects.get(pk=domain.directory.pk)
    url = f"/admin/directory/ldapdirectory/{directory.pk}/change/"
    body = client.get(url).content.decode()
    assert str(directory.usn_watermark) in body and directory.invocation_id in body
    data = {
        "organization": directory.organization_id,
        "uri": directory.uri,
        "start_tls": "on",
        "ca_file": directory.ca_file,
        "bind_dn": directory.bind_dn,
        "password": "",
        "base_dn": directory.base_dn,
        "timeout": 5,
        "unit_dns": "OU=Elsewhere,DC=other,DC=example",
        "disabled_accounts": "include",
        "hidden_entries": "leave_out",
    }
    refused = client.post(url, data)
    assert refused.status_code == 200
    assert "is not under the base DN" in refused.content.decode()

    assert client.post(url, data | {"unit_dns": domain.imports}).status_code == 302
    directory.refresh_from_db()
    assert (directory.unit_dns, directory.disabled_accounts, directory.hidden_entries) == (
        domain.imports,
        "include",
        "leave_out",
    )
    assert directory.password == domain.dc.password  # kept
