"""The Alerts page of an organization: who gets its alert e-mails (console.alerts), the state
they were last told of, and every state change with what became of its mail."""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect

from console import alerts
from console.models import MAX_ALERT_ADDRESSES, AlertEvent, clean_addresses, parse_addresses
from console.views.base import lock_for_readers, org_page, page, paginate, require_administrator


class AlertRecipientsForm(forms.Form):
    """Who gets the organization's alerts."""

    addresses = forms.CharField(
        label="Also notify",
        required=False,
        max_length=MAX_ALERT_ADDRESSES * 260,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="E-mail addresses, one per line (or separated by commas).",
    )
    include_administrators = forms.BooleanField(
        label="Notify the administrators of the organization",
        required=False,
        help_text="Everyone who may administer it in the console (its administrators, the "
        "InterOrg administrators group, superusers) and has an e-mail address.",
    )

    def clean_addresses(self) -> list[str]:
        return clean_addresses(parse_addresses(self.cleaned_data["addresses"]))


@org_page()
def alerts_page(request, organization):
    require_administrator(request, organization)
    current = alerts.settings_of(organization)
    form = AlertRecipientsForm(
        request.POST if request.method == "POST" else None,
        initial={
            "addresses": "\n".join(current.addresses),
            "include_administrators": current.include_administrators,
        },
    )
    if request.method == "POST" and form.is_valid():
        alerts.set_recipients(
            organization,
            form.cleaned_data["addresses"],
            form.cleaned_data["include_administrators"],
        )
        messages.success(request, "Alert recipients saved.")
        return redirect("console:alerts", org=organization.name)
    lock_for_readers(request, organization, form)
    return page(
        request,
        "console/alerts.html",
        organization,
        "alerts",
        form=form,
        current=current,
        recipients=alerts.recipients_of(current),
        events=paginate(request, AlertEvent.objects.filter(organization=organization)),
        hold_down=settings.INTERORG_ALERT_HOLD_DOWN_MINUTES,
        check_seconds=settings.INTERORG_ALERT_CHECK_SECONDS,
    )
