"""Admin pages of the directory: organizations, sites, containers, recipients and tombstones."""

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.html import format_html

from directory import changes, setup
from directory.constants import GENERAL_ATTRIBUTES, Kind
from directory.models import (
    Container,
    DigestCell,
    LdapDirectory,
    Organization,
    Recipient,
    Site,
    Tombstone,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Pages for records only the engine writes: they can be read, never added or edited."""

    # Logs (runs, conflicts, tombstones) may go with their organization; the master database and
    # the message archive may not.
    allow_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return self.allow_delete and super().has_delete_permission(request, obj)


def pretty_json(value) -> str:
    """A JSON value as indented text in a <pre>, escaped."""
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)


class SiteFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        # A site deleted here would take its containers with it: the rule of directory.setup.
        for form in self.deleted_forms:
            if form.instance.pk and (problem := setup.site_in_use(form.instance)):
                raise ValidationError(problem)


class SiteInline(admin.TabularInline):
    model = Site
    formset = SiteFormSet
    extra = 0
    fields = ("name",)
    show_change_link = True


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "display_name", "role", "directory_backend", "mail_domain", "usn")
    list_filter = ("role", "directory_backend")
    search_fields = ("name", "display_name", "mail_domain")
    readonly_fields = ("usn",)
    inlines = [SiteInline]

    def save_formset(self, request, form, formset, change) -> None:
        # A site renamed here renames its containers' DNs with it.
        for site in formset.save(commit=False):
            if site.pk:
                changes.rename_site(site, site.name)
            else:
                site.save()
        for site in formset.deleted_objects:
            setup.delete_site(site)


class RefusesInUse:
    """Deleting a site or container that still holds something is refused with the message of
    directory.setup (the same as on the console and in the API), not deleted along."""

    in_use = staticmethod(lambda obj: None)
    delete_one = staticmethod(lambda obj: None)

    def delete_view(self, request, object_id, extra_context=None):
        obj = self.get_object(request, admin.utils.unquote(object_id))
        if obj is not None and (problem := self.in_use(obj)):
            self.message_user(request, problem, messages.ERROR)
            info = (self.opts.app_label, self.opts.model_name)
            return redirect(reverse("admin:{}_{}_change".format(*info), args=[obj.pk]))
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request, obj) -> None:
        self.delete_one(obj)

    def delete_queryset(self, request, queryset) -> None:
        for obj in queryset:
            if problem := self.in_use(obj):
                self.message_user(request, problem, messages.ERROR)
            else:
                self.delete_one(obj)


@admin.register(Site)
class SiteAdmin(RefusesInUse, admin.ModelAdmin):
    in_use = staticmethod(setup.site_in_use)
    delete_one = staticmethod(setup.delete_site)
    list_display = ("dn", "organization")
    list_filter = ("organization",)
    list_select_related = ("organization",)
    search_fields = ("name", "organization__name")

    @admin.display(description="DN", ordering="name")
    def dn(self, obj: Site) -> str:
        return obj.dn

    def save_model(self, request, obj: Site, form, change) -> None:
        if change:
            setup.rename_site(obj, obj.name)
        else:
            obj.save()


@admin.register(Container)
class ContainerAdmin(RefusesInUse, admin.ModelAdmin):
    in_use = staticmethod(setup.container_in_use)
    delete_one = staticmethod(setup.delete_container)
    list_display = ("dn", "organization", "recipient_count")
    list_filter = ("organization",)
    list_select_related = ("organization",)
    search_fields = ("name", "dn")
    fields = ("site", "parent", "name", "dn", "organization")
    readonly_fields = ("dn", "organization")
    autocomplete_fields = ("parent",)

    def get_queryset(self, request):
        # A GROUP BY query drops Meta.ordering, which the autocomplete's paginator needs.
        counted = super().get_queryset(request).annotate(recipient_count=Count("recipients"))
        return counted.order_by("dn")

    @admin.display(description="recipients", ordering="recipient_count")
    def recipient_count(self, obj: Container) -> int:
        return obj.recipient_count

    def save_model(self, request, obj: Container, form, change) -> None:
        if change:
            # The DNs of everything inside follow; the next export finds what moved in or out
            # of its scope.
            setup.move_container(obj)
        else:
            obj.save()


class ImportedFilter(admin.SimpleListFilter):
    title = "origin"
    parameter_name = "imported"

    def lookups(self, request, model_admin):
        return (("no", "Own recipients"), ("yes", "Imported contacts"))

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(global_key__isnull=self.value() == "no")
        return queryset


class RecipientForm(forms.ModelForm):
    def clean(self):
        cleaned = super().clean()
        container, members = cleaned.get("container"), cleaned.get("members")
        if container is None:
            return cleaned
        # Moving a recipient to another organization would leave the old one without a tombstone.
        if self.instance.pk and container.organization_id != self.instance.organization_id:
            self.add_error("container", "Choose a container of the recipient's organization.")
        strangers = [
            m.alias for m in members or () if m.organization_id != container.organization_id
        ]
        if strangers:
            self.add_error("members", f"Not in this organization: {', '.join(strangers)}.")
        return cleaned

    def _post_clean(self) -> None:
        super()._post_clean()
        # The organization is not a form field, so the model form skips every constraint naming it
        # (SMTP address and alias unique per organization): check them here, or the save would
        # fail with an IntegrityError instead of a message on the form.
        if self.instance.organization_id is None:
            return
        try:
            self.instance.validate_constraints(exclude=set(self.errors))
        except ValidationError as exc:
            self.add_error(None, exc)


GENERAL_FIELDS = (
    "container",
    "kind",
    ("first_name", "initials", "last_name"),
    "display_name",
    "alias",
    "primary_smtp",
    "target_address",
    ("title", "department"),
    ("company", "office"),
    "assistant",
    "phone",
    "address",
    ("city", "state"),
    ("postal_code", "country"),
    ("trust_level", "hidden_from_others"),
)
PROVENANCE_FIELDS = (
    "dn",
    "organization",
    "guid",
    "usn",
    "origin_organization",
    "global_key",
    "master_usn",
    "created_at",
    "changed_at",
)


@admin.register(Recipient)
class RecipientAdmin(admin.ModelAdmin):
    form = RecipientForm
    list_display = (
        "display_name",
        "kind",
        "alias",
        "primary_smtp",
        "dn",
        "organization",
        "trust_level",
        "imported",
        "usn",
    )
    list_filter = ("organization", "kind", ImportedFilter, "hidden_from_others", "container")
    list_select_related = ("organization", "container")
    search_fields = ("display_name", "alias", "primary_smtp")
    readonly_fields = PROVENANCE_FIELDS
    autocomplete_fields = ("container", "members")
    fieldsets = (
        ("General", {"fields": GENERAL_FIELDS}),
        (
            "Custom attributes",
            {
                "classes": ("collapse",),
                "description": "Kept in this organization: never exported.",
                "fields": tuple(f"custom_attribute_{n}" for n in range(1, 16)),
            },
        ),
        ("Membership", {"fields": ("members",)}),
        ("Provenance", {"fields": PROVENANCE_FIELDS}),
    )

    def get_fieldsets(self, request, obj=None):
        if obj is not None and obj.kind != Kind.DISTRIBUTION_LIST:
            return [fs for fs in self.fieldsets if fs[0] != "Membership"]
        return self.fieldsets

    def get_readonly_fields(self, request, obj=None):
        # The master owns an imported contact's General attributes: the next import would undo
        # an edit made here.
        if obj is not None and obj.is_imported:
            return (*PROVENANCE_FIELDS, "container", "kind", "target_address", *GENERAL_ATTRIBUTES)
        return self.readonly_fields

    @admin.display(description="DN", ordering="container__dn")
    def dn(self, obj: Recipient) -> str:
        return obj.dn

    @admin.display(description="imported", boolean=True, ordering="global_key")
    def imported(self, obj: Recipient) -> bool:
        return obj.is_imported

    def save_model(self, request, obj: Recipient, form, change) -> None:
        changes.save_recipient(obj)

    def delete_model(self, request, obj: Recipient) -> None:
        changes.delete_recipients([obj])

    def delete_queryset(self, request, queryset) -> None:
        changes.delete_recipients(queryset)


@admin.register(Tombstone)
class TombstoneAdmin(ReadOnlyAdmin):
    allow_delete = True
    list_display = ("guid", "organization", "kind", "container", "imported", "usn", "deleted_at")
    list_filter = ("organization", "kind", "imported")
    list_select_related = ("organization", "container")
    search_fields = ("guid",)


@admin.register(DigestCell)
class DigestCellAdmin(ReadOnlyAdmin):
    """What verification adds up: kept by directory.changes, recounted by a repair."""

    list_display = (
        "organization",
        "container",
        "kind",
        "trust_level",
        "hidden",
        "imported",
        "count",
    )
    list_filter = ("organization", "imported", "kind")
    list_select_related = ("organization", "container")


AD_FIELDS = ("unit_dns", "disabled_accounts", "hidden_entries", "address_book_only")
LDAP_CONNECTION_FIELDS = (
    "organization",
    "uri",
    "start_tls",
    "ca_file",
    "bind_dn",
    "password",
    "base_dn",
    "timeout",
)


class LdapDirectoryForm(forms.ModelForm):
    """The password is never sent back to the browser: left blank, the stored one is kept."""

    class Meta:
        model = LdapDirectory
        fields = LDAP_CONNECTION_FIELDS + AD_FIELDS
        widgets = {"password": forms.PasswordInput(render_value=False)}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["password"].strip = False
        if self.instance.password:
            self.fields["password"].help_text = "A password is stored: leave blank to keep it."

    def clean_password(self) -> str:
        return self.cleaned_data["password"] or self.instance.password


AD_STATE_FIELDS = (
    "usn_watermark",
    "invocation_id",
    "dc_service_name",
    "dc_host",
    "last_full_scan_at",
    "full_scan_reason",
    "deletes_read",
    "deletes_note",
)
LDAP_STATE_FIELDS = (
    "high_water",
    "published_usn",
    "last_scan_at",
    "last_publish_at",
    "last_error",
    "last_error_at",
    "problems",
)


@admin.register(LdapDirectory)
class LdapDirectoryAdmin(admin.ModelAdmin):
    """Connection settings are edited here or on the console's Directory Service page; the
    state is written by the scans and writes to LDAP only."""

    form = LdapDirectoryForm
    list_display = ("organization", "uri", "base_dn", "last_scan_at", "last_error_at")
    list_select_related = ("organization",)
    search_fields = ("organization__name", "uri", "base_dn")
    readonly_fields = LDAP_STATE_FIELDS + AD_STATE_FIELDS
    fieldsets = (
        ("Connection", {"fields": LDAP_CONNECTION_FIELDS}),
        ("Active Directory", {"fields": AD_FIELDS + AD_STATE_FIELDS}),
        ("State", {"fields": LDAP_STATE_FIELDS}),
    )

    @admin.display(description="problems of the last scan and write")
    def problems(self, obj: LdapDirectory) -> str:
        return pretty_json({"scan": obj.scan_problems, "publish": obj.publish_problems})
