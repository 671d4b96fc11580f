"""What happens after a message is queued or received: by default nothing until something pumps
the outbox and inbox (the sync commands, the tests); with INTERORG_DISPATCH_TASKS a Celery task
is sent when the transaction commits, so workers deliver and process at once.

A task for a message that the broker does not take is not lost: the message is in the database,
and the sweep (transport.tasks.sweep_messages) delivers or processes it once the broker is back.
A task someone is waiting for (a cycle queued by Execute Now) is sent with send(), which says
plainly that the broker is down (BrokerUnavailable), within seconds (settings: the broker's
timeouts and publish retry policy)."""

import logging

from django.conf import settings
from django.db import transaction
from kombu.exceptions import KombuError

log = logging.getLogger(__name__)


class BrokerUnavailable(Exception):
    """The broker did not take the task: no worker will run it."""


def send(task, *args) -> None:
    """Send a task now; BrokerUnavailable if the broker does not take it."""
    try:
        task.delay(*args)
    except Exception as exc:
        if not _broker_error(task, exc):
            raise
        log.warning("the broker did not take %s%s: %s", task.name, args, exc)
        raise BrokerUnavailable(
            "The task queue (broker) does not answer, so nothing was queued and nothing was "
            "changed; try again once it is back (/healthz shows whether it answers). "
            f"({exc.__class__.__name__}: {' '.join(str(exc).split())[:200]})"
        ) from exc


def _broker_error(task, exc: Exception) -> bool:
    if isinstance(exc, KombuError | OSError):
        return True
    with task.app.connection_for_write() as connection:  # no I/O: only the transport's classes
        return isinstance(exc, connection.connection_errors + connection.channel_errors)


def message_queued(pk: int) -> None:
    if settings.INTERORG_DISPATCH_TASKS:
        from transport.tasks import deliver_message

        # robust: a broker that is down must not turn the committed work into an error.
        transaction.on_commit(lambda: deliver_message.delay(pk), robust=True)


def message_received(pk: int) -> None:
    if settings.INTERORG_DISPATCH_TASKS:
        from transport.tasks import process_message

        transaction.on_commit(lambda: process_message.delay(pk), robust=True)
