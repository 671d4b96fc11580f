"""The console and the API of an organization whose directory is an LDAP server (a throwaway
slapd): the Directory Service page (settings, Test connection, state), the directory browser
reading units, people and groups live from LDAP beside the mirror's trust levels, and who may
do what there.

ORG1 keeps the built-in directory; ORG2 and ORG3 keep theirs in LDAP (tests/ldap/conftest.py).
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from console import directory_settings, ldap_browser
from console.constants import ConsoleRole
from console.views import ldap_directory
from directory import changes
from directory.backends import DirectoryUnavailable
from directory.constants import Backend
from directory.ldap.scan import scan
from directory.models import Container, LdapDirectory, Organization, Recipient
from requestor.cycle import sync_all
from tests.console.conftest import logged_in, make_user, token_client
from tests.console.test_escaping import ESCAPED, HOSTILE
from tests.ldap.conftest import entry_ldif, mixed, person_ldif, server, slapd  # noqa: F401

STORED_PASSWORD = "stored-Pa55word"


@pytest.fixture
def world(mixed):  # noqa: F811
    """ORG2's LDAP holds Ada, Grace, someone with a hostile display name and the Staff group;
    after a sync it also holds ORG1's three people as imported contacts."""
    org2 = mixed.org2
    org2.add_person("ada", "Ada Lovelace", title="Analyst")
    org2.add_person("grace", "Grace Hopper")
    org2.tool.add(
        entry_ldif(
            f"uid=evil,{org2.people}",
            {
                "objectClass": ["inetOrgPerson"],
                "uid": ["evil"],
                "cn": [HOSTILE],
                "sn": ["Evil"],
                "displayName": [HOSTILE],
                "mail": ["evil@org2.example"],
            },
        )
    )
    org2.tool.add(
        f"dn: cn=Staff,ou=Groups,{org2.suffix}\nobjectClass: groupOfNames\n"
        f"objectClass: extensibleObject\ncn: Staff\nmail: staff@org2.example\n"
        f"member: uid=ada,{org2.people}\n\n"
    )
    sync_all()
    return mixed


def org(name: str) -> Organization:
    return Organization.objects.get(name=name)


@pytest.fixture
def alice(world):
    """Administrator of ORG2."""
    return logged_in(make_user("alice", {org("ORG2"): ConsoleRole.ADMINISTRATOR}))


@pytest.fixture
def oscar(world):
    """Operator of ORG2."""
    return logged_in(make_user("oscar", {org("ORG2"): ConsoleRole.OPERATOR}))


@pytest.fixture
def mallory(world):
    """Administrator of ORG3, nothing in ORG2."""
    return logged_in(make_user("mallory", {org("ORG3"): ConsoleRole.ADMINISTRATOR}))


def unit(name: str, organization: str = "ORG2") -> Container:
    return Container.objects.get(organization__name=organization, name=name)


def unit_url(name: str) -> str:
    return f"/o/ORG2/directory/containers/{unit(name).pk}/"


def mirror(alias: str) -> Recipient:
    return Recipient.objects.get(organization__name="ORG2", alias=alias)


def directory() -> LdapDirectory:
    return LdapDirectory.objects.get(organization__name="ORG2")


def settings_form(**changes) -> dict:
    current = directory()
    data = {
        "directory_backend": Backend.LDAP,
        "uri": current.uri,
        "bind_dn": current.bind_dn,
        "password": "",
        "base_dn": current.base_dn,
        "timeout": current.timeout,
        "ca_file": "",
    }
    data.update(changes)
    return {name: value for name, value in data.items() if value is not None}


# --- The Directory Service page ----------------------------------------------------------------


def test_it_shows_the_settings_without_the_password(world, alice):
    LdapDirectory.objects.filter(organization__name="ORG2").update(password=STORED_PASSWORD)
    response = alice.get("/o/ORG2/directory-service/")
    body = response.content.decode()
    assert response.status_code == 200
    assert STORED_PASSWORD not in body
    assert 'type="password"' in body
    assert "A password is stored: leave this blank to keep it." in body
    assert directory().uri in body


def test_it_saves_the_settings_and_keeps_the_stored_password(world, alice):
    before = directory()
    response = alice.post(
        "/o/ORG2/directory-service/", settings_form(timeout=7, start_tls=""), follow=True
    )
    assert "Directory of ORG2 saved." in response.content.decode()
    after = directory()
    assert after.timeout == 7
    assert after.password == before.password != ""


