"""Execute Now, Import All and Export All queue a cycle for the workers, for permitted users."""

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.exceptions import PermissionDenied

from console.constants import OPERATORS_GROUP
from requestor import actions
from requestor.constants import RunStatus, Trigger
from requestor.models import RequestorConfig, Run
from tests.workers.conftest import contacts, expected_contacts, quiet, wait_for


def user_with(username: str, *codenames: str) -> User:
    """A user with these Django permissions and the operator role in every organization (the
    buttons follow console.permissions' rule: the role, then the permission)."""
    user = User.objects.create_user(username, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    user.groups.add(Group.objects.get_or_create(name=OPERATORS_GROUP)[0])
    return User.objects.get(pk=user.pk)  # a fresh object: no cached permissions


def test_it_runs_execute_now_only_for_a_user_with_the_permission(
    fs_broker, celery_processes, three_orgs
):
    processes = celery_processes(fs_broker)
    processes.worker()
    viewer = user_with("viewer", "view_requestorconfig")
    operator = user_with("operator", "view_requestorconfig", "execute_now")
    config = three_orgs["ORG2"].config

    with pytest.raises(PermissionDenied, match="requestor.execute_now"):
        actions.execute_now(config, viewer, queue=True)
    actions.execute_now(config, operator, queue=True)

    run = wait_for(
        lambda: Run.objects.filter(config=config, status=RunStatus.OK).first(), 20, "the run"
    )
    assert (run.trigger, run.requested_by) == (Trigger.MANUAL, operator)
    wait_for(quiet, 10, "the workers to go quiet")
    assert Run.objects.count() == 1, "the refused Execute Now must queue nothing"


def test_it_queues_a_cycle_after_import_all_and_export_all(fs_broker, celery_processes, three_orgs):
    processes = celery_processes(fs_broker)
    processes.worker()
    operator = user_with("operator", "reset_usns")
    org1, org2 = three_orgs["ORG1"], three_orgs["ORG2"]
    with pytest.raises(PermissionDenied, match="requestor.reset_usns"):
        actions.import_all(org2.config, user_with("someone", "execute_now"), queue=True)

    actions.export_all(org1.config, operator, queue=True)
    wait_for(lambda: Run.objects.filter(config=org1.config, status=RunStatus.OK), 20, "ORG1's run")
    actions.import_all(org2.config, operator, queue=True)
    wait_for(lambda: Run.objects.filter(config=org2.config, status=RunStatus.OK), 20, "ORG2's run")

    runs = Run.objects.order_by("pk")
    assert [(r.config.organization.name, r.trigger, r.requested_by) for r in runs] == [
        ("ORG1", Trigger.MANUAL, operator),
        ("ORG2", Trigger.MANUAL, operator),
    ]
    assert runs[0].full_export
    # ORG2's full reply brought ORG1's people (ORG3 has not exported yet).
    assert contacts(org2) == sorted(
        name for name in expected_contacts(three_orgs, org2) if name.startswith("ORG1")
    )
    assert RequestorConfig.objects.get(pk=org2.config.pk).master_usn > 0
