"""The first request after the database dropped its connections (a restart, a failover, an
administrator's pg_terminate_backend) is answered normally: the persistent connection is checked
at the start of each request and opened again if it is dead (CONN_HEALTH_CHECKS)."""

import io

import psycopg
import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection
from django.test import RequestFactory
from rest_framework.authtoken.models import Token

from tests.console.conftest import make_user

pytestmark = pytest.mark.postgres


def request(path: str, token: str) -> tuple[int, bytes]:
    """One request through Django's real WSGI handler, as a server sends it: unlike the test
    client, it runs the connection checks of the request's start and end."""
    environ = RequestFactory()._base_environ(
        PATH_INFO=path, REQUEST_METHOD="GET", HTTP_AUTHORIZATION=f"Token {token}"
    )
    environ["wsgi.input"] = io.BytesIO(b"")
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer["status"] = int(status.split()[0])

    body = b"".join(WSGIHandler()(environ, start_response))
    return answer["status"], body


def terminate(pid: int) -> None:
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname=db["NAME"],
        autocommit=True,
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_the_first_request_after_the_connection_was_killed_answers_200(transactional_db):
    token = Token.objects.create(user=make_user("alice", is_superuser=True)).key
    assert request("/api/v1/organizations/", token)[0] == 200
    pid = connection.connection.info.backend_pid  # kept open between requests (CONN_MAX_AGE)

    terminate(pid)
    status, body = request("/api/v1/organizations/", token)

    assert status == 200, body[:500]
    assert connection.connection.info.backend_pid != pid
