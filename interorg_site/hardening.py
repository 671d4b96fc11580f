"""Checks that stop a process configured with secrets nobody should run with: the placeholders
of .env.example (always: nothing runs with them on purpose) and, in production, a weak Django
SECRET_KEY or a missing key for the secrets at rest. Messages name the variable, never its value.
"""

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

SECRETS_KEYS = "INTERORG_SECRETS_KEYS"
MAKE_SECRET = 'python3 -c "import secrets; print(secrets.token_urlsafe(50))"'
MAKE_FERNET_KEY = (
    'python3 -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)


# Where docker-compose.yml takes a variable from, when .env names it otherwise.
COMPOSE_ORIGIN = {"DATABASE_URL": " docker-compose.yml takes it from POSTGRES_PASSWORD."}


def is_placeholder(value: str) -> bool:
    """change-me and its spellings (CHANGE_ME, changeme, change-me-please...), replace-me."""
    word = re.sub(r"[\s_\-.]", "", value.lower())
    return word.startswith("changeme") or word == "replaceme"


def _url_password(url: str) -> str:
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""  # not a URL: the setting that reads it says so


def _flower_passwords(value: str) -> list[str]:
    return [pair.partition(":")[2] for pair in value.split(",")]


def refuse_placeholders(environ: Mapping[str, str]) -> None:
    """Raise ImproperlyConfigured if a secret still holds a placeholder of .env.example."""
    candidates = {
        "SECRET_KEY": [environ.get("SECRET_KEY", "")],
        SECRETS_KEYS: environ.get(SECRETS_KEYS, "").split(","),
        "DATABASE_URL": [_url_password(environ.get("DATABASE_URL", ""))],
        "CELERY_BROKER_URL": [_url_password(environ.get("CELERY_BROKER_URL", ""))],
        "EMAIL_HOST_PASSWORD": [environ.get("EMAIL_HOST_PASSWORD", "")],
        "FLOWER_BASIC_AUTH": _flower_passwords(environ.get("FLOWER_BASIC_AUTH", "")),
        "INTERORG_IMAP_PASSWORD": [environ.get("INTERORG_IMAP_PASSWORD", "")],
    }
    for name, values in candidates.items():
        if any(is_placeholder(value) for value in values):
            where = "The password in " if name.endswith(("_URL", "_AUTH")) else ""
            origin = COMPOSE_ORIGIN.get(name, "")
            raise ImproperlyConfigured(
                f"{where}{name} is still the placeholder of .env.example: replace it with a "
                f"secret of your own (for instance from {MAKE_SECRET}).{origin}"
            )


def require_strong_key(secret_key: str) -> None:
    """What Django's deployment check asks of SECRET_KEY (security.W009), enforced."""
    insecure = secret_key.startswith("django-insecure-")
    if len(secret_key) < 50 or len(set(secret_key)) < 5 or insecure:
        raise ImproperlyConfigured(
            "SECRET_KEY is too weak for production: give at least 50 characters of at least 5 "
            f"different kinds, not Django's django-insecure- one (make one with {MAKE_SECRET})."
        )


def parse_secrets_keys(keys: list[str]) -> list[str]:
    """The keys of INTERORG_SECRETS_KEYS, each checked: a bad one names its position."""
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except ValueError:
            raise ImproperlyConfigured(
                f"{SECRETS_KEYS}: key {position} of {len(keys)} is not a Fernet key (32 bytes "
                f"in URL-safe base64, 44 characters). Make one with {MAKE_FERNET_KEY}"
            ) from None
    return keys


def proxy_ssl_header(name: str) -> tuple[str, str] | None:
    """SECURE_PROXY_SSL_HEADER from a header name such as X-Forwarded-Proto."""
    name = name.strip()
    if not name:
        return None
    if not re.fullmatch(r"[A-Za-z0-9-]+", name):
        raise ImproperlyConfigured(
            f"SECURE_PROXY_SSL_HEADER={name!r} is not a header name: give the header your HTTPS "
            "proxy sets to https, such as X-Forwarded-Proto."
        )
    return "HTTP_" + name.upper().replace("-", "_"), "https"
