"""/healthz answers without a login whether the database and the broker answer."""

from unittest import mock

import pytest
from django.test import Client


@pytest.mark.django_db
def test_it_reports_database_and_broker_ok():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_it_reports_a_broker_that_does_not_answer(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    settings.INTERORG_HEALTHZ_BROKER_TIMEOUT = 1
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "broker": "down"}


@pytest.mark.django_db
def test_it_reports_a_database_that_does_not_answer():
    with mock.patch("console.views.health.connection") as connection:
        connection.cursor.side_effect = RuntimeError("connection refused")
        response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == "down"


@pytest.mark.django_db
def test_it_checks_a_redis_broker():
    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    from django.test import override_settings

    with override_settings(
        CELERY_BROKER_URL="redis://127.0.0.1:6379/15", CELERY_BROKER_TRANSPORT_OPTIONS={}
    ):
        response = Client().get("/healthz")
    assert response.json()["broker"] == "ok"


def test_it_only_answers_get():
    assert Client().post("/healthz").status_code == 405
