"""The run page follows its run live: a small JSON status that static/console/console.js asks
for every two seconds until the run ends (no page framework, no reload)."""

from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import date
from django.utils.timezone import localtime
from django.views.decorators.cache import never_cache

from console.views.base import org_page
from requestor.constants import PENDING_RUN_STATUSES, RunStatus
from requestor.models import Run

# The fields the run page updates in place; the API's run (GET /api/v1/runs/ID/) has them all.
FIELDS = (
    "batch",
    "parts_sent",
    "export_through",
    "exported",
    "acknowledged",
    "reply_parts",
    "reply_parts_applied",
    "imported",
    "updated",
    "deleted",
    "conflicts",
    "attempts",
    "error",
)


def progress(run: Run) -> str:
    """Where the run stands, in words."""
    if run.status == RunStatus.QUEUED:
        return "Queued: waiting for a worker to start the cycle."
    if run.status == RunStatus.RUNNING:
        return "Running: reading the directory and exporting its changes."
    if run.status == RunStatus.RETRYING:
        return f"Retrying after a database error (attempt {run.attempts})."
    parts = f"{run.parts_sent} part{'s' if run.parts_sent != 1 else ''} sent"
    if run.status == RunStatus.WAITING:
        if run.reply_parts:
            return (
                f"{parts}; reply parts {run.reply_parts_applied} of {run.reply_parts} applied, "
                "waiting for the rest."
            )
        return f"{parts}; waiting for the master's reply."
    return f"{parts}; {run.get_status_display().lower()}."


def status_of(run: Run) -> dict:
    return {
        "id": run.pk,
        "status": run.status,
        "status_display": run.get_status_display(),
        "finished": run.status not in (*PENDING_RUN_STATUSES, RunStatus.WAITING),
        "progress": progress(run),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        # As the page shows it, in the active time zone.
        "finished_at_display": date(localtime(run.finished_at), "Y-m-d H:i:s")
        if run.finished_at
        else "—",
        **{field: getattr(run, field) for field in FIELDS},
        "batch": str(run.batch) if run.batch else None,
        "full_export": "yes" if run.full_export else "no",
    }


@never_cache
@org_page()
def run_status(request, organization, pk: int):
    run = get_object_or_404(Run, pk=pk, config__organization=organization)
    return JsonResponse(status_of(run))
