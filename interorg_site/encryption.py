"""Secrets at rest: the private halves of signing keys and LDAP bind passwords are stored
encrypted (Fernet: AES-128-CBC with HMAC-SHA256) with a key that the database does not hold.

The keys come from INTERORG_SECRETS_KEYS (comma-separated; the first encrypts, every one
decrypts, so a new key goes first and the old one stays after it until `manage.py
rotate_secrets` has re-encrypted everything). Without it, the embedded default makes one key
under VAR_DIR, once, readable by its owner only. A copy of the database alone, a dump or a
backup, then reveals no secret.

EncryptedTextField does the work at the one place every write goes through (the value prepared
for the database): save(), create(), bulk_create(), update(), bulk_update() and directory.bulk
(COPY and its JSON updates) all store the encrypted value; a read gives the clear one back.
"""

import functools
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import models

from interorg_site.hardening import SECRETS_KEYS as SETTING
from interorg_site.hardening import parse_secrets_keys


class UndecryptableSecret(ImproperlyConfigured):
    """A stored secret that none of the configured keys decrypts: the keys changed, or the
    database comes from another installation."""


@functools.lru_cache(maxsize=4)
def _key_file_key(path: Path) -> str:
    """The embedded default's key, made on first use. Two processes starting together agree on
    one: the key is written aside and linked into place, and the loser reads the winner's."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(Fernet.generate_key().decode() + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


def keys() -> tuple[str, ...]:
    configured = getattr(settings, SETTING, [])
    if configured:
        return tuple(configured)
    return (_key_file_key(Path(settings.INTERORG_SECRETS_KEY_FILE)),)


@functools.lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in parse_secrets_keys(list(keys))])


def fernet() -> MultiFernet:
    return _fernet(keys())


def encrypt(clear: str) -> str:
    return fernet().encrypt(clear.encode()).decode("ascii")


def decrypt(token: str, what: str) -> str:
    try:
        return fernet().decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError):
        raise undecryptable(what) from None


def key_source() -> str:
    """Where the keys come from, as messages name it."""
    if getattr(settings, SETTING, []):
        return SETTING
    return f"{settings.INTERORG_SECRETS_KEY_FILE} (the key used while {SETTING} is not set)"


def undecryptable(what: str) -> UndecryptableSecret:
    where = key_source()
    return UndecryptableSecret(
        f"A secret stored in {what} cannot be decrypted with any key of {where}: the keys "
        f"changed since it was written, or the database comes from another installation. "
        f"Put the key it was encrypted with back in {SETTING} (after the new one), then run "
        "`manage.py rotate_secrets`; if it was written before the encryption, run "
        "`manage.py migrate`."
    )


class EncryptedTextField(models.TextField):
    """Text stored encrypted, given back clear. An empty value stays empty (an anonymous bind
    has no secret), so `field=""` still finds it; no other lookup can match, since every
    encryption of a value differs. `max_length` limits the clear text, in forms."""

    description = "Text encrypted at rest"

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        return decrypt(value, self.label())

    def get_db_prep_save(self, value, connection):
        value = super().get_db_prep_save(value, connection)
        if not value or hasattr(value, "as_sql"):
            return value  # an expression's values come back here one by one (bulk_update)
        return encrypt(value)

    def label(self) -> str:
        return f"{self.model._meta.label}.{self.name}"


def encrypted_fields() -> list[tuple[type[models.Model], EncryptedTextField]]:
    """Every encrypted field of the installed models."""
    from django.apps import apps

    return [
        (model, field)
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if isinstance(field, EncryptedTextField)
    ]


def _stored(model: type[models.Model], field: EncryptedTextField, lock: bool):
    """(pk, token) of every row holding a secret in `field`, as stored (not decrypted); with
    `lock`, the rows are locked until the transaction ends, so that a secret changed meanwhile
    (in the console, say) is not overwritten with the one read before."""
    from django.db.models.functions import Cast

    rows = model._base_manager.exclude(**{field.name: ""}).exclude(**{field.name: None})
    if lock:
        rows = rows.select_for_update()
    raw = Cast(field.name, models.TextField())
    return rows.order_by("pk").annotate(stored_token=raw).values_list("pk", "stored_token")


def reencrypt_all(write: bool = True) -> tuple[int, int]:
    """Decrypt every stored secret and, with `write`, store it again encrypted with the first key;
    return (how many, how many were under another key than the first). All or nothing: the
    caller holds a transaction, and the first secret no key opens raises UndecryptableSecret."""
    first = Fernet(keys()[0].encode())
    count = older = 0
    for model, field in encrypted_fields():
        for pk, token in _stored(model, field, lock=write):
            clear = decrypt(token, f"{field.label()} (id {pk})")
            try:
                first.decrypt(token.encode("ascii"))
            except InvalidToken:
                older += 1
            if write:
                model._base_manager.filter(pk=pk).update(**{field.name: clear})
            count += 1
    return count, older


@checks.register(checks.Tags.database)
def check_secrets_open(app_configs=None, databases=None, **kwargs) -> list[checks.CheckMessage]:
    """Every stored secret opens with the configured keys: checked by `migrate` (which compose
    runs before any other process starts) and `manage.py check --database default`, so a wrong
    key stops the deployment with the reason instead of failing its first request."""
    if not databases or "default" not in databases:
        return []
    from django.db import DatabaseError, connections
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connections["default"])
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            return []  # migrate is about to bring the schema, and the encryption, up to date
        reencrypt_all(write=False)
    except UndecryptableSecret as exc:
        return [checks.Error(str(exc), id="interorg.E001")]
    except DatabaseError:
        return []  # no database yet: nothing stored to open
    return []
