"""The filters of the long lists (runs, messages, recipients), one form each, used alike by the
console's pages and the API's list endpoints. A value that is not valid (an unknown state, a
date that is no date) is a form error the page or the API says, never a 500 nor a filter quietly
dropped; the pager carries the filters from page to page (_pager.html keeps the query string)."""

import contextlib
import uuid
from datetime import datetime, time, timedelta

from django import forms
from django.db.models import Q
from django.utils import timezone

from directory.constants import Kind
from requestor.constants import RunStatus, Trigger
from transport.constants import Direction, MessageKind, Status

SEARCH_MAX = 200
ORIGIN_OWN = "own"


def _choices(label: str, choices) -> list[tuple[str, str]]:
    return [("", label), *choices]


def _start_of(day) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


class _ListFilter(forms.Form):
    """A GET form whose `apply` narrows a queryset by the fields given. `date_field` is what
    `since` and `until` (both days included) bound."""

    date_field = ""
    since = forms.DateField(required=False, label="From", widget=forms.DateInput({"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput({"type": "date"}))

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "The end date comes before the start date.")
        return data

    @property
    def active(self) -> bool:
        """Whether any filter is set (the page says what a filtered empty list means)."""
        return self.is_valid() and any(self.cleaned_data.values())

    def apply(self, queryset):
        """The queryset narrowed by the valid form's filters; none of it if the form is not
        valid (a list filtered by half the filters asked for would mislead)."""
        if not self.is_valid():
            return queryset.none()
        data = self.cleaned_data
        if data.get("since"):
            queryset = queryset.filter(**{f"{self.date_field}__gte": _start_of(data["since"])})
        if data.get("until"):
            end = _start_of(data["until"] + timedelta(days=1))
            queryset = queryset.filter(**{f"{self.date_field}__lt": end})
        return self.narrow(queryset, data)

    def narrow(self, queryset, data: dict):
        return queryset

    def error_text(self) -> dict[str, list[str]]:
        return {name: [str(e) for e in errors] for name, errors in self.errors.items()}


class RunFilter(_ListFilter):
    date_field = "started_at"
    status = forms.ChoiceField(required=False, choices=_choices("All states", RunStatus.choices))
    trigger = forms.ChoiceField(required=False, choices=_choices("Any trigger", Trigger.choices))

    def narrow(self, queryset, data: dict):
        if data["status"]:
            queryset = queryset.filter(status=data["status"])
        if data["trigger"]:
            queryset = queryset.filter(trigger=data["trigger"])
        return queryset


class MessageFilter(_ListFilter):
    date_field = "created_at"
    direction = forms.ChoiceField(
        required=False, choices=_choices("Sent and received", Direction.choices)
    )
    status = forms.ChoiceField(required=False, choices=_choices("All states", Status.choices))
    kind = forms.ChoiceField(required=False, choices=_choices("All kinds", MessageKind.choices))
    origin = forms.CharField(
        required=False,
        max_length=64,
        label="Organization",
        help_text="The organization whose agent sent it (its short name).",
    )
    q = forms.CharField(
        required=False,
        max_length=SEARCH_MAX,
        label="Search",
        help_text="Part of the subject, the Message-ID or an address, or a batch id.",
    )

    def narrow(self, queryset, data: dict):
        for name in ("direction", "status", "kind"):
            if data[name]:
                queryset = queryset.filter(**{name: data[name]})
        origin = data["origin"].strip()
        if origin:
            # The document names its sender; a mail refused unread is known by its address.
            queryset = queryset.filter(
                Q(summary__sender__organization__iexact=origin) | Q(sender__icontains=origin)
            )
        text = data["q"].strip()
        if text:
            # The subject of a received mail is in its header; a sent one's names its kind.
            match = (
                Q(message_id__icontains=text)
                | Q(sender__icontains=text)
                | Q(recipient__icontains=text)
                | Q(headers__icontains=text)
            )
            with contextlib.suppress(ValueError):
                match |= Q(batch=uuid.UUID(text))
            queryset = queryset.filter(match)
        return queryset


class RecipientFilter(forms.Form):
    """The directory's search: a part of the name, alias or address, the kind, the origin (own
    recipients, or the imported contacts of one organization) and, across the organization, the
    container."""

    q = forms.CharField(
        required=False, max_length=SEARCH_MAX, label="Search", help_text="Name, alias or address"
    )
    kind = forms.ChoiceField(required=False, choices=_choices("All kinds", Kind.choices))
    origin = forms.CharField(
        required=False,
        max_length=64,
        help_text=f"'{ORIGIN_OWN}' for this organization's own recipients, or the short name of "
        "the organization imported contacts come from.",
    )
    container = forms.ModelChoiceField(queryset=None, required=False, empty_label="All containers")

    def __init__(self, data=None, *, organization, **kwargs):
        super().__init__(data, **kwargs)
        from directory.models import Container

        self.fields["container"].queryset = Container.objects.filter(
            organization=organization
        ).order_by("dn")

    @property
    def active(self) -> bool:
        return self.is_valid() and any(self.cleaned_data.values())

    def apply(self, queryset):
        if not self.is_valid():
            return queryset.none()
        data = self.cleaned_data
        text = data["q"].strip()
        if text:
            queryset = queryset.filter(
                Q(display_name__icontains=text)
                | Q(alias__icontains=text)
                | Q(primary_smtp__icontains=text)
            )
        if data["kind"]:
            queryset = queryset.filter(kind=data["kind"])
        origin = data["origin"].strip()
        if origin.lower() == ORIGIN_OWN:
            queryset = queryset.filter(global_key__isnull=True)
        elif origin:
            queryset = queryset.filter(origin_organization__iexact=origin)
        if data.get("container"):
            queryset = queryset.filter(container=data["container"])
        return queryset
