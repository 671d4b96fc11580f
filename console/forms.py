"""The property pages' forms: model forms over the existing models, so the models' own
validation (import container outside every exported one, domains, addresses) gives the messages."""

from django import forms
from django.core.exceptions import ValidationError

from directory.constants import CUSTOM_ATTRIBUTE_COUNT, GENERAL_ATTRIBUTES, Kind
from directory.models import Container, Organization, Recipient
from master.models import AllowedRequestor, MasterConfig
from requestor import schedule
from requestor.models import ExportedContainer, RequestorConfig
from transport.constants import AddressType, address_type_of


class ServerTypeForm(forms.ModelForm):
    """Server Type: which services this organization runs."""

    class Meta:
        model = Organization
        fields = ["display_name", "mail_domain", "role"]
        widgets = {"role": forms.RadioSelect}
        labels = {"role": "Server type"}


def _org_containers(organization: Organization):
    return Container.objects.filter(organization=organization).order_by("dn")


class ContainerChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Container) -> str:
        return obj.dn


class ExportConfigForm(forms.ModelForm):
    """Export Config: the requestor agent and what it exports (USNs are shown, not edited)."""

    class Meta:
        model = RequestorConfig
        fields = [
            "enabled",
            "address",
            "dn",
            "append_display_name",
            "modify_smtp_domain",
            "max_message_size",
            "trust_level",
        ]
        labels = {"enabled": "Requestor enabled", "dn": "EX address (DN)"}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The suffix usually starts with a space, as in " (ORG2)": keep it.
        self.fields["append_display_name"].strip = False


