from django.contrib import admin

from console.models import AlertEvent, AlertSettings, ConsoleProfile, OrganizationRole


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


@admin.register(ConsoleProfile)
class ConsoleProfileAdmin(admin.ModelAdmin):
    """The zone is chosen from the same list as on the console's Time zone page."""

    list_display = ("user", "time_zone")
    search_fields = ("user__username", "time_zone")
    autocomplete_fields = ("user",)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "time_zone":
            from django import forms

            from console.timezones import zone_choices

            return forms.ChoiceField(
                choices=[("", "The browser's zone")] + zone_choices(), required=False
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)
