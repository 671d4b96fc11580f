"""The History pages (console.history): the history of a recipient or contact, from its page,
and of any entry asked for by address, name or global key (from the explainer's answer).
Whoever may read the organization may look; what belongs to an organization they cannot read
is left out and named."""

from django import forms
from django.shortcuts import get_object_or_404

from console import history, permissions
from console.views.base import org_page, page
from console.views.explain import ExplainForm
from directory.models import Recipient


class HistoryForm(ExplainForm):
    q = forms.CharField(
        label="History of",
        max_length=ExplainForm.base_fields["q"].max_length,
        help_text="A primary SMTP address, part of a display name, or a global key.",
    )


def _reader(request):
    return lambda pk: permissions.can_view(request.user, pk)


@org_page()
def history_page(request, organization):
    form = HistoryForm(request.GET if "q" in request.GET else None)
    lookup = None
    if form.is_valid():
        lookup = history.look_up(organization, form.cleaned_data["q"], can_read=_reader(request))
    return page(
        request,
        "console/history.html",
        organization,
        "directory",
        form=form,
        lookup=lookup,
        history=lookup.history if lookup else None,
    )


@org_page()
def recipient_history(request, organization, pk: int):
    recipient = get_object_or_404(
        Recipient.objects.select_related("organization", "container"),
        pk=pk,
        organization=organization,
    )
    entry = history.recipient_history(recipient, can_read=_reader(request))
    return page(
        request,
        "console/history.html",
        organization,
        "directory",
        form=HistoryForm(initial={"q": entry.key}),
        recipient=recipient,
        history=entry,
    )
