"""The requestor's property pages: Export Config, Import Config and Schedule, and their buttons
(Import All Recipients, Export All Recipients, Execute Now)."""

from django.contrib import messages
from django.db import transaction
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from console import permissions
from console.forms import (
    ConfirmForm,
    ExportConfigForm,
    ExportedContainerFormSet,
    ImportConfigForm,
    RequestorSetupForm,
    ScheduleForm,
)
from console.permissions import Access
from console.views.base import lock_for_readers, org_page, page, require_administrator
from requestor import actions, schedule
from requestor.cycle import SyncError
from requestor.models import RequestorConfig, Run
from transport.dispatch import BrokerUnavailable


def _config(organization) -> RequestorConfig | None:
    return (
        RequestorConfig.objects.select_related("organization", "import_container")
        .filter(organization=organization)
        .first()
    )


def _not_configured(request, organization, tab: str):
    return page(request, "console/requestor_missing.html", organization, tab)


@org_page()
def export_config(request, organization):
    require_administrator(request, organization)
    config = _config(organization)
    if config is None:
        return _not_configured(request, organization, "export")
    data = request.POST if request.method == "POST" else None
    form = ExportConfigForm(data, instance=config)
    formset = ExportedContainerFormSet(
        data, instance=config, organization=organization, prefix="exported"
    )
    if data is not None and form.is_valid() and formset.is_valid():
        with transaction.atomic():
            form.save()
            formset.save()
        messages.success(request, "Export Config saved.")
        return redirect("console:export-config", org=organization.name)
    config.refresh_from_db(fields=["requestor_usn", "master_usn"])
    lock_for_readers(request, organization, form, formset)
    return page(
        request,
        "console/export_config.html",
        organization,
        "export",
        config=config,
        form=form,
        formset=formset,
    )


@org_page()
def import_config(request, organization):
    require_administrator(request, organization)
    config = _config(organization)
    if config is None:
        return _not_configured(request, organization, "import")
    form = ImportConfigForm(request.POST or None, instance=config)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Import Config saved.")
        return redirect("console:import-config", org=organization.name)
    lock_for_readers(request, organization, form)
    return page(request, "console/import_config.html", organization, "import", form=form)


@org_page(Access.ADMINISTRATOR)
def setup(request, organization):
    if _config(organization) is not None:
        return redirect("console:export-config", org=organization.name)
    instance = RequestorConfig(
        organization=organization,
        address=f"requestor@{organization.mail_domain}" if organization.mail_domain else "",
    )
    form = RequestorSetupForm(request.POST or None, instance=instance)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Requestor configured: choose the containers to export.")
        return redirect("console:export-config", org=organization.name)
    return page(request, "console/requestor_setup.html", organization, "export", form=form)


@org_page()
def schedule_page(request, organization):
    require_administrator(request, organization)
    config = _config(organization)
    if config is None:
        return _not_configured(request, organization, "schedule")
    form = ScheduleForm.for_config(config, request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        form.save(config)
        messages.success(request, f"Schedule saved: {schedule.describe(config)}.")
        return redirect("console:schedule", org=organization.name)
    lock_for_readers(request, organization, form)
    runs = Run.objects.filter(config=config).select_related("requested_by")[:10]
    return page(
        request,
        "console/schedule.html",
        organization,
        "schedule",
        config=config,
        form=form,
        described=schedule.describe(config),
        next_run=schedule.upcoming(config),
        runs=runs,
    )


def _act(request, organization, action, back: str):
    config = _config(organization)
    if config is None:
        return redirect(f"console:{back}", org=organization.name)
    try:
        outcome = action(config, request.user)
    except (SyncError, BrokerUnavailable) as exc:
        messages.error(request, str(exc))
        return redirect(f"console:{back}", org=organization.name)
    level = messages.ERROR if outcome.run and outcome.run.status == "failed" else messages.SUCCESS
    messages.add_message(request, level, outcome.detail)
    if outcome.run is None:
        return redirect(f"console:{back}", org=organization.name)
    # The run's page follows it live until it ends (static/console/console.js).
    return redirect("console:run", org=organization.name, pk=outcome.run.pk)


@require_POST
@org_page()
def execute_now(request, organization):
    return _act(request, organization, actions.execute_now, "schedule")


RESETS = {
    "import-all": (
        actions.import_all,
        permissions.IMPORT_ALL,
        "This resets the master USN to 0: the master sends this organization every entry of "
        "its database again, and contacts it no longer holds are removed.",
    ),
    "export-all": (
        actions.export_all,
        permissions.EXPORT_ALL,
        "This resets the requestor USN to 0: every exported recipient of this organization is "
        "sent to the master again, and the master drops entries the export no longer holds.",
    ),
}


@org_page()
def reset(request, organization, which: str):
    """Import/Export All Recipients: a confirmation page, then the action on POST."""
    action, button, explanation = RESETS[which]
    permissions.require(request.user, organization, button)  # before the confirmation, too
    title = permissions.BUTTONS[button].title
    if request.method == "POST":
        form = ConfirmForm(request.POST)
        if form.is_valid():
            return _act(request, organization, action, "export-config")
    return page(
        request,
        "console/confirm.html",
        organization,
        "export",
        title=title,
        explanation=explanation,
        form=ConfirmForm(),
        cancel=reverse("console:export-config", kwargs={"org": organization.name}),
    )
