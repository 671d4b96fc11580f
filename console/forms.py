"""The property pages' forms: model forms over the existing models, so the models' own
validation (import container outside every exported one, domains, addresses) gives the messages."""

from django import forms
from django.core.exceptions import ValidationError

from console import directory_settings
from directory import changes
from directory.constants import CUSTOM_ATTRIBUTE_COUNT, GENERAL_ATTRIBUTES, Backend, Kind
from directory.models import Container, LdapDirectory, Organization, Recipient
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


class DirectoryForm(forms.ModelForm):
    """Directory Service: the built-in directory, an LDAP server or Active Directory, and how
    to reach it (the organizational units and the rules for disabled and hidden recipients are
    Active Directory's).

    The password is never sent back to the browser: left blank, the stored one is kept. With
    `testing`, the settings are checked for a connection test even while the built-in directory
    stays chosen.
    """

    directory_backend = forms.ChoiceField(
        label="Directory",
        choices=Backend.choices,
        widget=forms.RadioSelect,
        help_text="With an LDAP server or Active Directory, each cycle first reads its changes "
        "(people, groups and units under the base DN) and writes the imported contacts into it.",
    )
    clear_password = forms.BooleanField(
        label="Bind without a password (forget the stored one)", required=False
    )

    class Meta:
        model = LdapDirectory
        fields = [
            "uri",
            "start_tls",
            "ca_file",
            "bind_dn",
            "password",
            "base_dn",
            "timeout",
            "unit_dns",
            "disabled_accounts",
            "hidden_entries",
            "address_book_only",
        ]
        widgets = {
            "password": forms.PasswordInput(render_value=False),
            "unit_dns": forms.Textarea(attrs={"rows": 3}),
        }
        labels = {"bind_dn": "Bind DN or user"}
        help_texts = {
            "bind_dn": "A DN; for Active Directory also user@domain (the user principal name).",
            "uri": "ldap://host:389 (with StartTLS) or ldaps://host:636.",
        }

    field_order = ["directory_backend"]

    def __init__(self, *args, organization: Organization, testing: bool = False, **kwargs):
        if kwargs.get("instance") is None:
            kwargs["instance"] = LdapDirectory(organization=organization)
        super().__init__(*args, **kwargs)
        self.organization = organization
        self.testing = testing
        self.initial.setdefault("directory_backend", organization.directory_backend)
        # Required for an LDAP directory only: clean() says so then.
        self.fields["uri"].required = self.fields["base_dn"].required = False
        # Active Directory's rules: left out of a form, the stored ones (or the defaults) stay.
        self.fields["disabled_accounts"].required = False
        self.fields["hidden_entries"].required = False
        password = self.fields["password"]
        password.required, password.strip = False, False
        password.help_text = (
            "A password is stored: leave this blank to keep it."
            if self.instance.password
            else "Leave blank for an anonymous bind."
        )
        if not self.instance.password:
            del self.fields["clear_password"]

    def clean_directory_backend(self) -> str:
        backend = self.cleaned_data["directory_backend"]
        if backend in directory_settings.SERVER_BACKENDS and directory_settings.ldap_missing():
            raise ValidationError(directory_settings.ldap_missing())
        return backend

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("clear_password"):
            cleaned["password"] = ""
        elif not cleaned.get("password"):
            cleaned["password"] = self.instance.password
        if self.keeps_settings():
            for name in ("uri", "base_dn"):
                if not cleaned.get(name) and name not in self.errors:
                    self.add_error(name, "Required for an LDAP directory.")
        return cleaned

    def keeps_settings(self) -> bool:
        """Whether the LDAP settings are to be checked (and saved)."""
        data = getattr(self, "cleaned_data", {})
        backend = data.get("directory_backend", self.organization.directory_backend)
        if self.testing or backend in directory_settings.SERVER_BACKENDS or self.instance.pk:
            return True
        return any(data.get(name) for name in ("uri", "base_dn", "bind_dn"))

    def _post_clean(self) -> None:
        # The built-in directory with no LDAP settings entered: nothing to check or keep.
        if not self.keeps_settings():
            return
        super()._post_clean()

    def save(self, commit: bool = True) -> LdapDirectory:
        backend = self.cleaned_data["directory_backend"]
        directory_settings.save(self.organization, backend, self.instance)
        return self.instance


