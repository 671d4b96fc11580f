"""Admin pages of the requestor: its Export and Import Config, and what its runs did."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils.dateformat import format as date_format
from django.utils.text import Truncator
from django.utils.timezone import localtime
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from console import permissions
from directory.admin import ReadOnlyAdmin
from requestor import actions, schedule
from requestor.models import (
    SYNC_STATE,
    Conflict,
    ExportedContainer,
    FilteredEntry,
    RequestorConfig,
    Run,
    Verification,
)
from transport.dispatch import BrokerUnavailable

# The engine's own state, shown read-only (the USNs stand on their own line; the digest and the
# awaited batch say nothing to a reader).
PROTOCOL_STATE = tuple(
    name
    for name in SYNC_STATE
    if name not in ("requestor_usn", "master_usn", "full_reply_batch", "set_aside_digest")
)


class OrganizationColumn:
    """An `organization` column for the records of one requestor configuration."""

    @admin.display(ordering="config__organization__name")
    def organization(self, obj) -> str:
        return obj.config.organization.name


class ExportedContainerInline(admin.TabularInline):
    model = ExportedContainer
    extra = 0
    fields = ("container", "mailboxes", "distribution_lists", "custom_recipients")
    autocomplete_fields = ("container",)
    verbose_name_plural = "exported containers (each with everything inside it)"


class RequestorConfigForm(forms.ModelForm):
    """The requestor's pages, with the Schedule page's fields (kept as beat entries)."""

    schedule_kind = forms.ChoiceField(
        label="Run a cycle",
        choices=schedule.KINDS,
        initial=schedule.NEVER,
        widget=forms.RadioSelect,
    )
    schedule_minutes = forms.IntegerField(
        label="every (minutes)", min_value=1, max_value=schedule.MAX_MINUTES, required=False
    )
    schedule_times = forms.CharField(
        label="daily at",
        required=False,
        help_text="Times of day (HH:MM, server time zone) separated by commas: 02:00, 14:30.",
    )

    # No Meta: the admin builds the form for RequestorConfig with the fields of its fieldsets.

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            current = schedule.get(self.instance)
            self.initial.setdefault("schedule_kind", current.kind)
            self.initial.setdefault("schedule_minutes", current.minutes)
            times = ", ".join(schedule.format_time(t) for t in current.times)
            self.initial.setdefault("schedule_times", times)

    def clean(self):
        data = super().clean()
        kind = data.get("schedule_kind")
        if kind == schedule.EVERY and not data.get("schedule_minutes"):
            self.add_error("schedule_minutes", "Give the number of minutes between cycles.")
        if kind == schedule.DAILY:
            try:
                data["schedule_times"] = schedule.parse_times(data.get("schedule_times", ""))
            except ValidationError as exc:
                self.add_error("schedule_times", exc)
            else:
                if not data["schedule_times"]:
                    self.add_error("schedule_times", "Give at least one time of day.")
        return data


@admin.register(RequestorConfig)
class RequestorConfigAdmin(admin.ModelAdmin):
    form = RequestorConfigForm
    list_display = (
        "organization",
        "address",
        "master_address",
        "enabled",
        "schedule_summary",
        "next_run_summary",
        "requestor_usn",
        "master_usn",
        "trust_level",
    )
    list_select_related = ("organization",)
    actions = ["execute_now", "import_all", "export_all"]
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
                    "excluded_addresses",
                    "excluded_organizations",
                    ("import_delete_limit", "import_delete_percent", "import_delete_floor"),
                    "grace_days",
                )
            },
        ),
        ("Schedule", {"fields": ("schedule_kind", "schedule_minutes", "schedule_times")}),
        (
            "Protocol state",
            {"classes": ("collapse",), "fields": PROTOCOL_STATE},
        ),
    )
    readonly_fields = ("requestor_usn", "master_usn", *PROTOCOL_STATE)
    inlines = [ExportedContainerInline]

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "organization") if obj else self.readonly_fields

    def get_queryset(self, request):
        entries = ("schedule_tasks__interval", "schedule_tasks__crontab")
        return super().get_queryset(request).prefetch_related(*entries)

    @admin.display(description="schedule")
    def schedule_summary(self, obj: RequestorConfig) -> str:
        return schedule.describe(obj)

    @admin.display(description="next run")
    def next_run_summary(self, obj: RequestorConfig) -> str:
        upcoming = schedule.upcoming(obj)
        if upcoming.at is None:
            return upcoming.note
        return "due now" if upcoming.due else date_format(localtime(upcoming.at), "Y-m-d H:i")

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        data = form.cleaned_data
        schedule.apply(
            form.instance, data["schedule_kind"], data["schedule_minutes"], data["schedule_times"]
        )

    # The buttons are offered to whoever may press them in some organization, and each selected
    # organization is checked by the same rule as the console's and the API's
    # (console.permissions.may, inside requestor.actions).
    def has_execute_now_permission(self, request) -> bool:
        return permissions.may_somewhere(request.user, permissions.EXECUTE_NOW)

    def has_import_all_permission(self, request) -> bool:
        return permissions.may_somewhere(request.user, permissions.IMPORT_ALL)

    def has_export_all_permission(self, request) -> bool:
        return permissions.may_somewhere(request.user, permissions.EXPORT_ALL)

    def _queue(self, request, queryset, button, action: str) -> None:
        configs = list(queryset.select_related("organization").order_by("organization__name"))
        what = f"{permissions.BUTTONS[action].title} for"
        # All or nothing: one organization the user may not press refuses the whole selection.
        try:
            for config in configs:
                permissions.require(request.user, config.organization, action)
        except PermissionDenied as exc:
            self.message_user(request, f"{exc} Nothing was queued.", messages.ERROR)
            return
        queued = []
        for config in configs:
            try:
                button(config, request.user, queue=True)
            except BrokerUnavailable as exc:
                done = f" (queued for {', '.join(queued)} before it stopped)" if queued else ""
                self.message_user(
                    request, f"{what} {config.organization.name}: {exc}{done}", messages.ERROR
                )
                return
            queued.append(config.organization.name)
        self.message_user(
            request,
            f"{what} {', '.join(queued)}: a cycle is queued; its run appears under Runs.",
            messages.SUCCESS,
        )

    @admin.action(description="Execute Now (run a cycle at once)", permissions=["execute_now"])
    def execute_now(self, request, queryset) -> None:
        self._queue(request, queryset, actions.execute_now, permissions.EXECUTE_NOW)

    @admin.action(description="Import All Recipients (master USN 0)", permissions=["import_all"])
    def import_all(self, request, queryset) -> None:
        self._queue(request, queryset, actions.import_all, permissions.IMPORT_ALL)

    @admin.action(description="Export All Recipients (requestor USN 0)", permissions=["export_all"])
    def export_all(self, request, queryset) -> None:
        self._queue(request, queryset, actions.export_all, permissions.EXPORT_ALL)


@admin.register(Run)
class RunAdmin(OrganizationColumn, ReadOnlyAdmin):
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

    @admin.display(description="error")
    def short_error(self, obj: Run) -> str:
        return Truncator(obj.error).chars(80)


@admin.register(Conflict)
class ConflictAdmin(OrganizationColumn, ReadOnlyAdmin):
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


@admin.register(FilteredEntry)
class FilteredEntryAdmin(OrganizationColumn, ReadOnlyAdmin):
    list_display = ("address", "origin", "organization", "master_usn")
    list_filter = ("config__organization", "origin")
    list_select_related = ("config__organization",)
    search_fields = ("address", "global_key")


@admin.register(Verification)
class VerificationAdmin(OrganizationColumn, ReadOnlyAdmin):
    """The last check of each side of each organization's copy (requestor.verify)."""

    list_display = (
        "organization",
        "side",
        "state",
        "verified_at",
        "checked_at",
        "repairs",
        "last_repair_differed",
    )
    list_filter = ("state", "side", "config__organization")
    list_select_related = ("config__organization",)


