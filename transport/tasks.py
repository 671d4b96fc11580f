"""Celery entry points of the transport: deliver one message, process one, sweep, purge.

Each takes a message id and calls transport.outbox / transport.inbox; running one twice does no
harm (a message is claimed by a conditional update or a row lock before anything happens).
"""

import logging
import smtplib
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from transport import faults, holds, housekeeping, inbox, outbox
from transport.constants import Direction, Status
from transport.models import Message

log = logging.getLogger(__name__)

# A retry further away than this is left to the sweep: a task waiting in a worker's memory that
# long would outlive Redis's visibility timeout (1 hour) and be delivered twice.
LONGEST_RETRY_WAIT = timedelta(minutes=30)
SWEEP_ROUNDS = 20


@shared_task(
    bind=True,
    ignore_result=True,
    autoretry_for=(OSError, smtplib.SMTPException, *faults.TRANSIENT_DB_ERRORS),
    retry_backoff=30,
    retry_backoff_max=1800,
    retry_jitter=True,
    max_retries=8,
)
def deliver_message(self, pk: int) -> bool:
    """Deliver one queued message; after a temporary failure, try again when it is due."""
    handled = outbox.deliver(pk)
    retry_at = (
        Message.objects.filter(pk=pk, direction=Direction.OUTBOUND, status=Status.QUEUED)
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    if retry_at is not None and retry_at - timezone.now() <= LONGEST_RETRY_WAIT:
        raise self.retry(eta=max(retry_at, timezone.now()), max_retries=None)
    return handled


@shared_task(bind=True, ignore_result=True, **faults.RETRY_ON_DATABASE_ERRORS)
def process_message(self, pk: int) -> bool:
    """Process one received message (inbox.process_safely: a failure is archived, not raised;
    after a brief database error the message is processed again when it is due; the task is
    retried if not even that could be recorded)."""
    handled = inbox.process_safely(pk)
    retry_at = inbox.retry_at(pk)
    if retry_at is not None and retry_at - timezone.now() <= LONGEST_RETRY_WAIT:
        raise self.retry(eta=max(retry_at, timezone.now()), max_retries=None)
    return handled


@shared_task(ignore_result=True)
def sweep_messages() -> int:
    """Deliver due queued messages and process received ones whose task was lost, or that were
    deferred and are ready now (a part that waited for an earlier one), until nothing moves;
    and held messages left with nothing to wait for (transport.holds.release_stragglers)."""
    return holds.release_stragglers() + inbox.pump(max_rounds=SWEEP_ROUNDS)


@shared_task(ignore_result=True, **faults.RETRY_ON_DATABASE_ERRORS)
def purge_archive() -> int:
    return housekeeping.purge_archive()
