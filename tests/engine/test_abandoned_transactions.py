"""A process that vanishes in the middle of a transaction without closing its connection (a
worker host that lost power or its network) holds its row locks only until PostgreSQL ends the
idle session: INTERORG_DB_IDLE_TRANSACTION_SECONDS (10 minutes unless set)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from directory.models import Organization
from interorg_site.env import current_database_url

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
# Takes the organization's row lock, says so, then stops answering with the transaction open.
ABANDON = """
import sys, time, django
django.setup()
from django.db import transaction
from directory.models import Organization
with transaction.atomic():
    Organization.objects.select_for_update().get(pk=int(sys.argv[1]))
    print("locked", flush=True)
    time.sleep(60)
"""


def test_the_sessions_of_the_application_end_an_abandoned_transaction():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    with connection.cursor() as cursor:
        cursor.execute("SHOW idle_in_transaction_session_timeout")
        assert cursor.fetchone()[0] == "10min"


def test_a_lock_held_by_a_vanished_process_is_freed_after_the_idle_timeout():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    organization = Organization.objects.create(name="ORGX")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "interorg_site.settings",
        "DATABASE_URL": current_database_url(),
        "INTERORG_DB_IDLE_TRANSACTION_SECONDS": "2",
    }
    holder = subprocess.Popen(
        [sys.executable, "-c", ABANDON, str(organization.pk)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '30s'")
            cursor.execute(
                "UPDATE directory_organization SET usn = usn + 1 WHERE id = %s", [organization.pk]
            )
            cursor.execute("SET lock_timeout = 0")
        waited = time.monotonic() - start
        # Blocked until the holder's session was ended, well before its 60 s were up.
        assert 1.5 < waited < 20, waited
    finally:
        holder.kill()
        holder.wait()


def test_pgoptions_still_has_the_last_word():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    env = {
        **os.environ,
        "DATABASE_URL": current_database_url(),
        "PGOPTIONS": "-c idle_in_transaction_session_timeout=7s",
    }
    shown = subprocess.run(
        [sys.executable, "-c", SHOW],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.strip() == "7s"


SHOW = """
import django
django.setup()
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("SHOW idle_in_transaction_session_timeout")
    print(cursor.fetchone()[0])
"""