class TrustLevelForm(forms.ModelForm):
    """The trust level of one recipient (the requestor exports only those at or below its
    threshold) and whether it is hidden from the other organizations. For an LDAP directory
    both are kept in the mirror, as LDAP has no such attributes."""

    class Meta:
        model = Recipient
        fields = ["trust_level", "hidden_from_others"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # A form that sets only the trust level (the units page) leaves the flag as it is.
        if self.data and "hidden_from_others" not in self.data and "hidden_set" not in self.data:
            self.fields.pop("hidden_from_others")

    def save(self, commit: bool = True) -> Recipient:
        # A new local USN with it: a change of scope is exported at the next cycle.
        return changes.save_recipient(self.instance, update_fields=list(self.fields))


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


class DefaultsWhenLeftOut(forms.ModelForm):
    """Fields that keep their model default when a form (or an older script posting it) leaves
    them out or empty: the guard's thresholds."""

    defaulted: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in self.defaulted:
            self.fields[name].required = False

    def has_changed(self) -> bool:
        # An empty extra row of a formset stays empty when only these are left out.
        return any(
            name not in self.defaulted or self.add_prefix(name) in self.data
            for name in self.changed_data
        )

    def clean(self):
        cleaned = super().clean()
        for name in self.defaulted:
            if cleaned.get(name) is None and name not in self.errors:
                current = getattr(self.instance, name, None)
                cleaned[name] = (
                    current
                    if current is not None
                    else self._meta.model._meta.get_field(name).default
                )
        return cleaned


class ImportConfigForm(DefaultsWhenLeftOut):
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
            "excluded_addresses",
            "excluded_organizations",
            "import_delete_limit",
            "import_delete_percent",
            "import_delete_floor",
            "grace_days",
        ]
        field_classes = {"import_container": ContainerChoiceField}
        widgets = {
            "import_domains": forms.Textarea(attrs={"rows": 3}),
            "excluded_addresses": forms.Textarea(attrs={"rows": 3}),
            "excluded_organizations": forms.Textarea(attrs={"rows": 2}),
        }

    field_order = ["master_address", "master_address_type"]
    defaulted = (
        "import_delete_limit",
        "import_delete_percent",
        "import_delete_floor",
        "grace_days",
    )

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


class MasterConfigForm(DefaultsWhenLeftOut):
    """Master Configuration: the master agent's addresses and the e-mail attachment limit."""

    defaulted = ("quarantine_after_refusals",)

    class Meta:
        model = MasterConfig
        fields = [
            "enabled",
            "address",
            "dn",
            "max_attachment_size",
            "tombstone_lifetime_days",
            "quarantine_after_refusals",
        ]
        labels = {"enabled": "Master enabled", "dn": "EX address (DN)"}


class AllowedRequestorForm(DefaultsWhenLeftOut):
    defaulted = ("delete_limit", "delete_percent", "delete_floor")

    class Meta:
        model = AllowedRequestor
        fields = [
            "address",
            "organization_name",
            "label",
            "enabled",
            "public_key",
            "delete_limit",
            "delete_percent",
            "delete_floor",
        ]
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
        fields = [
            "container",
            "kind",
            *GENERAL_ATTRIBUTES,
            "target_address",
            "trust_level",
            "hidden_from_others",
        ]
        fields += CUSTOM_FIELDS
        field_classes = {"container": ContainerChoiceField}
        widgets = {"address": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, organization: Organization, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["container"].queryset = _org_containers(organization)
        self.fields["kind"].choices = Kind.choices

    def save(self, commit: bool = True) -> Recipient:
        return changes.save_recipient(self.instance)

    def general_fields(self):
        return [self[name] for name in GENERAL_ATTRIBUTES]

    def custom_fields(self):
        return [self[name] for name in CUSTOM_FIELDS]


class ContainerForm(forms.ModelForm):
    """A container: its site, the container it lies in (none: the top of the site), its name.
    Moving or renaming one renames the DNs inside it; the next export finds what the move took
    into or out of the export scope."""

    class Meta:
        model = Container
        fields = ["site", "parent", "name"]
        field_classes = {"parent": ContainerChoiceField}
        labels = {"parent": "Inside"}

    def __init__(self, *args, organization: Organization, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["site"].queryset = organization.sites.order_by("name")
        inside = _org_containers(organization)
        if self.instance.pk:
            inside = inside.exclude(pk__in=self.instance.subtree_ids())
        self.fields["parent"].queryset = inside
        self.fields["parent"].empty_label = "(the top of the site)"

    def save(self, commit: bool = True) -> Container:
        container = self.instance
        if container.pk:
            return changes.move_container(container)
        container.save()
        return container


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
