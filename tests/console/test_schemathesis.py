"""Property-based tests of the API against its own OpenAPI schema (schemathesis): whatever a
script sends, the API never fails with a server error and its answers match the schema.

Runs in-process against the WSGI application, as a superuser (who reaches every write path),
each example inside a rolled-back savepoint so the examples do not pile up in the database.
"""

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, given, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.console.conftest import add_history

EXAMPLES = 12
CHECKS = [not_a_server_error, response_schema_conformance]


@pytest.fixture
def keep_connection():
    """The WSGI handler closes the database connection after each request, which would end the
    test's transaction; Django's test client suspends that the same way."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def api(world, django_user_model, keep_connection):
    add_history(world.org2)
    user = django_user_model.objects.create_superuser("fuzzer", "fuzzer@example.com", "x")
    headers = {"Authorization": f"Token {Token.objects.create(user=user).key}"}
    schema = schemathesis.openapi.from_wsgi(
        "/api/schema/?format=json", get_wsgi_application(), headers=headers
    )
    return schema, headers


def existing_ids(world) -> dict:
    """Path parameters of real objects, so that changes reach the models' validation."""
    org2 = world.org2
    return {
        "name": org2.name,
        "recipients": org2.organization.recipients.exportable().first().pk,
        "containers": org2.recipients.pk,
        "requestor-configs": org2.config.pk,
        "exported-containers": org2.config.exported_containers.first().pk,
        "master-configs": world.master.pk,
        "allowed-requestors": world.master.requestors.first().pk,
        "runs": org2.config.runs.first().pk,
        "messages": org2.organization.messages.first().pk,
    }


def fuzz(operation, headers: dict, **fixed) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(**fixed))
    def run(case):
        with transaction.atomic():
            case.call_and_validate(headers=headers, checks=CHECKS)
            transaction.set_rollback(True)

    run()


def test_it_answers_every_operation_without_server_errors(world, api):
    schema, headers = api
    ids = existing_ids(world)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40
    for operation in operations:
        fuzz(operation, headers)
        resource = operation.path.split("/")[3]
        if "{id}" in operation.path and resource in ids:
            fuzz(operation, headers, path_parameters={"id": ids[resource]})
        elif "{name}" in operation.path:
            fuzz(operation, headers, path_parameters={"name": ids["name"]})
