"""The requestor's buttons: Execute Now, Import All Recipients and Export All Recipients, for the
console, the API and the admin alike.

Who may press them is one rule, console.permissions.may (the organization's administrators, or
its operators holding the button's Django permission); it is checked here, once, whichever way
the button was pressed.

With workers (INTERORG_DISPATCH_TASKS; always from the admin) the button records the cycle's run
at once, queued, and sends its task to them; the console's run page and the API's run follow it
as it progresses; its run records that it was manual and who asked. While a run of the
organization is still to finish, Execute Now points to it instead of queueing another. A USN
reset, its run and its cycle's task go together: a broker that does not take the task
(transport.dispatch.BrokerUnavailable) leaves the USN as it was and no run behind. Without
workers (a lone runserver, the tests) the cycle runs inside the request and its messages are
delivered and processed inside this installation, exactly like `manage.py sync_now`: the page
then shows the finished run.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from console import permissions
from requestor.constants import PENDING_RUN_STATUSES, RunAction, RunStatus, Trigger
from requestor.cycle import run_cycle_now
from requestor.models import RequestorConfig, Run
from requestor.tasks import run_requestor_cycle
from transport import dispatch
from transport.inbox import pump


@dataclass
class Outcome:
    """What an action did, in words for the page, and the run that carries it."""

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
        config,
        user,
        trigger,
        queue,
        config.import_all_recipients,
        "Master USN reset to 0. ",
        RunAction.IMPORT_ALL,
    )


def export_all(
    config: RequestorConfig, user, trigger: str = Trigger.MANUAL, queue: bool | None = None
) -> Outcome:
    """Export All Recipients: requestor USN to 0, then a cycle (a full export)."""
    permissions.require(user, config.organization, permissions.EXPORT_ALL)
    return _cycle(
        config,
        user,
        trigger,
        queue,
        config.export_all_recipients,
        "Requestor USN reset to 0. ",
        RunAction.EXPORT_ALL,
    )


def _cycle(
    config: RequestorConfig,
    user,
    trigger: str,
    queue: bool | None,
    reset: Callable[[], None] | None = None,
    done: str = "",
    action: str = "",
) -> Outcome:
    if settings.INTERORG_DISPATCH_TASKS if queue is None else queue:
        with transaction.atomic():
            if reset is not None:
                reset()
            pending = _pending_run(config, reset is not None)
            if pending is not None:
                if reset is not None and not pending.action:  # its label says what it carries
                    Run.objects.filter(pk=pending.pk).update(action=action)
                state = pending.get_status_display().lower()
                return Outcome(
                    f"{done}Run {pending.pk} of {config.organization} is already {state}; "
                    "it carries this request.",
                    pending,
                )
            run = queue_cycle(config, user, trigger, action)
        return Outcome(
            f"{done}Run {run.pk} of {config.organization} is queued for the workers.", run
        )
    if reset is not None:
        with transaction.atomic():  # committed before the cycle starts
            reset()
    run = run_cycle_now(config.pk, trigger, user, action)
    pump()
    run = Run.objects.get(pk=run.pk)
    return Outcome(f"{done}Run {run.pk} of {config.organization}: {run.get_status_display()}.", run)


def _pending_run(config: RequestorConfig, after_reset: bool) -> Run | None:
    """The organization's run that already carries a new request: a second press points to it
    instead of queueing another cycle. After a USN reset only a queued run does (a running one
    may have read the USNs before the reset); it is locked, so that the cycle taking it over waits
    for the reset to commit."""
    if after_reset:
        queued = Run.objects.select_for_update(no_key=True).filter(
            config=config, status=RunStatus.QUEUED
        )
        return queued.order_by("-pk").first()
    pending = Run.objects.filter(config=config, status__in=PENDING_RUN_STATUSES)
    return pending.order_by("-pk").first()


def queue_cycle(
    config: RequestorConfig, user, trigger: str = Trigger.MANUAL, action: str = ""
) -> Run:
    """Record the cycle's run, queued, and send its task now, inside the caller's transaction,
    so that a broker that does not take it (BrokerUnavailable) rolls the run and the caller's
    reset back. A worker that starts the task before that transaction commits does not find the
    run yet (or finds the requestor's row locked by the reset) and tries again shortly."""
    user_id = getattr(user, "pk", None)
    run = Run.objects.create(
        config=config,
        trigger=trigger,
        requested_by_id=user_id,
        status=RunStatus.QUEUED,
        attempts=0,
        action=action,
    )
    dispatch.send(run_requestor_cycle, config.pk, str(trigger), user_id, str(action), run.pk)
    return run
