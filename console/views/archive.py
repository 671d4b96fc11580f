"""Run history, the message archive (sent, received, rejected with the reason) and conflicts."""

from django.shortcuts import get_object_or_404

from console.models import AlertEvent
from console.views.base import org_page, page, paginate
from requestor.constants import RunStatus
from requestor.models import Conflict, Run
from transport.constants import Direction, Status
from transport.models import Message

# The latest state changes (console.alerts) shown beside the runs.
ALERT_EVENTS_SHOWN = 10
MESSAGE_LIST_FIELDS = (
    "pk",
    "direction",
    "status",
    "kind",
    "sender",
    "recipient",
    "address_type",
    "part",
    "parts",
    "sequence",
    "usn_from",
    "usn_through",
    "size",
    "summary",
    "error",
    "created_at",
    "organization_id",
)


@org_page()
def runs(request, organization):
    rows = Run.objects.filter(config__organization=organization).select_related("requested_by")
    status = request.GET.get("status", "")
    if status:
        rows = rows.filter(status=status)
    return page(
        request,
        "console/runs.html",
        organization,
        "runs",
        runs=paginate(request, rows),
        status=status,
        statuses=RunStatus.choices,
        alert_events=AlertEvent.objects.filter(organization=organization)[:ALERT_EVENTS_SHOWN],
    )


@org_page()
def run_detail(request, organization, pk: int):
    run = get_object_or_404(
        Run.objects.select_related("requested_by"), pk=pk, config__organization=organization
    )
    parts = (
        Message.objects.filter(organization=organization, batch=run.batch).only(
            *MESSAGE_LIST_FIELDS
        )
        if run.batch
        else Message.objects.none()
    )
    replies = Message.objects.filter(
        organization=organization, summary__in_reply_to=str(run.batch)
    ).only(*MESSAGE_LIST_FIELDS)
    return page(
        request,
        "console/run.html",
        organization,
        "runs",
        run=run,
        parts=parts,
        replies=replies if run.batch else [],
    )


@org_page()
def messages_list(request, organization):
    rows = Message.objects.filter(organization=organization).only(*MESSAGE_LIST_FIELDS)
    direction = request.GET.get("direction", "")
    status = request.GET.get("status", "")
    if direction in Direction.values:
        rows = rows.filter(direction=direction)
    if status in Status.values:
        rows = rows.filter(status=status)
    return page(
        request,
        "console/messages.html",
        organization,
        "messages",
        messages_page=paginate(request, rows),
        direction=direction,
        status=status,
        directions=Direction.choices,
        statuses=Status.choices,
    )


@org_page()
def message_detail(request, organization, pk: int):
    message = get_object_or_404(Message.objects.defer("payload"), pk=pk, organization=organization)
    return page(request, "console/message.html", organization, "messages", message=message)


@org_page()
def conflicts(request, organization):
    rows = Conflict.objects.filter(config__organization=organization).select_related(
        "local_recipient"
    )
    rows = paginate(request, rows)
    return page(request, "console/conflicts.html", organization, "conflicts", conflicts=rows)
