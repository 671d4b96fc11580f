"""The Schedule page's Preview next cycle: what the requestor's next cycle would export and
import, each change with its reason, changing nothing (requestor.preview). Whoever may read the
organization may preview it: a preview changes nothing."""

from django.contrib import messages
from django.shortcuts import redirect
from django.views.decorators.http import require_safe

from console.views.base import org_page, page
from requestor.cycle import SyncError
from requestor.models import RequestorConfig
from requestor.preview import preview_cycle

# Changes listed on the page at most; the API and `sync_now ORG --dry-run` list them all.
PAGE_ROWS = 1000


@require_safe
@org_page()
def preview_page(request, organization):
    config_id = (
        RequestorConfig.objects.filter(organization=organization)
        .values_list("pk", flat=True)
        .first()
    )
    if config_id is None:
        return page(request, "console/requestor_missing.html", organization, "schedule")
    try:
        preview = preview_cycle(config_id)
    except SyncError as exc:
        messages.error(request, str(exc))
        return redirect("console:schedule", org=organization.name)
    return page(
        request,
        "console/preview.html",
        organization,
        "schedule",
        preview=preview,
        changes=preview.changes[:PAGE_ROWS],
        cut=max(len(preview.changes) - PAGE_ROWS, 0),
    )
