""" "Why is … (not) here?": the search box of the dashboard and the directory page, and the page
with the trace (console.explain). Whoever may read the organization may ask."""

from urllib.parse import urlencode

from django import forms
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse

from console import explain, permissions
from console.views.base import org_page, page


class ExplainForm(forms.Form):
    q = forms.CharField(
        label="Why is … (not) here?",
        max_length=explain.MAX_QUERY_LENGTH,
        help_text="A primary SMTP address, part of a display name, or a global key.",
    )

    def clean_q(self) -> str:
        try:
            return explain.clean_query(self.cleaned_data["q"])
        except explain.ExplainError as exc:
            raise forms.ValidationError(str(exc)) from None


@org_page()
def explain_page(request, organization):
    form = ExplainForm(request.GET if "q" in request.GET else None)
    result = None
    if form.is_valid():
        result = explain.explain(
            organization,
            form.cleaned_data["q"],
            can_read=lambda pk: permissions.can_view(request.user, pk),
        )
    return page(
        request, "console/explain.html", organization, "directory", form=form, result=result
    )


def search(request):
    """The dashboard's box: the organization chosen, then its explain page."""
    organization = explain.find_organization(request.GET.get("org", ""))
    if organization is None or not permissions.can_view(request.user, organization):
        raise Http404("No such organization.")
    target = reverse("console:explain", kwargs={"org": organization.name})
    return redirect(f"{target}?{urlencode({'q': request.GET.get('q', '')})}")
