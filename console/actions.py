"""The buttons of the Export Config and Schedule pages, for the console and the API.

Who may press them is console.permissions' rule (the organization's administrators, or its
operators holding Django's requestor.execute_now / requestor.reset_usns permission).

With INTERORG_DISPATCH_TASKS on, workers are running: the action queues a cycle for them
(requestor.actions.queue_cycle) and the page follows the run as it progresses. Off (a lone
runserver, the tests), no worker would ever pick the task up, so the cycle runs inside the
request and its messages are delivered and processed inside this installation, exactly like
`manage.py sync_now`: the page then shows the finished run.
"""

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import PermissionDenied

from console import permissions
from requestor import actions as requestor_actions
from requestor.constants import Trigger
from requestor.cycle import run_cycle
from requestor.models import RequestorConfig, Run
from transport.inbox import pump


@dataclass
class Outcome:
    """What an action did, in words for the page, and the run it started (if inline)."""

    detail: str
    run: Run | None = None


def _cycle(config: RequestorConfig, user, trigger: str, done: str = "") -> Outcome:
    if settings.INTERORG_DISPATCH_TASKS:
        requestor_actions.queue_cycle(config, user)
        return Outcome(f"{done}A cycle of {config.organization} was queued for the workers.")
    run = run_cycle(config.pk, trigger, user)
    pump()
    run = Run.objects.get(pk=run.pk)
    return Outcome(f"{done}Run {run.pk} of {config.organization}: {run.get_status_display()}.", run)


def execute_now(config: RequestorConfig, user, trigger: str = Trigger.MANUAL) -> Outcome:
    """Execute Now: a cycle at once, ahead of the schedule."""
    if not permissions.can_execute_now(user, config.organization):
        raise PermissionDenied("Execute Now needs the administrator role in this organization.")
    return _cycle(config, user, trigger)


def import_all(config: RequestorConfig, user, trigger: str = Trigger.MANUAL) -> Outcome:
    """Import All Recipients: master USN to 0, then a cycle (the master replies in full)."""
    _check_reset(config, user, "Import All Recipients")
    # The reset is one UPDATE, committed before the cycle starts (or is queued).
    config.import_all_recipients()
    return _cycle(config, user, trigger, "Master USN reset to 0. ")


def export_all(config: RequestorConfig, user, trigger: str = Trigger.MANUAL) -> Outcome:
    """Export All Recipients: requestor USN to 0, then a cycle (a full export)."""
    _check_reset(config, user, "Export All Recipients")
    config.export_all_recipients()
    return _cycle(config, user, trigger, "Requestor USN reset to 0. ")


def _check_reset(config: RequestorConfig, user, what: str) -> None:
    if not permissions.can_reset_usns(user, config.organization):
        raise PermissionDenied(f"{what} needs the administrator role in this organization.")
