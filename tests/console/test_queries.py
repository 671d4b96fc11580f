"""The directory browser and the recipients API list take the same number of queries whatever
the number of recipients (no query per row)."""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from directory.constants import Kind
from directory.factories import RecipientFactory


def add_people(container, count: int, start: int) -> None:
    people = [
        RecipientFactory(
            container=container,
            alias=f"bulk{n}",
            primary_smtp=f"bulk{n}@org2.example",
        )
        for n in range(start, start + count)
    ]
    lists = RecipientFactory(
        container=container,
        kind=Kind.DISTRIBUTION_LIST,
        alias=f"list{start}",
        primary_smtp=f"list{start}@org2.example",
        members=people,
    )
    assert lists.members.count() == count


def queries(client, url: str, params=None) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params or {})
    assert response.status_code == 200
    return len(captured)


def test_it_browses_a_container_in_constant_queries(world, operator_client):
    container = world.org2.recipients
    url = f"/o/ORG2/directory/containers/{container.pk}/"
    add_people(container, 3, 0)
    few = queries(operator_client, url)
    add_people(container, 30, 100)
    assert queries(operator_client, url) == few


def test_it_lists_containers_in_constant_queries(world, operator_client):
    few = queries(operator_client, "/o/ORG2/directory/")
    add_people(world.org2.recipients, 20, 0)
    assert queries(operator_client, "/o/ORG2/directory/") == few


def test_it_lists_recipients_over_the_api_in_constant_queries(world, operator_api):
    container = world.org2.recipients
    add_people(container, 3, 0)
    few = queries(operator_api, "/api/v1/recipients/", {"organization": "ORG2"})
    add_people(container, 30, 100)
    assert queries(operator_api, "/api/v1/recipients/", {"organization": "ORG2"}) == few