class ExportedContainerForm(forms.ModelForm):
    class Meta:
        model = ExportedContainer
        fields = ["container", "mailboxes", "distribution_lists", "custom_recipients"]
        field_classes = {"container": ContainerChoiceField}

    def __init__(self, *args, organization: Organization, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["container"].queryset = _org_containers(organization)

    def clean(self):
        cleaned = super().clean()
        kinds = ("mailboxes", "distribution_lists", "custom_recipients")
        if cleaned.get("container") and not any(cleaned.get(k) for k in kinds):
            raise ValidationError("Check at least one kind of recipient to export.")
        return cleaned


class BaseExportedContainerFormSet(forms.BaseInlineFormSet):
    def __init__(self, *args, organization: Organization, **kwargs) -> None:
        self.organization = organization
        super().__init__(*args, **kwargs)

    def get_form_kwargs(self, index):
        return {**super().get_form_kwargs(index), "organization": self.organization}

    @property
    def empty_form(self):
        form = self.form(
            auto_id=self.auto_id,
            prefix=self.add_prefix("__prefix__"),
            empty_permitted=True,
            use_required_attribute=False,
            organization=self.organization,
        )
        self.add_fields(form, None)
        return form


ExportedContainerFormSet = forms.inlineformset_factory(
    RequestorConfig,
    ExportedContainer,
    form=ExportedContainerForm,
    formset=BaseExportedContainerFormSet,
    extra=1,
    can_delete=True,
)


class ImportConfigForm(forms.ModelForm):
    """Import Config: the master's address and type, the import container, the domains."""

    master_address_type = forms.ChoiceField(
        label="Address type",
        choices=AddressType.choices,
        widget=forms.RadioSelect,
        help_text="EX when the master runs in this installation (its DN), SMTP otherwise.",
    )

    class Meta:
        model = RequestorConfig
        fields = [
            "master_address",
            "master_public_key",
            "import_container",
            "import_all_domains",
            "import_domains",
        ]
        field_classes = {"import_container": ContainerChoiceField}
        widgets = {"import_domains": forms.Textarea(attrs={"rows": 3})}

    field_order = ["master_address", "master_address_type"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["import_container"].queryset = _org_containers(self.instance.organization)
        self.fields["import_container"].empty_label = "(none: nothing is imported)"
        if not self.is_bound:
            self.initial["master_address_type"] = address_type_of(self.instance.master_address)

    def clean(self):
        cleaned = super().clean()
        address, kind = cleaned.get("master_address"), cleaned.get("master_address_type")
        if address and kind and address_type_of(address) != kind:
            if kind == AddressType.EX:
                message = (
                    "An EX address is the master's distinguished name, such as "
                    "/o=ORG1/ou=Site1/cn=Recipients/cn=MASTER; choose SMTP for an e-mail address."
                )
            else:
                message = "That is a distinguished name: choose the EX address type for it."
            self.add_error("master_address_type", message)
        return cleaned


class RequestorSetupForm(forms.ModelForm):
    """The first page of a new requestor: its own addresses and its master's."""

    class Meta:
        model = RequestorConfig
        fields = ["enabled", "address", "dn", "master_address", "master_public_key"]
        labels = {"dn": "EX address (DN)"}


class MasterConfigForm(forms.ModelForm):
    """Master Configuration: the master agent's addresses and the e-mail attachment limit."""

    class Meta:
        model = MasterConfig
        fields = ["enabled", "address", "dn", "max_attachment_size", "tombstone_lifetime_days"]
        labels = {"enabled": "Master enabled", "dn": "EX address (DN)"}


class AllowedRequestorForm(forms.ModelForm):
    class Meta:
        model = AllowedRequestor
        fields = ["address", "organization_name", "label", "enabled", "public_key"]
        labels = {"address": "Requestor e-mail address", "organization_name": "Organization"}


class BaseAllowedRequestorFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        for form in self.deleted_forms:
            requestor = form.instance
            if requestor.pk and requestor.entries.exists():
                raise ValidationError(
                    f"{requestor.organization_name} cannot be removed: the master holds its "
                    "entries. Uncheck Enabled to stop accepting its exports instead."
                )


AllowedRequestorFormSet = forms.inlineformset_factory(
    MasterConfig,
    AllowedRequestor,
    form=AllowedRequestorForm,
    formset=BaseAllowedRequestorFormSet,
    extra=1,
    can_delete=True,
)


CUSTOM_FIELDS = [f"custom_attribute_{n}" for n in range(1, CUSTOM_ATTRIBUTE_COUNT + 1)]


class RecipientForm(forms.ModelForm):
    """A mailbox, distribution list or custom recipient of this organization."""

    class Meta:
        model = Recipient
        fields = ["container", "kind", *GENERAL_ATTRIBUTES, "target_address", "trust_level"]
        fields += CUSTOM_FIELDS
        field_classes = {"container": ContainerChoiceField}
        widgets = {"address": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, organization: Organization, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["container"].queryset = _org_containers(organization)
        self.fields["kind"].choices = Kind.choices

    def general_fields(self):
        return [self[name] for name in GENERAL_ATTRIBUTES]

    def custom_fields(self):
        return [self[name] for name in CUSTOM_FIELDS]


class ConfirmForm(forms.Form):
    """An empty form: the confirmation pages only need its CSRF token."""


class ScheduleForm(forms.Form):
    """Schedule: never, every N minutes, or daily at chosen times (requestor.schedule)."""

    kind = forms.ChoiceField(
        label="Run the requestor", choices=schedule.KINDS, widget=forms.RadioSelect
    )
    minutes = forms.IntegerField(
        label="Every (minutes)", min_value=1, max_value=schedule.MAX_MINUTES, required=False
    )
    times = forms.CharField(
        label="Daily at",
        required=False,
        help_text="Times of day (HH:MM), separated by commas, e.g. 02:00, 14:30.",
    )

    @classmethod
    def for_config(cls, config: RequestorConfig, data=None) -> "ScheduleForm":
        current = schedule.get(config)
        initial = {
            "kind": current.kind,
            "minutes": current.minutes,
            "times": ", ".join(schedule.format_time(t) for t in current.times),
        }
        return cls(data, initial=initial)

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        if kind == schedule.EVERY and not cleaned.get("minutes"):
            self.add_error("minutes", "Give the number of minutes between cycles.")
        if kind == schedule.DAILY:
            try:
                cleaned["times"] = schedule.parse_times(cleaned.get("times", ""))
            except ValidationError as exc:
                self.add_error("times", exc)
            else:
                if not cleaned["times"]:
                    self.add_error("times", "Give at least one time of day, such as 02:30.")
        return cleaned

    def save(self, config: RequestorConfig) -> None:
        data = self.cleaned_data
        schedule.apply(config, data["kind"], data.get("minutes"), data.get("times") or ())
