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


# --- Hostile input over the whole API -----------------------------------------------------------
# Every operation, with a NUL character in each string a script could send (query parameters,
# path parameters, JSON keys and values) and with JSON nested far deeper than any request needs:
# never a server error, and a refusal (400) wherever the input is read.

NUL = "\x00"


def with_nul(value):
    """The same JSON with a NUL character in every key and string."""
    if isinstance(value, str):
        return f"{value}{NUL}"
    if isinstance(value, dict):
        return {with_nul(key): with_nul(item) for key, item in value.items()} or {NUL: NUL}
    if isinstance(value, list):
        return [with_nul(item) for item in value] or [NUL]
    return value


def nested(depth: int):
    body: object = {"display_name": "deep"}
    for level in range(depth):
        body = {"level": level, "inside": [body]}
    return body


def refuse(operation, headers: dict, fixed: dict, **hostile):
    case = operation.Case(
        path_parameters={**fixed.get("path_parameters", {}), **hostile.pop("path", {})},
        **hostile,
    )
    response = case.call_and_validate(headers=headers, checks=[not_a_server_error])
    assert response.status_code == 400, (case.method, case.formatted_path, response.status_code)
    assert "detail" in response.json()
    return response


def fuzz_with_nul(operation, headers: dict, **fixed) -> None:
    """Generated cases of the operation with a NUL in every string they carry."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(**fixed))
    def run(case):
        case.query = with_nul(case.query) if case.query else {"q": NUL}
        if case.body is not None and not isinstance(case.body, bytes | str):
            case.body = with_nul(case.body)
        with transaction.atomic():
            response = case.call_and_validate(headers=headers, checks=[not_a_server_error])
            transaction.set_rollback(True)
        assert response.status_code == 400, (case.method, case.formatted_path, response.text)

    run()


def operations_with_fixed_ids(world, schema):
    ids = existing_ids(world)
    for result in schema.get_all_operations():
        operation = result.ok()
        resource = operation.path.split("/")[3]
        if "{id}" in operation.path and resource in ids:
            yield operation, {"path_parameters": {"id": ids[resource]}}
        elif "{name}" in operation.path:
            yield operation, {"path_parameters": {"name": ids["name"]}}
        elif "{" not in operation.path:
            yield operation, {}


def test_it_refuses_a_nul_anywhere_on_every_operation(world, api):
    schema, headers = api
    checked = 0
    for operation, fixed in operations_with_fixed_ids(world, schema):
        fuzz_with_nul(operation, headers, **fixed)
        for name in fixed.get("path_parameters", {}):
            with transaction.atomic():
                refuse(operation, headers, fixed, path={name: f"1{NUL}"})
                transaction.set_rollback(True)
        checked += 1
    assert checked > 40


def test_it_refuses_deeply_nested_json_on_every_operation_with_a_body(world, api):
    schema, headers = api
    checked = 0
    for operation, fixed in operations_with_fixed_ids(world, schema):
        if not operation.body:
            continue
        for body in (nested(40), nested(400), [nested(300)]):
            with transaction.atomic():
                response = refuse(
                    operation, headers, fixed, body=body, media_type="application/json"
                )
                transaction.set_rollback(True)
            assert "nested" in response.json()["detail"]
        checked += 1
    assert checked > 10
