"""Forms of the setup pages: a site, and a new organization with its sync services. They only
gather values; directory.setup checks and writes them, as it does for the API and the admin."""

from django import forms
from django.core.exceptions import ValidationError

from directory import setup
from directory.constants import Role
from directory.models import Organization, Site, mail_domain_validator, name_validator


class SiteForm(forms.ModelForm):
    """A site's name (its RDN, /o=ORG/ou=NAME)."""

    class Meta:
        model = Site
        fields = ["name"]

    def __init__(self, *args, organization: Organization, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.instance.organization = organization

    def _post_clean(self) -> None:
        super()._post_clean()
        # The organization is not a form field, so the model form skips the constraint naming
        # it (a site name unique per organization): check it here.
        try:
            self.instance.validate_constraints(exclude=set(self.errors))
        except ValidationError as exc:
            self._update_errors(exc)

    def save(self, commit: bool = True) -> Site:
        if self.instance.pk:
            return setup.rename_site(self.instance, self.cleaned_data["name"])
        return setup.create_site(self.instance.organization, self.cleaned_data["name"])


class OrganizationSetupForm(forms.Form):
    """Everything a new organization needs to sync; directory.setup.create_organization makes
    it all at once or nothing."""

    name = forms.CharField(
        max_length=64,
        validators=[name_validator],
        help_text="Short name used in DNs, such as ORG2.",
    )
    display_name = forms.CharField(max_length=256, required=False)
    mail_domain = forms.CharField(
        max_length=253,
        validators=[mail_domain_validator],
        help_text="The organization's SMTP domain, such as org2.example.",
    )
    role = forms.ChoiceField(
        label="Server type",
        choices=Role.choices,
        initial=Role.REQUESTOR,
        widget=forms.RadioSelect,
        help_text="A branch runs a requestor; the organization that keeps the master database "
        "runs the master (and usually a requestor too).",
    )
    site = forms.CharField(max_length=64, initial=setup.DEFAULT_SITE)
    containers = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        initial="\n".join(setup.DEFAULT_CONTAINERS),
        help_text="One per line. The requestor imports the other organizations' people into "
        "the last one unless you name another below.",
    )
    requestor_address = forms.CharField(
        label="Requestor agent's SMTP address",
        max_length=256,
        required=False,
        help_text="Where the master's replies reach this organization's requestor, such as "
        "interorg-org2@org2.example (requestor and both only).",
    )
    master_address = forms.CharField(
        label="Master's address",
        max_length=1024,
        required=False,
        help_text="The master agent's SMTP address, or its DN when the master runs in this "
        "installation (requestor and both only).",
    )
    master_public_key = forms.CharField(
        label="Master's public key",
        max_length=64,
        required=False,
        help_text="From `manage.py keys show MASTERORG` in the master's installation; can be "
        "added later on the Requestor Setup page.",
    )
    import_container = forms.CharField(
        label="Import into", max_length=64, required=False, help_text="One of the containers."
    )
    master_agent_address = forms.CharField(
        label="Master agent's SMTP address",
        max_length=256,
        required=False,
        help_text="Where requestors send their exports, such as interorg-master@org1.example "
        "(master and both only).",
    )

    def create(self) -> setup.Pairing | None:
        """The new organization's pairing, or None with the refusal on the form."""
        try:
            return setup.create_organization(**self.cleaned_data)
        except ValidationError as exc:
            for key, messages in exc.message_dict.items():
                self.add_error(key if key in self.fields else None, messages)
            return None
