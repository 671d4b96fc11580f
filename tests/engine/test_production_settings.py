"""Safe production defaults: the configuration docker-compose.yml gives the console passes
`manage.py check --deploy`, placeholder and weak secrets stop every process with a message naming
the variable, and the embedded default (`make run`, `make test`) still needs no secret at all.

Each case starts the settings in a process of its own, with only the environment it gives.
"""

import json
import os
import re
import secrets
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]

# What the operator supplies where the compose file demands a value (${NAME:?...}).
STRONG = {
    "SECRET_KEY": lambda: secrets.token_urlsafe(50),
    "POSTGRES_PASSWORD": lambda: secrets.token_hex(16),
    "LDAP_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(24),
    "FLOWER_BASIC_AUTH": lambda: "admin:" + secrets.token_urlsafe(24),
    "INTERORG_SECRETS_KEYS": lambda: Fernet.generate_key().decode(),
}
VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def dotenv(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {name.strip(): value.strip() for name, value in pairs if not name.startswith("#")}


def interpolate(text: str, variables: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error}."""

    def value(match: re.Match) -> str:
        name, operator, default = match.groups()
        given = variables.get(name, "")
        if operator == ":-" and not given:
            return default
        if operator == ":?" and not given:
            raise AssertionError(f"{name} must be given: {default}")
        return given

    return VARIABLE.sub(value, text)


def image_environment() -> dict[str, str]:
    """The ENV lines of the Dockerfile: what every container starts with."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(word.split("=", 1) for word in shlex.split(line[4:]))
    return env


def compose_environment(service: str, operator: dict[str, str]) -> dict[str, str]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    variables = {**dotenv(ROOT / ".env.example"), **operator}
    environment = compose["services"][service]["environment"]
    given = {name: interpolate(str(value), variables) for name, value in environment.items()}
    return {**image_environment(), **given}


@pytest.fixture
def operator_values() -> dict[str, str]:
    """Strong values for every variable the compose file requires (placeholders in
    .env.example)."""
    text = (ROOT / "docker-compose.yml").read_text()
    required = {m.group(1) for m in VARIABLE.finditer(text) if m.group(2) == ":?"}
    assert required <= set(STRONG), f"no strong value to supply for {required - set(STRONG)}"
    return {name: STRONG[name]() for name in required}


def run(environment: dict[str, str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """manage.py with exactly `environment` (and a var directory of its own)."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **environment}
    env["INTERORG_VAR_DIR"] = str(tmp_path / "var")
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_compose_configuration_passes_the_deployment_checks(operator_values, tmp_path):
    environment = compose_environment("web", operator_values)

    result = run(environment, tmp_path, "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("service", ["worker", "smtpd", "flower", "migrate"])
def test_every_compose_process_starts_with_the_operator_values(service, operator_values, tmp_path):
    result = run(compose_environment(service, operator_values), tmp_path, "check")

    assert result.returncode == 0, result.stdout + result.stderr


PLACEHOLDERS = [
    ("SECRET_KEY", "change-me", "SECRET_KEY"),
    ("POSTGRES_PASSWORD", "change-me", "DATABASE_URL"),
    ("INTERORG_SECRETS_KEYS", "change-me", "INTERORG_SECRETS_KEYS"),
    ("FLOWER_BASIC_AUTH", "admin:change-me", "FLOWER_BASIC_AUTH"),
    ("EMAIL_HOST_PASSWORD", "change-me", "EMAIL_HOST_PASSWORD"),
    ("SECRET_KEY", "Sh0rt-but-varied-key", "SECRET_KEY"),
    ("SECRET_KEY", "ab" * 40, "SECRET_KEY"),
    # A fixed value: parameters are collected alike by every xdist worker.
    ("SECRET_KEY", "django-insecure-Qm7vX2pL9sKd4Rt8Wn3Zy6Hb1Jc5Fg0Ae_TuVoYiPkMlN", "SECRET_KEY"),
]


@pytest.mark.parametrize(("name", "value", "named"), PLACEHOLDERS)
def test_it_refuses_placeholder_and_weak_secrets(name, value, named, operator_values, tmp_path):
    operator_values[name] = value
    environment = compose_environment("flower", operator_values)

    result = run(environment, tmp_path, "check")

    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured: ")
    assert named in last
    assert value not in last  # the message names the variable, never repeats a secret


def test_it_refuses_to_run_in_production_without_a_secrets_key(operator_values, tmp_path):
    environment = compose_environment("web", operator_values)
    del environment["INTERORG_SECRETS_KEYS"]

    result = run(environment, tmp_path, "check")

    assert result.returncode != 0
    assert "INTERORG_SECRETS_KEYS" in result.stderr.strip().splitlines()[-1]


def test_the_embedded_default_needs_no_secret(tmp_path):
    result = run({}, tmp_path, "check")

    assert result.returncode == 0, result.stderr
    key_file = tmp_path / "var" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_text().strip()) >= 50


def test_a_debug_run_takes_a_short_key_but_never_a_placeholder(tmp_path):
    debug = {"DEBUG": "true", "INTERORG_PRODUCTION": "true"}

    assert run({**debug, "SECRET_KEY": "dev"}, tmp_path, "check").returncode == 0
    refused = run({**debug, "SECRET_KEY": "change-me"}, tmp_path, "check")
    assert refused.returncode != 0 and "SECRET_KEY" in refused.stderr


PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.test import Client
client = Client(HTTP_HOST="localhost")
plain = client.get("/login/")
proxied = client.get("/login/", headers={"X-Forwarded-Proto": "https"})
print(json.dumps({
    "plain": [plain.status_code, plain.get("Location", "")],
    "proxied": [proxied.status_code, proxied.get("Strict-Transport-Security", "")],
    "healthz": client.get("/healthz").status_code,
    "cookies": [settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE],
}))
"""


def probe(environment: dict[str, str], tmp_path: Path) -> dict:
    environment = {
        **environment,
        "DJANGO_SETTINGS_MODULE": "interorg_site.settings",
        # The compose services are not here: a database and a broker of the test's own.
        "DATABASE_URL": f"sqlite:///{tmp_path / 'probe.sqlite3'}",
        "CELERY_BROKER_URL": "filesystem://localhost/",
    }
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **environment}
    env["INTERORG_VAR_DIR"] = str(tmp_path / "var")
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_redirects_to_https_behind_the_proxy_header(operator_values, tmp_path):
    seen = probe(compose_environment("web", operator_values), tmp_path)

    assert seen["plain"] == [301, "https://localhost/login/"]
    status, hsts = seen["proxied"]
    assert status == 200
    assert hsts.startswith("max-age=31536000") and "includeSubDomains" in hsts
    # The container's health check asks over plain HTTP from inside.
    assert seen["healthz"] != 301
    assert seen["cookies"] == [True, True]


def test_production_defaults_yield_to_the_environment(operator_values, tmp_path):
    environment = compose_environment("web", operator_values)
    environment.update(SECURE_SSL_REDIRECT="false", SECURE_HSTS_SECONDS="0")

    seen = probe(environment, tmp_path)

    assert seen["plain"][0] == 200
    assert seen["proxied"] == [200, ""]


def test_the_embedded_default_serves_plain_http(tmp_path):
    seen = probe({}, tmp_path)

    assert seen["plain"] == [200, ""]
    assert seen["cookies"] == [False, False]
