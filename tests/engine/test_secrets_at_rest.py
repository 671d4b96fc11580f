"""Secrets at rest: signing keys' private halves and LDAP bind passwords are stored encrypted
with a key kept outside the database (INTERORG_SECRETS_KEYS, or var/secrets_key made once),
whichever way they are written, and `manage.py rotate_secrets` re-encrypts them under a new key.
"""

import base64
import io
import stat

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from directory import bulk
from directory.factories import OrganizationFactory
from directory.models import LdapDirectory
from interorg_site import encryption
from tests.engine.test_upgrade import latest_schema_after, migrate  # noqa: F401 (fixture)
from transport import signing
from transport.models import SigningKey

pytestmark = pytest.mark.django_db

OLD, NEW, OTHER = (Fernet.generate_key().decode() for _ in range(3))
PASSWORD = "bind Pa55word é"


@pytest.fixture
def keys(settings):
    """The installation encrypts with OLD to begin with."""
    settings.INTERORG_SECRETS_KEYS = [OLD]
    return settings


@pytest.fixture
def org(keys):
    return OrganizationFactory(name="ORG2")


def stored(model, field: str, pk: int) -> str:
    """The column as the database holds it, past the model field."""
    quote = connection.ops.quote_name
    column = model._meta.get_field(field).column
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote(column)} FROM {quote(model._meta.db_table)} WHERE id = %s", [pk]
        )
        return cursor.fetchone()[0]


def opened(token: str, key: str = OLD) -> str:
    return Fernet(key.encode()).decrypt(token.encode()).decode()


def ldap_settings(org, **extra) -> dict:
    return {"organization": org, "uri": "ldap://127.0.0.1:1389", "base_dn": "dc=x", **extra}


def test_it_stores_a_new_private_key_encrypted(org):
    key = signing.generate_key(org.pk)

    raw = stored(SigningKey, "private_key", key.pk)
    assert raw != key.private_key and key.private_key not in raw
    assert opened(raw) == key.private_key
    # What is read back is the key itself, and it signs.
    assert SigningKey.objects.get(pk=key.pk).private_key == key.private_key
    signature, _ = signing.sign(org.pk, "master@org1.example", b"payload")
    Ed25519PublicKey.from_public_bytes(base64.b64decode(key.public_key)).verify(
        base64.b64decode(signature), signing._signed_bytes("master@org1.example", b"payload")
    )


def _save(org):
    directory = LdapDirectory(**ldap_settings(org))
    directory.password = PASSWORD
    directory.save()
    return directory.pk


def _create(org):
    return LdapDirectory.objects.create(**ldap_settings(org, password=PASSWORD)).pk


def _bulk_create(org):
    LdapDirectory.objects.bulk_create([LdapDirectory(**ldap_settings(org, password=PASSWORD))])
    return LdapDirectory.objects.get(organization=org).pk


def _update(org):
    pk = _create_empty(org)
    LdapDirectory.objects.filter(pk=pk).update(password=PASSWORD)
    return pk


def _bulk_update(org):
    directory = LdapDirectory.objects.get(pk=_create_empty(org))
    directory.password = PASSWORD
    LdapDirectory.objects.bulk_update([directory], ["password"])
    return directory.pk


def _update_objects(org):
    directory = LdapDirectory.objects.get(pk=_create_empty(org))
    directory.password = PASSWORD
    bulk.update_objects(LdapDirectory, [directory], ["password"])
    return directory.pk


def _copy_insert(org):
    bulk.copy_insert(
        LdapDirectory,
        ["organization", "uri", "base_dn", "password"],
        [(org.pk, "ldap://127.0.0.1:1389", "dc=x", PASSWORD)],
    )
    return LdapDirectory.objects.get(organization=org).pk


def _create_empty(org):
    return LdapDirectory.objects.create(**ldap_settings(org)).pk


@pytest.mark.parametrize(
    "write",
    [_save, _create, _bulk_create, _update, _bulk_update, _update_objects, _copy_insert],
    ids=lambda f: f.__name__.strip("_"),
)
def test_it_stores_a_bind_password_encrypted_whichever_way_it_is_written(org, write):
    pk = write(org)

    raw = stored(LdapDirectory, "password", pk)
    assert PASSWORD not in raw
    assert opened(raw) == PASSWORD
    assert LdapDirectory.objects.get(pk=pk).password == PASSWORD
    assert list(LdapDirectory.objects.values_list("password", flat=True)) == [PASSWORD]


def test_it_stores_no_password_as_nothing(org):
    """An anonymous bind has nothing to hide; `password=""` still finds it."""
    pk = _create_empty(org)

    assert stored(LdapDirectory, "password", pk) == ""
    assert LdapDirectory.objects.filter(password="").count() == 1


def test_it_makes_the_embedded_key_once_readable_by_its_owner_only(org, settings, tmp_path):
    settings.INTERORG_SECRETS_KEYS = []
    settings.INTERORG_SECRETS_KEY_FILE = tmp_path / "secrets_key"

    pk = _create(org)

    key_file = tmp_path / "secrets_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert opened(stored(LdapDirectory, "password", pk), key) == PASSWORD
    _update_objects(OrganizationFactory(name="ORG3"))  # a second write: the same key
    assert key_file.read_text().strip() == key
    assert LdapDirectory.objects.get(pk=pk).password == PASSWORD


