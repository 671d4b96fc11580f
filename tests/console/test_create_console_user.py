"""manage.py create_console_user: a login with a role in one organization, or in all."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from console import permissions
from console.models import OrganizationRole


def run(*args) -> str:
    out = StringIO()
    call_command("create_console_user", *args, stdout=out)
    return out.getvalue()


def test_it_creates_an_operator_of_one_organization(world):
    output = run("olga", "--org", "org2", "--role", "operator", "--token")
    assert "olga is operator of ORG2." in output
    assert "Password: " in output and "API token: " in output
    user = get_user_model().objects.get(username="olga")
    assert permissions.can_view(user, world.org2.organization)
    assert not permissions.can_administer(user, world.org2.organization)
    assert not permissions.can_view(user, world.org3.organization)


def test_it_changes_the_role_of_an_existing_user(world):
    run("olga", "--org", "ORG2")
    output = run("olga", "--org", "ORG2", "--role", "administrator")
    assert "Password" not in output
    assert OrganizationRole.objects.get(user__username="olga").role == "administrator"


def test_it_makes_an_administrator_of_every_organization(world):
    run("hub", "--all-organizations", "--role", "administrator")
    user = get_user_model().objects.get(username="hub")
    assert all(
        permissions.can_administer(user, org.organization)
        for org in (world.org1, world.org2, world.org3)
    )
    assert permissions.is_installation_administrator(user)


def test_it_names_the_known_organizations_when_one_is_missing(world):
    with pytest.raises(CommandError, match=r"No organization named 'ORG9' \(known: ORG1, ORG2"):
        run("olga", "--org", "ORG9")


def test_it_lets_inactive_users_do_nothing(world):
    run("olga", "--org", "ORG2", "--role", "administrator")
    user = get_user_model().objects.get(username="olga")
    user.is_active = False
    assert not permissions.can_view(user, world.org2.organization)
