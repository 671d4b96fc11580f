"""What happens after a message is queued or received: by default nothing until something pumps
the outbox and inbox (the sync commands, the tests); with INTERORG_DISPATCH_TASKS a Celery task
is sent when the transaction commits, so workers deliver and process at once."""

from django.conf import settings
from django.db import transaction


def message_queued(pk: int) -> None:
    if settings.INTERORG_DISPATCH_TASKS:
        from transport.tasks import deliver_message

        transaction.on_commit(lambda: deliver_message.delay(pk))


def message_received(pk: int) -> None:
    if settings.INTERORG_DISPATCH_TASKS:
        from transport.tasks import process_message

        transaction.on_commit(lambda: process_message.delay(pk))