def test_it_rotates_every_secret_to_the_new_key(org, keys):
    key = signing.generate_key(org.pk)
    retired = signing.generate_key(org.pk)  # the first one is retired, and kept
    pk = _create(org)
    anonymous = _create_empty(OrganizationFactory(name="ORG3"))

    keys.INTERORG_SECRETS_KEYS = [NEW, OLD]
    out = io.StringIO()
    call_command("rotate_secrets", stdout=out)

    assert "3 secrets re-encrypted" in out.getvalue()
    keys.INTERORG_SECRETS_KEYS = [NEW]
    for signing_key in (key, retired):
        raw = stored(SigningKey, "private_key", signing_key.pk)
        assert opened(raw, NEW) == signing_key.private_key
        assert SigningKey.objects.get(pk=signing_key.pk).private_key == signing_key.private_key
    assert opened(stored(LdapDirectory, "password", pk), NEW) == PASSWORD
    assert LdapDirectory.objects.get(pk=pk).password == PASSWORD
    assert stored(LdapDirectory, "password", anonymous) == ""
    assert signing.sign(org.pk, "master@org1.example", b"payload")[1] == retired.fingerprint


def test_it_names_the_setting_when_no_key_opens_a_secret(org, keys):
    pk = _create(org)
    signing.generate_key(org.pk)
    before = stored(LdapDirectory, "password", pk)

    keys.INTERORG_SECRETS_KEYS = [OTHER]
    with pytest.raises(encryption.UndecryptableSecret) as caught:
        LdapDirectory.objects.get(pk=pk)
    message = str(caught.value)
    assert "directory.LdapDirectory.password" in message
    assert "INTERORG_SECRETS_KEYS" in message and "rotate_secrets" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    with pytest.raises(encryption.UndecryptableSecret, match="INTERORG_SECRETS_KEYS"):
        signing.sign(org.pk, "master@org1.example", b"payload")

    # The deployment's check (run by `migrate` too) says so before any request fails.
    with pytest.raises(SystemCheckError, match="INTERORG_SECRETS_KEYS"):
        call_command("check", databases=["default"], stdout=io.StringIO())
    keys.INTERORG_SECRETS_KEYS = [OTHER, OLD]
    call_command("check", databases=["default"], stdout=io.StringIO())

    # The rotation refuses too, and changes nothing.
    keys.INTERORG_SECRETS_KEYS = [NEW, OTHER]
    with pytest.raises(CommandError, match="INTERORG_SECRETS_KEYS") as caught:
        call_command("rotate_secrets", stdout=io.StringIO())
    assert "Traceback" not in str(caught.value)
    assert stored(LdapDirectory, "password", pk) == before


def test_rotation_checks_without_writing(org, keys):
    pk = _create(org)
    before = stored(LdapDirectory, "password", pk)
    keys.INTERORG_SECRETS_KEYS = [NEW, OLD]

    out = io.StringIO()
    call_command("rotate_secrets", "--check", stdout=out)

    assert "1 secret opens" in out.getvalue()
    assert stored(LdapDirectory, "password", pk) == before


# --- The migration of an installation holding them in clear ---------------------------------

AFTER = [
    ("directory", "0010_encrypt_bind_passwords"),
    ("transport", "0007_encrypt_private_keys"),
]


def just_before(targets):
    """The migration of the same app each of `targets` follows."""
    graph = MigrationExecutor(connection).loader.graph
    return [
        next(parent for parent in graph.node_map[target].parents if parent.key[0] == target[0]).key
        for target in targets
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("latest_schema_after")
def test_the_migrations_encrypt_clear_secrets_and_back(keys):
    before = just_before(AFTER)
    old = migrate(before)
    org = old.get_model("directory", "Organization").objects.create(name="ORG2", usn=0)
    directory = old.get_model("directory", "LdapDirectory").objects.create(
        organization=org, uri="ldap://x", base_dn="dc=x", password=PASSWORD
    )
    anonymous_org = old.get_model("directory", "Organization").objects.create(name="ORG3", usn=0)
    anonymous = old.get_model("directory", "LdapDirectory").objects.create(
        organization=anonymous_org, uri="ldap://x", base_dn="dc=x", password=""
    )
    private = base64.b64encode(b"k" * 32).decode()
    key = old.get_model("transport", "SigningKey").objects.create(
        organization=org, public_key="cHVi", private_key=private, fingerprint="f" * 64
    )

    migrate(AFTER)

    assert opened(stored(LdapDirectory, "password", directory.pk)) == PASSWORD
    assert stored(LdapDirectory, "password", anonymous.pk) == ""
    assert opened(stored(SigningKey, "private_key", key.pk)) == private

    migrate(before)

    assert stored(LdapDirectory, "password", directory.pk) == PASSWORD
    assert stored(LdapDirectory, "password", anonymous.pk) == ""
    assert stored(SigningKey, "private_key", key.pk) == private
