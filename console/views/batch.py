"""A batch as one story (console.batch): the page of one export batch, or of a reply, with its
effect everywhere. Whoever may read one organization the batch concerns opens it there; the
parts about organizations they cannot read say only that."""

import uuid

from django.http import Http404

from console import batch as batches
from console import permissions
from console.views.base import org_page, page


@org_page()
def batch_page(request, organization, batch: uuid.UUID):
    try:
        result = batches.story(batch, can_read=lambda pk: permissions.can_view(request.user, pk))
    except batches.BatchNotFound as exc:
        raise Http404(str(exc)) from None
    if organization.pk not in result.involved:
        raise Http404("This batch does not concern this organization.")
    return page(
        request,
        "console/batch.html",
        organization,
        "runs",
        story=result,
        sample=batches.SAMPLE,
    )
