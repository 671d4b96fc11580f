"""Execute Now, Import All and Export All obey one rule, whichever way they are pressed: the
console's buttons, the API and the admin's actions refuse the same users and let the same users
through. The rule (console.permissions.may): the organization's administrators, or its operators
holding the Django permission of the button (requestor.execute_now, requestor.reset_usns)."""

from pathlib import Path

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from console import permissions
from console.constants import ADMINISTRATORS_GROUP, ConsoleRole
from requestor.models import RequestorConfig
from tests.console.conftest import logged_in, make_user, token_client
from tests.workers.conftest import filesystem_broker, use_broker  # noqa: F401 (a fixture)

ACTIONS = ["execute_now", "import_all", "export_all"]

# The table the README gives: who may press each button of ORG2, by role and permission.
TABLE = {
    # persona: (role in ORG2, Django permissions, {action: allowed})
    "no role, both permissions": (None, ["execute_now", "reset_usns"], set()),
    "operator": (ConsoleRole.OPERATOR, [], set()),
    "operator + execute_now": (ConsoleRole.OPERATOR, ["execute_now"], {"execute_now"}),
    "operator + reset_usns": (ConsoleRole.OPERATOR, ["reset_usns"], {"import_all", "export_all"}),
    "administrator": (ConsoleRole.ADMINISTRATOR, [], set(ACTIONS)),
    "administrators group": ("group", [], set(ACTIONS)),
    "superuser": ("superuser", [], set(ACTIONS)),
}
CASES = [(persona, action) for persona in TABLE for action in ACTIONS]


@pytest.fixture
def broker(use_broker, tmp_path, settings):  # noqa: F811 (the fixture imported above)
    """Workers are running: a permitted press queues a task on a real (filesystem) broker."""
    settings.INTERORG_DISPATCH_TASKS = True
    folder = tmp_path / "broker"
    use_broker(filesystem_broker(folder))
    return folder / "queue"


def queued(queue: Path) -> int:
    return sum(1 for _ in queue.iterdir())


def persona(world, name: str):
    role, codenames, _ = TABLE[name]
    org2 = world.org2.organization
    user = make_user(
        name.replace(" ", "_").replace("+", "with"),
        {org2: role} if role in (ConsoleRole.OPERATOR, ConsoleRole.ADMINISTRATOR) else {},
        is_staff=True,  # so that the admin's changelist opens; the rule decides the rest
        is_superuser=role == "superuser",
    )
    if role == "group":
        user.groups.add(Group.objects.get_or_create(name=ADMINISTRATORS_GROUP)[0])
    # Every persona may open the admin's requestor list; only the rule decides the buttons.
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["view_requestorconfig", *codenames])
    )
    return type(user).objects.get(pk=user.pk)


def usns(world) -> tuple[int, int]:
    return RequestorConfig.objects.values_list("requestor_usn", "master_usn").get(
        pk=world.org2.config.pk
    )


@pytest.fixture
def dirty_usns(world):
    RequestorConfig.objects.filter(pk=world.org2.config.pk).update(requestor_usn=7, master_usn=9)
    return (7, 9)


def press_console(world, user, action: str):
    name = {"execute_now": "execute-now", "import_all": "import-all", "export_all": "export-all"}
    url = reverse(f"console:{name[action]}", kwargs={"org": world.org2.name})
    return logged_in(user).post(url, {"confirm": "yes"})


def press_api(world, user, action: str):
    path = action.replace("_", "-")
    return token_client(user).post(f"/api/v1/requestor-configs/{world.org2.config.pk}/{path}/")


def press_admin(world, user, action: str):
    return logged_in(user).post(
        reverse("admin:requestor_requestorconfig_changelist"),
        {"action": action, "_selected_action": [world.org2.config.pk]},
        follow=True,
    )


def test_the_rule_is_the_table(world):
    for name, (_, _, allowed) in TABLE.items():
        user = persona(world, name)
        assert {a for a in ACTIONS if permissions.may(user, world.org2.organization, a)} == allowed


@pytest.mark.parametrize("name, action", CASES)
def test_the_console_buttons_follow_the_rule(world, broker, dirty_usns, name, action):
    allowed = action in TABLE[name][2]

    response = press_console(world, persona(world, name), action)

    if allowed:
        assert response.status_code == 302
        assert queued(broker) == 1
        assert usns(world) != dirty_usns or action == "execute_now"
    else:
        assert response.status_code in (403, 404)  # 404: no role, the organization is hidden
        assert (queued(broker), usns(world)) == (0, dirty_usns)


@pytest.mark.parametrize("name, action", CASES)
def test_the_api_follows_the_rule(world, broker, dirty_usns, name, action):
    allowed = action in TABLE[name][2]

    response = press_api(world, persona(world, name), action)

    if allowed:
        assert response.status_code == 202, response.content
        assert queued(broker) == 1
    else:
        assert response.status_code in (403, 404), response.content
        assert (queued(broker), usns(world)) == (0, dirty_usns)


@pytest.mark.parametrize("name, action", CASES)
def test_the_admin_actions_follow_the_rule(world, broker, dirty_usns, name, action):
    allowed = action in TABLE[name][2]

    response = press_admin(world, persona(world, name), action)

    assert response.status_code == 200
    if allowed:
        assert "a cycle is queued" in response.content.decode()
        assert queued(broker) == 1
    else:
        assert (queued(broker), usns(world)) == (0, dirty_usns)


def test_the_admin_refuses_a_selection_with_one_forbidden_organization(world, broker):
    """Nothing is half-applied: one organization the user may not press refuses them all."""
    user = persona(world, "operator + reset_usns")
    RequestorConfig.objects.update(requestor_usn=7)

    response = logged_in(user).post(
        reverse("admin:requestor_requestorconfig_changelist"),
        {"action": "export_all", "_selected_action": [world.org2.config.pk, world.org3.config.pk]},
        follow=True,
    )

    assert "ORG3" in response.content.decode()
    assert queued(broker) == 0
    assert set(RequestorConfig.objects.values_list("requestor_usn", flat=True)) == {7}


def test_the_admin_offers_the_buttons_by_the_same_rule(world):
    changelist = reverse("admin:requestor_requestorconfig_changelist")
    for name, (_, _, allowed) in TABLE.items():
        form = logged_in(persona(world, name)).get(changelist).context["action_form"]
        offered = {value for value, _ in form.fields["action"].choices} if form else set()
        assert offered & set(ACTIONS) == allowed, name
