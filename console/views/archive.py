"""Run history, the message archive (sent, received, rejected with the reason) and conflicts."""

import contextlib
import uuid

from django.db.models.functions import Lower
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render

from console import message_contents
from console.filters import MessageFilter, RunFilter
from console.models import AlertEvent
from console.views.base import org_page, page, paginate
from directory.models import Recipient
from requestor.models import Conflict, Run
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
    filters = RunFilter(request.GET)
    return page(
        request,
        "console/runs.html",
        organization,
        "runs",
        runs=paginate(request, filters.apply(rows)),
        filters=filters,
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
    filters = MessageFilter(request.GET)
    return page(
        request,
        "console/messages.html",
        organization,
        "messages",
        messages_page=paginate(request, filters.apply(rows)),
        filters=filters,
    )


@org_page()
def message_detail(request, organization, pk: int):
    message = get_object_or_404(Message, pk=pk, organization=organization)
    body = message_contents.body_of(message)
    return page(
        request,
        "console/message.html",
        organization,
        "messages",
        message=message,
        run=run_of(message, organization),
        contents=message_contents.contents(message, body),
        body_kept=bool(body),
    )


def run_of(message: Message, organization) -> Run | None:
    """The organization's run that sent the message (an export part) or that it answers (a
    reply)."""
    batches = [message.batch]
    in_reply_to = message.summary.get("in_reply_to") if isinstance(message.summary, dict) else None
    if isinstance(in_reply_to, str):
        with contextlib.suppress(ValueError):
            batches.append(uuid.UUID(in_reply_to))
    batches = [batch for batch in batches if batch]
    if not batches:
        return None
    runs = Run.objects.filter(config__organization=organization, batch__in=batches)
    return runs.only("pk", "status", "started_at").first()


@org_page()
def message_eml(request, organization, pk: int):
    """The message as an e-mail file; 404 with the reason when its body was not kept."""
    message = get_object_or_404(Message, pk=pk, organization=organization)
    mail = message_contents.eml(message)
    if mail is None:
        text = f"The body of message {pk} was not kept: only its header, size and digest are."
        return render(request, "console/error.html", {"code": 404, "message": text}, status=404)
    raw, _ = mail
    response = HttpResponse(raw, content_type="message/rfc822")
    response["Content-Disposition"] = f'attachment; filename="message-{pk}.eml"'
    return response


@org_page()
def conflicts(request, organization):
    rows = Conflict.objects.filter(config__organization=organization).select_related(
        "local_recipient"
    )
    rows = paginate(request, rows)
    holders = contact_holders(organization, [c.address for c in rows if not c.local_recipient_id])
    for conflict in rows:
        conflict.holder = conflict.local_recipient or holders.get(conflict.address.lower())
    return page(request, "console/conflicts.html", organization, "conflicts", conflicts=rows)


def contact_holders(organization, addresses: list[str]) -> dict:
    """The imported contacts holding these addresses (a conflict with a contact of another
    origin names no local recipient), by address in lower case; one query for the page."""
    if not addresses:
        return {}
    contacts = (
        Recipient.objects.filter(organization=organization, global_key__isnull=False)
        .annotate(smtp=Lower("primary_smtp"))
        .filter(smtp__in={address.lower() for address in addresses})
        .only("pk", "display_name", "primary_smtp", "origin_organization")
    )
    return {contact.smtp: contact for contact in contacts}
