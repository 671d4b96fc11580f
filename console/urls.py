"""The console's pages: the dashboard, and per organization its property pages and archives."""

from django.contrib.auth.decorators import login_required
from django.urls import include, path

from console.views import (
    activity,
    alerts,
    archive,
    asof,
    batch,
    dashboard,
    directory,
    explain,
    follow,
    held,
    history,
    master,
    organizations,
    preview,
    profile,
    requestor,
    setup,
)

app_name = "console"

organization_pages = [
    path("", dashboard.overview, name="overview"),
    path("history.json", activity.organization_history, name="organization-history-json"),
    path("server-type/", organizations.server_type, name="server-type"),
    path("directory-service/", organizations.directory_service, name="directory-service"),
    path("master/", master.master_config, name="master-config"),
    path("requestor/setup/", requestor.setup, name="requestor-setup"),
    path("requestor/export/", requestor.export_config, name="export-config"),
    path("requestor/import/", requestor.import_config, name="import-config"),
    path("requestor/schedule/", requestor.schedule_page, name="schedule"),
    path("requestor/execute-now/", requestor.execute_now, name="execute-now"),
    path("requestor/preview/", preview.preview_page, name="preview"),
    path(
        "requestor/import-all/",
        requestor.reset,
        {"which": "import-all"},
        name="import-all",
    ),
    path(
        "requestor/export-all/",
        requestor.reset,
        {"which": "export-all"},
        name="export-all",
    ),
    path("directory/", directory.containers, name="containers"),
    path("directory/as-of/", asof.address_book_as_of, name="address-book-as-of"),
    path("directory/containers/new/", directory.container_edit, name="container-add"),
    path("directory/sites/new/", setup.site_edit, name="site-add"),
    path("directory/sites/<int:pk>/edit/", setup.site_edit, name="site-edit"),
    path("directory/sites/<int:pk>/delete/", setup.site_delete, name="site-delete"),
    path("pairing/", setup.pairing_page, name="pairing"),
    path("directory/containers/<int:pk>/", directory.container_detail, name="container"),
    path("directory/containers/<int:pk>/edit/", directory.container_edit, name="container-edit"),
    path(
        "directory/containers/<int:pk>/delete/",
        directory.container_delete,
        name="container-delete",
    ),
    path(
        "directory/containers/<int:container>/new/",
        directory.recipient_edit,
        name="recipient-add",
    ),
    path("directory/recipients/<int:pk>/", directory.recipient_detail, name="recipient"),
    path("directory/recipients/<int:pk>/edit/", directory.recipient_edit, name="recipient-edit"),
    path(
        "directory/recipients/<int:pk>/trust-level/",
        directory.trust_level,
        name="recipient-trust-level",
    ),
    path(
        "directory/recipients/<int:pk>/delete/",
        directory.recipient_delete,
        name="recipient-delete",
    ),
    path(
        "directory/recipients/<int:pk>/history/",
        history.recipient_history,
        name="recipient-history",
    ),
    path("runs/", archive.runs, name="runs"),
    path("runs/<int:pk>/", archive.run_detail, name="run"),
    path("runs/<int:pk>/status.json", follow.run_status, name="run-status"),
    path("batches/<uuid:batch>/", batch.batch_page, name="batch"),
    path("messages/", archive.messages_list, name="messages"),
    path("messages/<int:pk>/", archive.message_detail, name="message"),
    path("messages/<int:pk>/eml/", archive.message_eml, name="message-eml"),
    path("conflicts/", archive.conflicts, name="conflicts"),
    path("explain/", explain.explain_page, name="explain"),
    path("history/", history.history_page, name="history"),
    path("alerts/", alerts.alerts_page, name="alerts"),
    path("held/", held.held_batches, name="held"),
    path("held/<int:pk>/approve/", held.decide, {"decision": "approve"}, name="held-approve"),
    path("held/<int:pk>/reject/", held.decide, {"decision": "reject"}, name="held-reject"),
    path(
        "master/requestors/<int:pk>/quarantine/",
        held.quarantine_requestor,
        name="requestor-quarantine",
    ),
    path("master/requestors/<int:pk>/release/", held.release_requestor, name="requestor-release"),
]


def _login_required(patterns: list) -> list:
    """Every page of the console needs a login: an anonymous visitor is sent to /login/."""
    for pattern in patterns:
        pattern.callback = login_required(pattern.callback)
    return patterns


urlpatterns = [
    path("", login_required(dashboard.dashboard), name="dashboard"),
    path("time-zone/", login_required(profile.time_zone), name="time-zone"),
    path("history.json", login_required(activity.all_history), name="history-json"),
    path("explain/", login_required(explain.search), name="explain-search"),
    path("organizations/new/", login_required(setup.organization_add), name="organization-add"),
    path("o/<str:org>/", include(_login_required(organization_pages))),
]