# Beat's schedule tables are wiring: each requestor's entries are edited on its Schedule page,
# the housekeeping's in settings.CELERY_BEAT_SCHEDULE (beat writes them back when it starts).
for model in (PeriodicTask, IntervalSchedule, CrontabSchedule, SolarSchedule, ClockedSchedule):
    if admin.site.is_registered(model):
        admin.site.unregister(model)


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(ReadOnlyAdmin):
    """What beat runs, and when it last did: every requestor's cycles and the housekeeping,
    shown to be read; each is changed where it is kept (above)."""

    list_display = (
        "name",
        "requestor",
        "task",
        "runs",
        "enabled",
        "last_run_at",
        "total_run_count",
    )
    list_filter = ("enabled", "task")
    search_fields = ("name", "task")
    ordering = ("name",)
    list_select_related = ("interval", "crontab", "solar", "clocked")
    exclude = ("interval", "crontab", "solar", "clocked")
    readonly_fields = ("runs",)

    @admin.display(description="requestor")
    def requestor(self, obj) -> str:
        config = (
            RequestorConfig.objects.filter(schedule_tasks=obj)
            .select_related("organization")
            .first()
        )
        return config.organization.name if config else "—"

    @admin.display(description="runs")
    def runs(self, obj) -> str:
        return str(obj.scheduler or "—")