def test_it_saves_a_new_password_or_forgets_it(world, alice):
    alice.post("/o/ORG2/directory-service/", settings_form(password=" new pass "))
    assert directory().password == " new pass "
    alice.post("/o/ORG2/directory-service/", settings_form(clear_password="on"))
    assert directory().password == ""


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"uri": "http://ldap.example"}, "uri", "Use ldap://host[:port] or ldaps://host[:port]."),
        ({"uri": ""}, "uri", "Required for an LDAP directory."),
        ({"base_dn": "example.org"}, "base_dn", "is not a distinguished name"),
        ({"base_dn": "dc=example,,dc=org"}, "base_dn", "is not a distinguished name"),
        (
            {"uri": "ldaps://ldap.example", "start_tls": "on"},
            "start_tls",
            "An ldaps:// connection is TLS from the start",
        ),
        ({"timeout": "0"}, "timeout", "greater than or equal to 1"),
    ],
    ids=["uri-scheme", "uri-missing", "base-not-dn", "base-empty-rdn", "starttls-ldaps", "timeout"],
)
def test_it_refuses_bad_settings(world, alice, changes, field, message):
    before = directory()
    response = alice.post("/o/ORG2/directory-service/", settings_form(**changes))
    assert response.status_code == 200
    form = response.context["form"]
    assert any(message in error for error in form.errors[field]), form.errors
    after = directory()
    assert (after.uri, after.base_dn, after.timeout) == (before.uri, before.base_dn, before.timeout)


def test_it_refuses_ldap_without_python_ldap(world, monkeypatch):
    monkeypatch.setattr(directory_settings, "ldap_missing", lambda: "python-ldap is missing")
    bob = logged_in(make_user("bob", {org("ORG1"): ConsoleRole.ADMINISTRATOR}))
    response = bob.post("/o/ORG1/directory-service/", settings_form())
    assert response.context["form"].errors["directory_backend"] == ["python-ldap is missing"]
    assert org("ORG1").directory_backend == Backend.BUILTIN
    assert not LdapDirectory.objects.filter(organization__name="ORG1").exists()


def test_it_switches_a_builtin_organization_only_with_settings(world):
    bob = logged_in(make_user("bob", {org("ORG1"): ConsoleRole.ADMINISTRATOR}))
    response = bob.post(
        "/o/ORG1/directory-service/", {"directory_backend": Backend.LDAP, "timeout": 10}
    )
    assert response.context["form"].errors["uri"] == ["Required for an LDAP directory."]
    assert response.context["form"].errors["base_dn"] == ["Required for an LDAP directory."]
    # The built-in directory needs no settings: none are stored.
    response = bob.post(
        "/o/ORG1/directory-service/", {"directory_backend": Backend.BUILTIN, "timeout": 10}
    )
    assert response.status_code == 302
    assert not LdapDirectory.objects.filter(organization__name="ORG1").exists()
    response = bob.post(
        "/o/ORG1/directory-service/",
        {"directory_backend": Backend.LDAP, "uri": "ldap://ldap.org1.example", "base_dn": "o=ORG1"}
        | {"timeout": 10},
    )
    assert response.status_code == 302
    assert org("ORG1").directory_backend == Backend.LDAP
    assert LdapDirectory.objects.get(organization__name="ORG1").base_dn == "o=ORG1"


def test_it_tests_the_typed_settings_without_saving_them(world, alice):
    people = f"ou=People,{world.org2.suffix}"
    response = alice.post("/o/ORG2/directory-service/", settings_form(base_dn=people, test="1"))
    body = response.content.decode()
    assert "Connection works." in body
    # Ada, Grace and the hostile one (the Staff group and the contacts are elsewhere).
    assert f"3 recipients under {people}" in body
    assert directory().base_dn == world.org2.suffix


def test_it_reports_a_wrong_password(world, alice):
    response = alice.post("/o/ORG2/directory-service/", settings_form(password="wrong", test="1"))
    body = response.content.decode()
    assert "Connection failed." in body
    assert "refused the bind DN and password" in body
    assert "type it again to save it" in body
    assert directory().password != "wrong"


def test_it_reports_a_server_that_does_not_answer(world, alice, server):  # noqa: F811
    server.stop()
    response = alice.post("/o/ORG2/directory-service/", settings_form(test="1"))
    body = response.content.decode()
    assert "Connection failed." in body
    assert f"LDAP server {server.uri} cannot be reached" in body


