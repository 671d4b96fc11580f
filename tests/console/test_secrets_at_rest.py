"""A bind password written from the console, the API or the admin is stored encrypted, and
neither it nor its encrypted form is ever sent back; the same for signing keys."""

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from directory.constants import Backend
from directory.models import LdapDirectory
from transport.models import SigningKey
from transport.signing import active_key

API = "/api/v1"
PASSWORD = "Typed-Pa55word"
KEY = Fernet.generate_key().decode()


@pytest.fixture(autouse=True)
def secrets_key(settings):
    settings.INTERORG_SECRETS_KEYS = [KEY]


def stored(model, field: str, pk: int) -> str:
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote(model._meta.get_field(field).column)} "
            f"FROM {quote(model._meta.db_table)} WHERE id = %s",
            [pk],
        )
        return cursor.fetchone()[0]


def opened(token: str) -> str:
    return Fernet(KEY.encode()).decrypt(token.encode()).decode()


def org2_directory() -> LdapDirectory:
    return LdapDirectory.objects.get(organization__name="ORG2")


def assert_hidden(body: str, pk: int) -> None:
    assert PASSWORD not in body
    assert stored(LdapDirectory, "password", pk) not in body


def test_the_console_stores_it_encrypted_and_never_shows_it(world, admin_client_):
    form = {
        "directory_backend": Backend.BUILTIN,
        "uri": "ldap://127.0.0.1:1389",
        "bind_dn": "cn=admin,dc=x",
        "password": PASSWORD,
        "base_dn": "dc=x",
        "timeout": "10",
        "ca_file": "",
    }
    response = admin_client_.post("/o/ORG2/directory-service/", form)
    assert response.status_code == 302, response.content.decode()

    pk = org2_directory().pk
    assert opened(stored(LdapDirectory, "password", pk)) == PASSWORD
    page = admin_client_.get("/o/ORG2/directory-service/").content.decode()
    assert "A password is stored" in page
    assert_hidden(page, pk)
    # Saved again with the password left blank: the stored one is kept.
    admin_client_.post("/o/ORG2/directory-service/", {**form, "password": "", "timeout": "9"})
    assert (org2_directory().timeout, org2_directory().password) == (9, PASSWORD)


def test_the_api_stores_it_encrypted_and_never_returns_it(world, admin_api):
    url = f"{API}/organizations/ORG2/directory/"
    response = admin_api.patch(
        url, {"uri": "ldap://127.0.0.1:1389", "base_dn": "dc=x", "password": PASSWORD}
    )
    assert response.status_code == 200, response.content

    pk = org2_directory().pk
    assert opened(stored(LdapDirectory, "password", pk)) == PASSWORD
    for body in (response.content.decode(), admin_api.get(url).content.decode()):
        assert '"has_password":true' in body.replace(" ", "")
        assert_hidden(body, pk)


def test_the_admin_stores_it_encrypted_and_never_shows_it(world, admin_client):
    directory = LdapDirectory.objects.create(
        organization=world.org2.organization, uri="ldap://127.0.0.1:1389", base_dn="dc=x"
    )
    url = f"/admin/directory/ldapdirectory/{directory.pk}/change/"
    form = {
        "organization": world.org2.organization.pk,
        "uri": "ldap://127.0.0.1:1389",
        "bind_dn": "",
        "password": PASSWORD,
        "base_dn": "dc=x",
        "timeout": "10",
        "ca_file": "",
        "disabled_accounts": "leave_out",
        "hidden_entries": "hidden_from_others",
    }
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.content.decode()

    assert opened(stored(LdapDirectory, "password", directory.pk)) == PASSWORD
    assert_hidden(admin_client.get(url).content.decode(), directory.pk)
    admin_client.post(url, {**form, "password": ""})
    assert org2_directory().password == PASSWORD


def test_a_signing_key_is_stored_encrypted_and_never_shown(world, admin_client, admin_api):
    key = active_key(world.org2.organization.pk)
    raw = stored(SigningKey, "private_key", key.pk)
    assert opened(raw) == key.private_key

    pages = [
        admin_client.get("/admin/transport/signingkey/"),
        admin_client.get(f"/admin/transport/signingkey/{key.pk}/change/"),
        admin_api.get(f"{API}/master-configs/"),
        admin_api.get(f"{API}/organizations/"),
    ]
    for page in pages:
        assert page.status_code == 200
        body = page.content.decode()
        assert key.private_key not in body and raw not in body


def test_a_secret_the_keys_cannot_open_is_a_clear_503_not_a_crash(
    world, admin_client_, admin_api, settings
):
    """The keys were changed without rotate_secrets: the pages and the API that read the
    secret say what happened and what to do, instead of a bare server error."""
    LdapDirectory.objects.create(
        organization=world.org2.organization,
        uri="ldap://127.0.0.1:1389",
        password=PASSWORD,
        base_dn="dc=x",
    )
    settings.INTERORG_SECRETS_KEYS = [Fernet.generate_key().decode()]

    page = admin_client_.get("/o/ORG2/directory-service/")
    assert page.status_code == 503
    body = page.content.decode()
    assert "A stored secret cannot be opened" in body
    assert "rotate_secrets" in body
    assert PASSWORD not in body

    answer = admin_api.get(f"{API}/organizations/ORG2/directory/")
    assert answer.status_code == 503
    assert "rotate_secrets" in answer.json()["detail"]
