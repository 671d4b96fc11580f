"""Containers added, renamed, moved and deleted from the console, the API and the admin: a
container moved out of an exported one takes its recipients out of every other organization's
address book at the next cycles, and moved back in, brings them back."""

import pytest
from django.urls import reverse

from directory.factories import ContainerFactory, RecipientFactory
from directory.models import Container
from requestor.cycle import sync_all

TEAM = "Sam Sales"


def sales_team(world):
    sales = ContainerFactory(
        site=world.org2.recipients.site, parent=world.org2.recipients, name="Sales"
    )
    RecipientFactory(container=sales, display_name=TEAM, alias="sam", primary_smtp="sam@o2.test")
    sync_all(max_rounds=3)
    return sales


def held_by_others(world) -> list[bool]:
    return [
        org.organization.recipients.filter(
            global_key__isnull=False, hidden_at=None, display_name=TEAM
        ).exists()
        for org in (world.org1, world.org3)
    ]


def console_move(client, world, container, parent):
    url = reverse("console:container-edit", kwargs={"org": "ORG2", "pk": container.pk})
    data = {"site": container.site_id, "parent": parent.pk if parent else "", "name": "Sales"}
    return client.post(url, data)


def api_move(client, world, container, parent):
    return client.patch(
        f"/api/v1/containers/{container.pk}/",
        {"parent": parent.pk if parent else None},
        format="json",
    )


def admin_move(client, world, container, parent):
    url = reverse("admin:directory_container_change", args=[container.pk])
    data = {"site": container.site_id, "parent": parent.pk if parent else "", "name": "Sales"}
    return client.post(url, data)


@pytest.mark.parametrize(
    ("move", "client_fixture"),
    [(console_move, "admin_client_"), (api_move, "admin_api"), (admin_move, "admin_client")],
    ids=["console", "api", "admin"],
)
def test_a_container_moved_out_of_the_exported_one_leaves_every_address_book(
    world, request, move, client_fixture
):
    client = request.getfixturevalue(client_fixture)
    sales = sales_team(world)
    assert held_by_others(world) == [True, True]

    response = move(client, world, sales, None)
    assert response.status_code in (200, 302), response.content[:500]
    sales.refresh_from_db()
    assert sales.parent_id is None and sales.dn == "/o=ORG2/ou=Site2/cn=Sales"
    sync_all(max_rounds=3)

    assert held_by_others(world) == [False, False]

    move(client, world, sales, world.org2.recipients)
    sync_all(max_rounds=3)

    assert held_by_others(world) == [True, True]


def test_it_adds_a_container_and_deletes_it_once_empty(world, admin_client_):
    response = admin_client_.post(
        reverse("console:container-add", kwargs={"org": "ORG2"}),
        {"site": world.org2.recipients.site_id, "parent": world.org2.recipients.pk, "name": "Lab"},
    )
    lab = Container.objects.get(name="Lab")
    assert response.status_code == 302
    assert lab.dn == "/o=ORG2/ou=Site2/cn=Recipients/cn=Lab"

    delete = reverse("console:container-delete", kwargs={"org": "ORG2", "pk": lab.pk})
    assert admin_client_.post(delete, {}).status_code == 302
    assert not Container.objects.filter(name="Lab").exists()


def test_it_refuses_to_delete_a_container_that_is_not_empty(world, admin_client_):
    url = reverse(
        "console:container-delete", kwargs={"org": "ORG2", "pk": world.org2.recipients.pk}
    )
    response = admin_client_.post(url, {}, follow=True)
    assert "is not empty" in response.content.decode()
    assert Container.objects.filter(pk=world.org2.recipients.pk).exists()


def test_it_refuses_to_move_a_container_inside_itself(world, admin_client_, admin_api):
    inner = ContainerFactory(site=world.org2.recipients.site, parent=world.org2.recipients)
    response = api_move(admin_api, world, world.org2.recipients, inner)
    assert response.status_code == 400
    assert "cannot lie inside itself" in str(response.json())
    form = admin_client_.get(
        reverse("console:container-edit", kwargs={"org": "ORG2", "pk": world.org2.recipients.pk})
    )
    offered = form.context["form"].fields["parent"].queryset
    assert not offered.filter(pk=inner.pk).exists()  # not even offered


def test_only_administrators_change_containers(world, operator_client, outsider_api):
    url = reverse("console:container-edit", kwargs={"org": "ORG2", "pk": world.org2.recipients.pk})
    assert operator_client.get(url).status_code == 403
    response = outsider_api.patch(
        f"/api/v1/containers/{world.org2.recipients.pk}/", {"name": "Mine"}, format="json"
    )
    assert response.status_code == 404
    assert Container.objects.get(pk=world.org2.recipients.pk).name == "Recipients"