def test_it_shows_the_ldap_state_and_problems(world, alice):
    LdapDirectory.objects.filter(organization__name="ORG2").update(
        last_error=f"LDAP server down {HOSTILE}",
        scan_problems=[f"uid=x,ou=People: left out, {HOSTILE}"],
        publish_problems=["uid=y,ou=InterOrg: Constraint violation"],
    )
    for url in ("/o/ORG2/directory-service/", "/o/ORG2/"):
        body = alice.get(url).content.decode()
        assert HOSTILE not in body
        assert f"LDAP server down {ESCAPED}" in body
        assert f"uid=x,ou=People: left out, {ESCAPED}" in body
        assert "uid=y,ou=InterOrg: Constraint violation" in body
        assert "Last write of contacts" in body
    dashboard = alice.get("/").content.decode()
    assert "LDAP" in dashboard
    assert f"LDAP directory: LDAP server down {ESCAPED}" in dashboard


def test_an_operator_reads_the_settings_but_cannot_change_or_test_them(world, oscar):
    response = oscar.get("/o/ORG2/directory-service/")
    assert response.status_code == 200
    assert "Test connection</button>" not in response.content.decode()
    assert all(field.disabled for field in response.context["form"].fields.values())
    assert oscar.post("/o/ORG2/directory-service/", settings_form(timeout=5)).status_code == 403
    assert oscar.post("/o/ORG2/directory-service/", settings_form(test="1")).status_code == 403
    assert directory().timeout == 3


# --- The directory browser -----------------------------------------------------------------------


def test_it_lists_the_units_from_ldap(world, oscar):
    world.org2.tool.add(
        f"dn: ou=New,{world.org2.suffix}\nobjectClass: organizationalUnit\nou: New\n\n"
    )
    response = oscar.get("/o/ORG2/directory/")
    body = response.content.decode()
    assert response.status_code == 200
    for name in ("People", "Groups", "InterOrg"):
        assert f'href="{unit_url(name)}">{name}</a>' in body
    assert f"ou=People,{world.org2.suffix}" in body
    assert "New <span" in body and "(not scanned yet)" in body


def test_it_lists_people_of_a_unit_live_with_their_trust_level(world, oscar):
    ada = mirror("ada")
    ada.trust_level = 42
    changes.save_recipient(ada, update_fields=["trust_level"])
    world.org2.tool.modify(
        f"dn: uid=ada,{world.org2.people}\nchangetype: modify\n"
        "replace: displayName\ndisplayName: Ada King\n\n"
    )
    response = oscar.get(unit_url("People"))
    body = response.content.decode()
    assert response.status_code == 200
    # Read from LDAP now, not from the mirror (which still says Lovelace).
    assert f'href="/o/ORG2/directory/recipients/{ada.pk}/">Ada King</a>' in body
    assert "Ada Lovelace" not in body
    assert '<td class="num">42</td>' in body
    assert "Grace Hopper" in body
    assert ESCAPED in body and HOSTILE not in body
    assert "Staff" not in body
    assert "imported" not in body


def test_it_lists_groups_and_imported_contacts(world, oscar):
    body = oscar.get(unit_url("Groups")).content.decode()
    assert "Staff" in body and "Distribution list" in body
    contacts = oscar.get(unit_url("InterOrg")).content.decode()
    org1_people = world.scenario["ORG1"].people
    assert org1_people
    for person in org1_people:
        assert person.primary_smtp in contacts
    assert contacts.count("imported from ORG1") == len(org1_people)
    assert "Custom recipient" in contacts


def test_it_searches_a_unit(world, oscar):
    body = oscar.get(unit_url("People"), {"q": "LOVEL"}).content.decode()
    assert "Ada Lovelace" in body
    assert "Grace Hopper" not in body
    body = oscar.get(unit_url("People"), {"q": "grace@org2"}).content.decode()
    assert "Grace Hopper" in body and "Ada Lovelace" not in body
    body = oscar.get(unit_url("People"), {"q": "*)(uid=*"}).content.decode()
    assert "Nothing matches." in body


def test_it_pages_through_a_unit(world, oscar, monkeypatch):
    monkeypatch.setattr(ldap_directory, "PER_PAGE", 2)
    first = oscar.get(unit_url("People")).content.decode()
    second = oscar.get(unit_url("People"), {"page": 2}).content.decode()
    assert "Page 1 of 2 (3)" in first and "Page 2 of 2 (3)" in second
    # By cn: "<script>…" sorts before "Ada Lovelace".
    assert ESCAPED in first and "Ada Lovelace" in first and "Grace Hopper" not in first
    assert "Grace Hopper" in second and "Ada Lovelace" not in second and ESCAPED not in second


