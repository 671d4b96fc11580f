"""What a requestor does around the replies its import guard holds (transport.holds)."""

from django.utils import timezone

from requestor.constants import RunStatus
from requestor.models import RequestorConfig, Run
from transport.models import Hold, Message


def _run(organization_id: int, document) -> Run | None:
    if document is None:
        return None
    return Run.objects.filter(
        config__organization_id=organization_id, batch=document.in_reply_to
    ).first()


def held(message: Message, document, exc, hold: Hold | None) -> None:
    """The run whose reply is held says so, until an administrator decides."""
    run = _run(message.organization_id, document)
    if run is None or run.status in (RunStatus.OK, RunStatus.SUPERSEDED):
        return
    run.status = RunStatus.HELD
    run.error = f"Reply held for this organization's administrator: {exc}"
    run.save(update_fields=["status", "error"])


def decided(hold: Hold) -> None:
    """A rejected reply fails the runs it would have completed; nothing of it was applied, and
    the next cycle asks the master again from where this organization is."""
    if hold.decision != Hold.Decision.REJECTED:
        return
    who = getattr(hold.decided_by, "username", "") or "an administrator"
    answered = Message.objects.filter(
        organization_id=hold.organization_id, batch=hold.batch, kind=hold.kind
    ).values_list("summary__in_reply_to", flat=True)
    configs = RequestorConfig.objects.filter(organization_id=hold.organization_id)
    Run.objects.filter(
        config__in=configs, batch__in=[b for b in answered if b], status=RunStatus.HELD
    ).update(
        status=RunStatus.FAILED,
        finished_at=timezone.now(),
        error=f"The master's reply was rejected by {who}: {hold.reason}",
    )
