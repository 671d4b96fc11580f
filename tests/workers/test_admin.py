"""The requestor's admin page: Execute Now, Import All, Export All and the schedule."""

import pytest
from django.contrib.auth.models import Permission, User
from django.test import TestCase
from django.urls import reverse

from console.constants import ConsoleRole
from console.models import OrganizationRole
from requestor import schedule
from requestor.constants import RunStatus
from requestor.models import RequestorConfig, Run
from requestor.tasks import run_requestor_cycle

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:requestor_requestorconfig_changelist"


def staff(username: str, *codenames: str, operator_of=None) -> User:
    """A staff user with these Django permissions, and the operator role in `operator_of`
    (the buttons follow console.permissions' rule: the role, then the permission)."""
    user = User.objects.create_user(username, is_staff=True)
    codenames = ("view_requestorconfig", "change_requestorconfig", *codenames)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    if operator_of is not None:
        OrganizationRole.objects.create(
            user=user, organization=operator_of, role=ConsoleRole.OPERATOR
        )
    return user


def post_action(client, action: str, config: RequestorConfig):
    # The test's transaction never commits: run the on-commit hooks as a commit would.
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.post(
            reverse(CHANGELIST),
            {"action": action, "_selected_action": [config.pk]},
            follow=True,
        )


@pytest.fixture
def queued(monkeypatch) -> list:
    """The cycles queued for the workers (recorded, not sent)."""
    sent = []
    monkeypatch.setattr(run_requestor_cycle, "delay", lambda *args: sent.append(args))
    return sent


def test_it_offers_execute_now_only_with_the_permission(client, scenario, queued):
    config = scenario["ORG2"].config
    client.force_login(staff("viewer"))
    assert client.get(reverse(CHANGELIST)).context["action_form"] is None  # no action offered

    response = post_action(client, "execute_now", config)

    assert response.status_code == 200
    assert queued == []


def test_it_queues_execute_now_with_who_asked(client, scenario, queued):
    config = scenario["ORG2"].config
    operator = staff("operator", "execute_now", operator_of=config.organization)
    client.force_login(operator)

    response = post_action(client, "execute_now", config)

    run = Run.objects.get(config=config)
    assert (run.status, run.requested_by) == (RunStatus.QUEUED, operator)
    assert queued == [(config.pk, "manual", operator.pk, "", run.pk)]
    assert "Execute Now for ORG2: a cycle is queued" in response.content.decode()


def test_it_resets_a_usn_then_queues_a_cycle(client, scenario, queued):
    config = scenario["ORG2"].config
    RequestorConfig.objects.filter(pk=config.pk).update(requestor_usn=7, master_usn=9)
    operator = staff("operator", "reset_usns", operator_of=config.organization)
    client.force_login(operator)

    post_action(client, "export_all", config)
    assert RequestorConfig.objects.values_list("requestor_usn", "master_usn").get(pk=config.pk) == (
        0,
        9,
    )
    post_action(client, "import_all", config)
    assert RequestorConfig.objects.get(pk=config.pk).master_usn == 0
    # Import All joins the run Export All queued (not started yet, it reads both resets).
    run = Run.objects.get(config=config)
    assert queued == [(config.pk, "manual", operator.pk, "export_all", run.pk)]
    client.force_login(staff("viewer", "execute_now", operator_of=config.organization))
    post_action(client, "import_all", config)
    assert len(queued) == 1


def form_data(client, config: RequestorConfig, **changes) -> dict:
    url = reverse("admin:requestor_requestorconfig_change", args=[config.pk])
    form = client.get(url).context["adminform"].form
    data = {
        name: value
        for name, value in form.initial.items()
        if name in form.fields and value is not None
    }
    data.update(
        {
            "import_container": config.import_container_id,
            "exported_containers-TOTAL_FORMS": 0,
            "exported_containers-INITIAL_FORMS": 0,
            **changes,
        }
    )
    return url, data


def test_it_edits_the_schedule_on_the_requestor_page(admin_client, scenario):
    config = scenario["ORG2"].config
    url, data = form_data(admin_client, config, schedule_kind="daily", schedule_times="7:15, 19:15")

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert schedule.describe(config) == "daily at 07:15, 19:15"
    url, data = form_data(admin_client, config, schedule_kind="every", schedule_minutes=30)
    admin_client.post(url, data)
    assert schedule.describe(config) == "every 30 minutes"
    changelist = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert "every 30 minutes" in changelist


def test_it_explains_a_bad_schedule(admin_client, scenario):
    config = scenario["ORG2"].config
    url, data = form_data(admin_client, config, schedule_kind="daily", schedule_times="7:75")

    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert "is not a time of day" in str(response.context["adminform"].form.errors)
    assert schedule.describe(config) == "never (Execute Now only)"