def test_it_shows_an_entry_from_ldap_beside_the_mirror(world, alice):
    ada = mirror("ada")
    response = alice.get(f"/o/ORG2/directory/recipients/{ada.pk}/")
    body = response.content.decode()
    assert response.status_code == 200
    assert f"uid=ada,{world.org2.people}" in body
    assert "Analyst" in body and "title" in body
    assert str(ada.guid) in body
    assert 'id="trust-level"' in body
    assert "/edit/" not in body and "/delete/" not in body


def test_it_shows_an_imported_contact_read_only(world, alice):
    contact = Recipient.objects.filter(organization__name="ORG2", global_key__isnull=False).first()
    body = alice.get(f"/o/ORG2/directory/recipients/{contact.pk}/").content.decode()
    assert "An imported contact from <strong>ORG1</strong>" in body
    assert "InterOrg Sync contact" in body
    assert 'id="trust-level"' not in body


@pytest.mark.parametrize("connected", [True, False], ids=["connected", "not-connected"])
def test_the_pages_say_when_ldap_cannot_be_reached(world, alice, server, connected):  # noqa: F811
    ada = mirror("ada")
    if connected:
        alice.get(unit_url("People"))  # the browser's connection is open when the server goes
    server.stop()
    for url in (
        "/o/ORG2/directory/",
        unit_url("People"),
        f"/o/ORG2/directory/recipients/{ada.pk}/",
    ):
        response = alice.get(url)
        assert response.status_code == 200, url
        assert f"LDAP server {server.uri} cannot be reached" in response.content.decode(), url
    server.start()
    assert "Ada Lovelace" in alice.get(unit_url("People")).content.decode()


def test_the_pages_say_when_the_ldap_libraries_are_missing(world, alice, monkeypatch):
    def missing():
        raise DirectoryUnavailable("Browsing an LDAP directory needs python-ldap")

    monkeypatch.setattr(ldap_browser, "_models", missing)
    ada = mirror("ada")
    for url in (
        "/o/ORG2/directory/",
        unit_url("People"),
        f"/o/ORG2/directory/recipients/{ada.pk}/",
    ):
        response = alice.get(url)
        assert response.status_code == 200, url
        assert "Browsing an LDAP directory needs python-ldap" in response.content.decode(), url


def test_the_browser_queries_do_not_grow_with_the_entries(world, oscar):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = oscar.get(unit_url("People"))
        assert response.status_code == 200
        return len(captured)

    few = queries()
    world.org2.tool.add(
        "".join(
            person_ldif(f"uid=p{n},{world.org2.people}", f"p{n}", f"p{n}@org2.example", f"P {n}")
            for n in range(30)
        )
    )
    scan(org("ORG2").pk)
    assert queries() == few


# --- Trust level, and what the console does not change ------------------------------------------


def test_an_administrator_sets_a_trust_level_in_the_mirror(world, alice):
    ada = mirror("ada")
    back = unit_url("People") + "?q=ada"
    response = alice.post(
        f"/o/ORG2/directory/recipients/{ada.pk}/trust-level/", {"trust_level": 9, "next": back}
    )
    assert response.status_code == 302 and response.url == back
    changed = mirror("ada")
    assert changed.trust_level == 9
    assert changed.usn > ada.usn
    # A later scan of a change in LDAP keeps it.
    world.org2.tool.modify(
        f"dn: uid=ada,{world.org2.people}\nchangetype: modify\nreplace: title\ntitle: Countess\n\n"
    )
    scan(org("ORG2").pk)
    assert (mirror("ada").title, mirror("ada").trust_level) == ("Countess", 9)


def test_an_administrator_hides_an_ldap_entry_from_the_others_in_the_mirror(world, alice):
    ada = mirror("ada")
    url = f"/o/ORG2/directory/recipients/{ada.pk}/trust-level/"
    alice.post(url, {"trust_level": 0, "hidden_set": "1", "hidden_from_others": "on"})
    assert mirror("ada").hidden_from_others
    # A later scan of a change in LDAP keeps it.
    world.org2.tool.modify(
        f"dn: uid=ada,{world.org2.people}\nchangetype: modify\nreplace: title\ntitle: Lady\n\n"
    )
    scan(org("ORG2").pk)
    assert (mirror("ada").title, mirror("ada").hidden_from_others) == ("Lady", True)
    # The units page sets the trust level alone: the flag stays.
    alice.post(url, {"trust_level": 2})
    assert (mirror("ada").trust_level, mirror("ada").hidden_from_others) == (2, True)
    alice.post(url, {"trust_level": 2, "hidden_set": "1"})
    assert not mirror("ada").hidden_from_others


