"""The buttons of the requestor's pages: Execute Now, Import All and Export All Recipients.

Each checks its permission, then queues a cycle for the workers when the transaction commits;
the run records that it was manual and who asked.
"""

from django.core.exceptions import PermissionDenied
from django.db import transaction

from requestor.constants import Trigger
from requestor.models import RequestorConfig
from requestor.tasks import run_requestor_cycle

EXECUTE_NOW = "requestor.execute_now"
RESET_USNS = "requestor.reset_usns"


def _require(user, permission: str, what: str) -> None:
    if user is None or not user.has_perm(permission):
        raise PermissionDenied(
            f"You may not {what}; an administrator can grant the permission "
            f"“{permission}” to you or to one of your groups."
        )


def queue_cycle(config: RequestorConfig, user) -> None:
    """Queue a manual cycle once the surrounding transaction (a USN reset) has committed."""
    config_id, user_id = config.pk, getattr(user, "pk", None)
    transaction.on_commit(
        lambda: run_requestor_cycle.delay(config_id, Trigger.MANUAL.value, user_id)
    )


def execute_now(config: RequestorConfig, user) -> None:
    """Execute Now: a cycle of this requestor at once, ahead of its schedule."""
    _require(user, EXECUTE_NOW, "run a requestor cycle now (Execute Now)")
    queue_cycle(config, user)


def import_all(config: RequestorConfig, user) -> None:
    """Import All Recipients: master USN 0, so the master's next reply lists everything."""
    _require(user, RESET_USNS, "reset USNs (Import All Recipients)")
    with transaction.atomic():
        config.import_all_recipients()
        queue_cycle(config, user)


def export_all(config: RequestorConfig, user) -> None:
    """Export All Recipients: requestor USN 0, so the next export lists everything."""
    _require(user, RESET_USNS, "reset USNs (Export All Recipients)")
    with transaction.atomic():
        config.export_all_recipients()
        queue_cycle(config, user)
