"""Admin pages of the requestor: its Export and Import Config, and what its runs did."""

from django.contrib import admin
from django.utils.text import Truncator

from directory.admin import ReadOnlyAdmin
from requestor.models import Conflict, ExportedContainer, RequestorConfig, Run


class ExportedContainerInline(admin.TabularInline):
    model = ExportedContainer
    extra = 0
    fields = ("container", "mailboxes", "distribution_lists", "custom_recipients")
    autocomplete_fields = ("container",)
    verbose_name_plural = "exported containers (each with everything inside it)"


@admin.register(RequestorConfig)
class RequestorConfigAdmin(admin.ModelAdmin):
    list_display = (
        "organization",
        "address",
        "master_address",
        "enabled",
        "requestor_usn",
        "master_usn",
        "trust_level",
    )
    list_select_related = ("organization",)
    autocomplete_fields = ("import_container",)
    fieldsets = (
        (None, {"fields": ("organization", "enabled", "address", "dn")}),
        (
            "Export Config",
            {
                "fields": (
                    ("requestor_usn", "master_usn"),
                    "append_display_name",
                    "modify_smtp_domain",
                    "max_message_size",
                    "trust_level",
                )
            },
        ),
        (
            "Import Config",
            {
                "fields": (
                    "master_address",
                    "import_container",
                    "import_all_domains",
                    "import_domains",
                )
            },
        ),
        (
            "Protocol state",
            {"classes": ("collapse",), "fields": ("master_epoch", "sequence", "last_export_batch")},
        ),
    )
    readonly_fields = (
        "requestor_usn",
        "master_usn",
        "master_epoch",
        "sequence",
        "last_export_batch",
    )
    inlines = [ExportedContainerInline]

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "organization") if obj else self.readonly_fields


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    allow_delete = True
    list_display = (
        "id",
        "organization",
        "trigger",
        "status",
        "started_at",
        "finished_at",
        "full_export",
        "exported",
        "imported",
        "updated",
        "deleted",
        "conflicts",
        "short_error",
    )
    list_filter = ("config__organization", "status", "trigger")
    list_select_related = ("config__organization",)

    @admin.display(ordering="config__organization__name")
    def organization(self, obj: Run) -> str:
        return obj.config.organization.name

    @admin.display(description="error")
    def short_error(self, obj: Run) -> str:
        return Truncator(obj.error).chars(80)


@admin.register(Conflict)
class ConflictAdmin(ReadOnlyAdmin):
    allow_delete = True
    list_display = (
        "address",
        "display_name",
        "origin",
        "organization",
        "reason",
        "local_recipient",
        "last_seen",
    )
    list_filter = ("config__organization", "origin")
    list_select_related = ("config__organization", "local_recipient")
    search_fields = ("address", "display_name", "global_key")

    @admin.display(ordering="config__organization__name")
    def organization(self, obj: Conflict) -> str:
        return obj.config.organization.name
