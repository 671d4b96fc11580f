"""Two sessions that sign for an organization with no key yet, at the same time (two workers
processing its first messages): both sign with the one key the first of them made."""

import threading
import time

import pytest
from django.db import connection, transaction

from directory.factories import OrganizationFactory
from transport import signing
from transport.models import SigningKey

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def waiting_to_insert_a_key() -> bool:
    with connection.cursor() as cursor:
        # (Inside a transaction the activity is read once, unless its snapshot is dropped.)
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO \"transport_signingkey\"%%'"
        )
        return cursor.fetchone()[0] > 0


def test_two_sessions_making_the_first_key_at_once_both_use_it():
    organization = OrganizationFactory()
    second: dict = {}

    def sign_elsewhere():
        try:
            second["fingerprint"] = signing.sign(organization.pk, "x@example.org", b"hi")[1]
        except Exception as exc:  # reported below
            second["error"] = exc
        finally:
            connection.close()

    with transaction.atomic():
        first = signing.active_key(organization.pk)  # made, not committed yet
        other = threading.Thread(target=sign_elsewhere)
        other.start()
        deadline = time.monotonic() + 30
        # The other session saw no key, made one, and waits on the unique index for this one.
        while not waiting_to_insert_a_key() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert waiting_to_insert_a_key()
    other.join(30)

    assert second == {"fingerprint": first.fingerprint}
    assert SigningKey.objects.filter(organization=organization, active=True).count() == 1
