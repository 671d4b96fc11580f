"""Admin pages of the master: its configuration and allowlist; the master database, read-only."""

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from directory.admin import ReadOnlyAdmin, pretty_json
from master import quarantine
from master.models import AllowedRequestor, GlobalEntry, LedgerEntry, MasterConfig, ReceivedBatch

QUARANTINE = ("quarantined_at", "quarantined_by", "quarantine_reason", "refusals")
REQUESTOR_STATE = (
    "acked_usn",
    "pending_ranges",
    "reported_master_usn",
    "last_sequence",
    "last_contact_at",
)


class AllowedRequestorInline(admin.TabularInline):
    model = AllowedRequestor
    extra = 0
    fields = ("organization_name", "address", "label", "enabled", "acked_usn", "last_contact_at")
    readonly_fields = ("acked_usn", "last_contact_at")


@admin.register(MasterConfig)
class MasterConfigAdmin(admin.ModelAdmin):
    list_display = ("organization", "address", "dn", "enabled", "usn", "epoch")
    list_select_related = ("organization",)
    fieldsets = (
        (None, {"fields": ("organization", "enabled", "address", "dn")}),
        (
            "Limits",
            {
                "fields": (
                    "max_attachment_size",
                    "tombstone_lifetime_days",
                    "quarantine_after_refusals",
                )
            },
        ),
        ("Master database", {"fields": ("usn", "epoch", "purged_through_usn", "sequence")}),
    )
    readonly_fields = ("usn", "epoch", "purged_through_usn", "sequence")
    inlines = [AllowedRequestorInline]

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "organization") if obj else self.readonly_fields


@admin.register(AllowedRequestor)
class AllowedRequestorAdmin(admin.ModelAdmin):
    list_display = (
        "organization_name",
        "address",
        "master",
        "enabled",
        "acked_usn",
        "reported_master_usn",
        "last_contact_at",
        "quarantined",
    )
    list_filter = ("master__organization", "enabled")
    list_select_related = ("master__organization",)
    search_fields = ("organization_name", "address", "label")
    fields = (
        "master",
        "organization_name",
        "address",
        "label",
        "enabled",
        ("delete_limit", "delete_percent", "delete_floor"),
        *QUARANTINE,
        *REQUESTOR_STATE,
    )
    readonly_fields = (*QUARANTINE, *REQUESTOR_STATE)
    actions = ["quarantine_requestors", "release_requestors"]

    @admin.display(boolean=True, description="quarantined")
    def quarantined(self, obj: AllowedRequestor) -> bool:
        return obj.quarantined

    @admin.action(description="Quarantine (keep their exports, apply none)", permissions=["change"])
    def quarantine_requestors(self, request, queryset) -> None:
        for requestor in queryset:
            quarantine.quarantine(requestor, "Quarantined in the admin.", request.user)
        self.message_user(request, "Quarantined; release them to apply what waited.")

    @admin.action(description="Release (apply what waited, in order)", permissions=["change"])
    def release_requestors(self, request, queryset) -> None:
        for requestor in queryset.select_related("master"):
            try:
                count = quarantine.release(requestor)
            except quarantine.QuarantineError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(
                    request, f"{requestor.organization_name} released; {count} message(s) applied."
                )


@admin.register(GlobalEntry)
class GlobalEntryAdmin(ReadOnlyAdmin):
    list_display = (
        "display_name",
        "primary_smtp",
        "origin",
        "kind",
        "usn",
        "source_usn",
        "deleted",
    )
    list_filter = ("master__organization", "origin", "kind", "deleted")
    search_fields = ("global_key", "attrs__display_name", "attrs__primary_smtp")
    exclude = ("attrs",)
    readonly_fields = ("attributes",)

    @admin.display(description="display name")
    def display_name(self, obj: GlobalEntry) -> str:
        return obj.attrs.get("display_name", "")

    @admin.display(description="primary SMTP address")
    def primary_smtp(self, obj: GlobalEntry) -> str:
        return obj.attrs.get("primary_smtp", "")

    @admin.display(description="attributes")
    def attributes(self, obj: GlobalEntry) -> str:
        return pretty_json(obj.attrs)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ("usn", "op", "global_key", "origin", "source_usn", "message_link", "created_at")
    list_filter = ("master__organization", "op", "origin")
    search_fields = ("global_key",)
    exclude = ("attrs",)
    readonly_fields = ("attributes",)

    # A link from the id, not the message itself: joining messages would load every payload.
    @admin.display(description="message")
    def message_link(self, obj: LedgerEntry) -> str:
        if obj.message_id is None:
            return ""
        url = reverse("admin:transport_message_change", args=[obj.message_id])
        return format_html('<a href="{}">{}</a>', url, obj.message_id)

    @admin.display(description="attributes")
    def attributes(self, obj: LedgerEntry) -> str:
        return pretty_json(obj.attrs)


@admin.register(ReceivedBatch)
class ReceivedBatchAdmin(ReadOnlyAdmin):
    list_display = (
        "batch",
        "requestor",
        "parts",
        "received_parts",
        "full",
        "replied",
        "created_at",
    )
    list_filter = ("requestor__master__organization", "full", "replied")
    list_select_related = ("requestor",)
