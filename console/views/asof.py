"""An organization's address book as of a past time, and what was removed, added and changed
since (requestor.asof): the date picker of the directory page leads here. Whoever may read the
organization may look."""

from datetime import timedelta

from django import forms
from django.conf import settings
from django.utils import timezone

from console.views.base import org_page, page, paginate
from requestor import asof

PICKER = "%Y-%m-%dT%H:%M"


class AsOfForm(forms.Form):
    at = forms.CharField(
        label="As of",
        max_length=asof.MAX_TIME_LENGTH,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    show = forms.ChoiceField(choices=list(asof.SHOWS.items()), required=False)
    q = forms.CharField(label="Name or address", max_length=asof.MAX_QUERY_LENGTH, required=False)

    def clean_at(self):
        try:
            return asof.parse_time(self.cleaned_data["at"])
        except asof.AsOfError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_q(self) -> str:
        try:
            return asof.clean_query(self.cleaned_data["q"])
        except asof.AsOfError as exc:
            raise forms.ValidationError(str(exc)) from None


def _bound(moment, up: bool = False) -> str:
    """A bound of the picker, in the server's time zone: a whole minute (the picker's step;
    a bound with seconds would make every whole minute a step mismatch)."""
    if moment is None:
        return ""
    moment = timezone.localtime(moment)
    whole = moment.replace(second=0, microsecond=0)
    if up and whole != moment:
        whole += timedelta(minutes=1)
    return whole.strftime(PICKER)


def _value(moment) -> str:
    """The time asked as the picker shows it, with seconds only when it has some."""
    moment = timezone.localtime(moment)
    return moment.strftime(PICKER + (":%S" if moment.second else ""))


@org_page()
def address_book_as_of(request, organization):
    form = AsOfForm(request.GET if "at" in request.GET else None)
    bounds = asof.limits(organization)
    result, entries, show = None, None, asof.THEN
    if form.is_valid():
        show = form.cleaned_data["show"] or asof.THEN
        try:
            result = asof.address_book(
                organization, form.cleaned_data["at"], form.cleaned_data["q"], bounds
            )
        except asof.AsOfError as exc:
            form.add_error("at", str(exc))
        else:
            entries = paginate(request, result.entries(show))
            entries.object_list = result.explain(entries.object_list)
    at_value = _value(result.at) if result else form["at"].value() or ""
    return page(
        request,
        "console/address_book_as_of.html",
        organization,
        "directory",
        form=form,
        result=result,
        entries=entries,
        show=show,
        tabs=[(key, label, result.counts[key]) for key, label in asof.SHOWS.items()]
        if result
        else [],
        retention_days=settings.INTERORG_HISTORY_RETENTION_DAYS,
        limits=bounds,
        zone=asof.zone_name(),
        earliest=_bound(bounds.earliest, up=True),
        latest=_bound(bounds.now, up=True),
        at_value=at_value,
        # Seconds in the time asked (an address from the API's users) need a step of 1 s.
        at_step=len(at_value) > len("YYYY-MM-DDTHH:MM"),
    )
