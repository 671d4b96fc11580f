from django.contrib import admin

from console.models import AlertEvent, AlertSettings, OrganizationRole


@admin.register(OrganizationRole)
class OrganizationRoleAdmin(admin.ModelAdmin):
    list_display = ("user", "organization", "role")
    list_filter = ("role", "organization")
    list_select_related = ("user", "organization")
    search_fields = ("user__username", "organization__name")
    autocomplete_fields = ("user",)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shown, not edited: the alert check writes these (recipients are set on the Alerts page)."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AlertSettings)
class AlertSettingsAdmin(ReadOnlyAdmin):
    list_display = ("organization", "state", "state_since", "include_administrators", "addresses")
    list_select_related = ("organization",)


@admin.register(AlertEvent)
class AlertEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "organization", "subject", "sent_at", "attempts", "error")
    list_filter = ("state", "organization")
    list_select_related = ("organization",)
    date_hierarchy = "at"