def test_a_bad_trust_level_changes_nothing(world, alice):
    ada = mirror("ada")
    url = f"/o/ORG2/directory/recipients/{ada.pk}/trust-level/"
    response = alice.post(url, {"trust_level": 500, "next": "https://evil.example/"}, follow=True)
    assert response.redirect_chain[0][0] == f"/o/ORG2/directory/recipients/{ada.pk}/"
    assert "not changed" in response.content.decode()
    assert mirror("ada").trust_level == ada.trust_level


def test_the_trust_level_of_a_contact_or_by_an_operator_is_refused(world, alice, oscar):
    contact = Recipient.objects.filter(organization__name="ORG2", global_key__isnull=False).first()
    url = f"/o/ORG2/directory/recipients/{contact.pk}/trust-level/"
    assert alice.post(url, {"trust_level": 3}).status_code == 403
    ada = mirror("ada")
    url = f"/o/ORG2/directory/recipients/{ada.pk}/trust-level/"
    assert oscar.post(url, {"trust_level": 3}).status_code == 403
    assert mirror("ada").trust_level == ada.trust_level


@pytest.mark.parametrize("action", ["add", "edit", "delete"])
def test_editing_ldap_entries_is_refused(world, alice, action):
    ada = mirror("ada")
    url = {
        "add": f"/o/ORG2/directory/containers/{unit('People').pk}/new/",
        "edit": f"/o/ORG2/directory/recipients/{ada.pk}/edit/",
        "delete": f"/o/ORG2/directory/recipients/{ada.pk}/delete/",
    }[action]
    for response in (alice.get(url), alice.post(url, {"display_name": "X", "confirm": "yes"})):
        assert response.status_code == 403
        assert "live in its LDAP server" in response.content.decode()
    assert Recipient.objects.filter(pk=ada.pk, display_name="Ada Lovelace").exists()


def test_a_builtin_container_of_an_ldap_organization_has_no_add_button(world, alice):
    site = unit("People").site
    old = Container.objects.create(site=site, name="Before LDAP")
    body = alice.get(f"/o/ORG2/directory/containers/{old.pk}/").content.decode()
    assert "New recipient" not in body


@pytest.mark.parametrize(
    "url",
    [
        "/o/ORG2/directory-service/",
        "/o/ORG2/directory/",
        "unit",
        "recipient",
        "trust",
    ],
)
def test_an_outsider_finds_nothing(world, mallory, url):
    ada = mirror("ada")
    url = {
        "unit": unit_url("People"),
        "recipient": f"/o/ORG2/directory/recipients/{ada.pk}/",
        "trust": f"/o/ORG2/directory/recipients/{ada.pk}/trust-level/",
    }.get(url, url)
    assert mallory.get(url).status_code == 404
    assert mallory.post(url, {"trust_level": 1, "test": "1"}).status_code == 404
    assert mirror("ada").trust_level == ada.trust_level


# --- The API ----------------------------------------------------------------------------------


def api(username: str, organization: str, role: str):
    return token_client(make_user(username, {org(organization): role}))


def test_the_api_shows_the_settings_and_state_without_the_password(world):
    client = api("oscar", "ORG2", ConsoleRole.OPERATOR)
    body = client.get("/api/v1/organizations/ORG2/directory/").json()
    assert body["directory_backend"] == "ldap"
    assert body["base_dn"] == world.org2.suffix
    assert body["has_password"] is True
    assert "password" not in body
    assert body["state"]["last_scan_at"]
    assert body["state"]["scan_problems"] == []
    organization = client.get("/api/v1/organizations/ORG2/").json()
    assert organization["directory_backend"] == "ldap"
    status = client.get("/api/v1/organizations/ORG2/status/").json()
    assert status["ldap"]["published_usn"] > 0


