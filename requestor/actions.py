"""The requestor's buttons: Execute Now, Import All Recipients and Export All Recipients, for the
console, the API and the admin alike.

Who may press them is one rule, console.permissions.may (the organization's administrators, or
its operators holding the button's Django permission); it is checked here, once, whichever way
the button was pressed.

With workers (INTERORG_DISPATCH_TASKS; always from the admin) the button queues a cycle for them
and the page follows the run as it progresses; its run records that it was manual and who asked.
A USN reset and its cycle's task go together: a broker that does not take the task
(transport.dispatch.BrokerUnavailable) leaves the USN as it was. Without workers (a lone
runserver, the tests) the cycle runs inside the request and its messages are delivered and
processed inside this installation, exactly like `manage.py sync_now`: the page then shows the
finished run.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from console import permissions
from requestor.constants import Trigger
from requestor.cycle import run_cycle_now
from requestor.models import RequestorConfig, Run
from requestor.tasks import run_requestor_cycle
from transport import dispatch
from transport.inbox import pump


@dataclass
class Outcome:
    """What an action did, in words for the page, and the run it started (if inline)."""

    detail: str
    run: Run | None = None


def execute_now(
    config: RequestorConfig, user, trigger: str = Trigger.MANUAL, queue: bool | None = None
) -> Outcome:
    """Execute Now: a cycle at once, ahead of the schedule."""
    permissions.require(user, config.organization, permissions.EXECUTE_NOW)
    return _cycle(config, user, trigger, queue)


def import_all(
    config: RequestorConfig, user, trigger: str = Trigger.MANUAL, queue: bool | None = None
) -> Outcome:
    """Import All Recipients: master USN to 0, then a cycle (the master replies in full)."""
    permissions.require(user, config.organization, permissions.IMPORT_ALL)
    return _cycle(
        config, user, trigger, queue, config.import_all_recipients, "Master USN reset to 0. "
    )


def export_all(
    config: RequestorConfig, user, trigger: str = Trigger.MANUAL, queue: bool | None = None
) -> Outcome:
    """Export All Recipients: requestor USN to 0, then a cycle (a full export)."""
    permissions.require(user, config.organization, permissions.EXPORT_ALL)
    return _cycle(
        config, user, trigger, queue, config.export_all_recipients, "Requestor USN reset to 0. "
    )


def _cycle(
    config: RequestorConfig,
    user,
    trigger: str,
    queue: bool | None,
    reset: Callable[[], None] | None = None,
    done: str = "",
) -> Outcome:
    if settings.INTERORG_DISPATCH_TASKS if queue is None else queue:
        with transaction.atomic():
            if reset is not None:
                reset()
            queue_cycle(config, user, trigger)
        return Outcome(f"{done}A cycle of {config.organization} was queued for the workers.")
    if reset is not None:
        with transaction.atomic():  # committed before the cycle starts
            reset()
    run = run_cycle_now(config.pk, trigger, user)
    pump()
    run = Run.objects.get(pk=run.pk)
    return Outcome(f"{done}Run {run.pk} of {config.organization}: {run.get_status_display()}.", run)


def queue_cycle(config: RequestorConfig, user, trigger: str = Trigger.MANUAL) -> None:
    """Send the cycle's task now, inside the caller's transaction, so that a broker that does
    not take it (BrokerUnavailable) rolls the caller's reset back. A worker that starts the
    cycle before that transaction commits finds the requestor's row locked and tries again a few
    seconds later (as a requested cycle waits for a running one)."""
    dispatch.send(run_requestor_cycle, config.pk, str(trigger), getattr(user, "pk", None))
