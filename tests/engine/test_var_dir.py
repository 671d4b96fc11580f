"""Several installations on one host: INTERORG_VAR_DIR gives each its own keys, SQLite database
and filesystem broker; INTERORG_BROKER_DIR moves the broker alone.

Each installation is started in a process of its own, with only the environment it gives.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

REPORT = """
import json, django
django.setup()
from django.conf import settings
from interorg_site import encryption
print(json.dumps({
    "secret_key": settings.SECRET_KEY,
    "secrets_key": encryption.keys()[0],
    "database": settings.DATABASES["default"]["NAME"],
    "broker": settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"],
}))
"""


def installation(**env: str) -> dict:
    """What an installation started with `env` (and nothing else of this process') uses."""
    environment = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "interorg_site.settings",
        "CELERY_BROKER_URL": "filesystem://localhost/",
        **env,
    }
    result = subprocess.run(
        [sys.executable, "-c", REPORT],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_each_var_dir_is_an_installation_of_its_own(tmp_path):
    first = installation(INTERORG_VAR_DIR=str(tmp_path / "first"))
    second = installation(INTERORG_VAR_DIR=str(tmp_path / "second"))

    assert first["secret_key"] != second["secret_key"]
    assert first["secrets_key"] != second["secrets_key"]
    for name, used in (("first", first), ("second", second)):
        var = tmp_path / name
        assert (var / "secret_key").read_text().strip() == used["secret_key"]
        assert (var / "secrets_key").read_text().strip() == used["secrets_key"]
        assert used["database"] == str(var / "interorg.sqlite3")
        assert used["broker"] == str(var / "broker" / "queue")
        assert (var / "broker" / "queue").is_dir()
    # Started again, an installation keeps its keys: sessions and stored secrets survive.
    assert installation(INTERORG_VAR_DIR=str(tmp_path / "first")) == first


def test_the_broker_dir_moves_the_broker_alone(tmp_path):
    used = installation(
        INTERORG_VAR_DIR=str(tmp_path / "var"), INTERORG_BROKER_DIR=str(tmp_path / "queues")
    )

    assert used["broker"] == str(tmp_path / "queues" / "queue")
    assert (tmp_path / "queues" / "control").is_dir()
    assert not (tmp_path / "var" / "broker").exists()
    assert used["database"] == str(tmp_path / "var" / "interorg.sqlite3")