def test_the_api_changes_the_settings_for_administrators_only(world):
    url = "/api/v1/organizations/ORG2/directory/"
    operator = api("oscar", "ORG2", ConsoleRole.OPERATOR)
    assert operator.patch(url, {"timeout": 5}, format="json").status_code == 403
    outsider = api("mallory", "ORG3", ConsoleRole.ADMINISTRATOR)
    assert outsider.get(url).status_code == 404
    assert outsider.patch(url, {"timeout": 5}, format="json").status_code == 404
    admin = api("alice", "ORG2", ConsoleRole.ADMINISTRATOR)
    response = admin.patch(url, {"base_dn": "not a dn"}, format="json")
    assert response.status_code == 400
    assert "is not a distinguished name" in response.json()["base_dn"][0]
    password = directory().password
    response = admin.patch(url, {"timeout": 5}, format="json")
    assert response.status_code == 200, response.json()
    assert (directory().timeout, directory().password) == (5, password)
    response = admin.patch(url, {"password": ""}, format="json")
    assert response.json()["has_password"] is False


def test_the_api_switches_to_ldap_with_valid_settings_only(world, monkeypatch):
    url = "/api/v1/organizations/ORG1/directory/"
    admin = api("bob", "ORG1", ConsoleRole.ADMINISTRATOR)
    assert admin.get(url).json()["state"] is None
    assert admin.put(url, {"directory_backend": "builtin"}, format="json").status_code == 200
    assert not LdapDirectory.objects.filter(organization__name="ORG1").exists()
    with monkeypatch.context() as patched:
        patched.setattr(directory_settings, "ldap_missing", lambda: "python-ldap is missing")
        response = admin.patch(url, {"directory_backend": "ldap"}, format="json")
        assert response.json()["directory_backend"] == ["python-ldap is missing"]
    response = admin.put(url, {"directory_backend": "ldap"}, format="json")
    assert response.status_code == 400
    assert set(response.json()) >= {"uri", "base_dn"}
    response = admin.put(
        url,
        {"directory_backend": "ldap", "uri": "ldap://ldap.org1.example", "base_dn": "o=ORG1"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert org("ORG1").directory_backend == Backend.LDAP


def test_the_api_tests_the_connection(world, server):  # noqa: F811
    admin = api("alice", "ORG2", ConsoleRole.ADMINISTRATOR)
    body = admin.post("/api/v1/organizations/ORG2/directory/test/").json()
    # Ada, Grace, the hostile one and Staff (imported contacts are not recipients of ORG2).
    assert body == {"ok": True, "detail": body["detail"], "recipients": 4}
    server.stop()
    body = admin.post("/api/v1/organizations/ORG2/directory/test/").json()
    assert body["ok"] is False and "cannot be reached" in body["detail"]
    operator = api("oscar", "ORG2", ConsoleRole.OPERATOR)
    assert operator.post("/api/v1/organizations/ORG2/directory/test/").status_code == 403


def test_the_api_changes_only_the_trust_level_of_ldap_recipients(world):
    admin = api("alice", "ORG2", ConsoleRole.ADMINISTRATOR)
    ada = mirror("ada")
    url = f"/api/v1/recipients/{ada.pk}/"
    assert admin.patch(url, {"trust_level": 4}, format="json").status_code == 200
    assert mirror("ada").trust_level == 4
    full = admin.get(url).json()
    assert admin.put(url, full | {"trust_level": 5}, format="json").status_code == 200
    response = admin.patch(url, {"display_name": "Someone Else"}, format="json")
    assert response.status_code == 403
    assert "live in its LDAP server" in response.json()["detail"]
    assert admin.delete(url).status_code == 403
    new = {"container": unit("People").pk, "display_name": "N", "alias": "n"}
    response = admin.post("/api/v1/recipients/", new | {"primary_smtp": "n@org2.example"})
    assert response.status_code == 403
    assert mirror("ada").display_name == "Ada Lovelace"


# --- The Django admin ----------------------------------------------------------------------------


def test_the_admin_hides_the_password_and_keeps_it(world, client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "x"))
    LdapDirectory.objects.filter(organization__name="ORG2").update(password=STORED_PASSWORD)
    current = directory()
    url = f"/admin/directory/ldapdirectory/{current.pk}/change/"
    body = client.get(url).content.decode()
    assert STORED_PASSWORD not in body
    assert "Last scan at" in body or "last scan at" in body.lower()
    data = {
        "organization": current.organization_id,
        "uri": current.uri,
        "bind_dn": current.bind_dn,
        "password": "",
        "base_dn": current.base_dn,
        "timeout": 4,
        "ca_file": "",
        "disabled_accounts": "leave_out",
        "hidden_entries": "hidden_from_others",
    }
    assert client.post(url, data).status_code == 302
    assert (directory().timeout, directory().password) == (4, STORED_PASSWORD)
    response = client.post(url, data | {"base_dn": "nonsense"})
    assert response.status_code == 200
    assert "is not a distinguished name" in response.content.decode()
