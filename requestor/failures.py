"""What the requestor does when an export it sent can never reach the master."""

from django.utils import timezone

from requestor.constants import RunStatus
from requestor.models import Run
from transport.models import Message


def export_failed(message: Message) -> None:
    """A part of an export was refused for good (by the relay, in a bounce, or by the master
    itself): its run fails now with the reason, instead of waiting for a reply that will never
    come. Nothing is lost: the next cycle sends the same changes again."""
    Run.objects.filter(
        config__organization_id=message.organization_id,
        batch=message.batch,
        status__in=[RunStatus.RUNNING, RunStatus.WAITING],
    ).update(
        status=RunStatus.FAILED,
        finished_at=timezone.now(),
        error=f"Part {message.part} of {message.parts} of the export could not reach the "
        f"master: {message.error} Nothing is lost: the next cycle sends these changes again "
        "once this is fixed.",
    )
