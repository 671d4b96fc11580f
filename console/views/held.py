"""Held batches: what the guard keeps for this organization's administrators, their decision,
and the master's quarantine of its requestors (transport.holds, master.quarantine)."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from console.views.base import org_page, page, require_administrator
from master import quarantine
from master.models import AllowedRequestor
from transport import holds
from transport.models import Hold

DECIDED_SHOWN = 50


@org_page()
def held_batches(request, organization):
    pending = list(holds.pending(organization.pk).select_related("message").order_by("held_at"))
    decided = (
        Hold.objects.filter(organization=organization)
        .exclude(decision=Hold.Decision.PENDING)
        .select_related("decided_by")[:DECIDED_SHOWN]
    )
    requestors = AllowedRequestor.objects.filter(master__organization=organization)
    for hold in pending:
        hold.waiting = holds.waiting(hold)
    return page(
        request,
        "console/held.html",
        organization,
        "held",
        pending=pending,
        decided=list(decided),
        requestors=list(requestors.order_by("organization_name")),
    )


def _hold(organization, pk: int) -> Hold:
    hold = Hold.objects.filter(organization=organization, pk=pk).first()
    if hold is None:
        raise Http404("No such held batch in this organization.")
    return hold


@require_POST
@org_page()
def decide(request, organization, pk: int, decision: str):
    require_administrator(request, organization)
    hold = _hold(organization, pk)
    action = holds.approve if decision == "approve" else holds.reject
    try:
        action(hold.pk, request.user)
    except holds.HoldDecided as exc:
        messages.error(request, str(exc))
    else:
        if decision == "approve":
            messages.success(
                request, f"Approved: the batch of {hold.peer} and what waited behind it applied."
            )
        else:
            messages.success(request, f"Rejected: the batch of {hold.peer} was discarded.")
    return redirect("console:held", org=organization.name)


def _requestor(organization, pk: int) -> AllowedRequestor:
    requestor = AllowedRequestor.objects.filter(master__organization=organization, pk=pk).first()
    if requestor is None:
        raise Http404("No such requestor on this master.")
    return requestor


@require_POST
@org_page()
def quarantine_requestor(request, organization, pk: int):
    require_administrator(request, organization)
    requestor = _requestor(organization, pk)
    reason = " ".join(request.POST.get("reason", "").split())[:500] or "Quarantined by hand."
    if "\x00" in reason:
        messages.error(request, "The reason may not contain NUL characters.")
    elif quarantine.quarantine(requestor, reason, request.user):
        messages.success(request, f"{requestor.organization_name} is quarantined.")
    else:
        messages.info(request, f"{requestor.organization_name} was quarantined already.")
    return redirect("console:held", org=organization.name)


@require_POST
@org_page()
def release_requestor(request, organization, pk: int):
    require_administrator(request, organization)
    requestor = _requestor(organization, pk)
    try:
        count = quarantine.release(requestor)
    except quarantine.QuarantineError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"{requestor.organization_name} is released; {count} waiting message(s) applied.",
        )
    return redirect("console:held", org=organization.name)
