"""/api/v1/ (the API), /api/schema/ (its OpenAPI document) and /api/docs/ (Swagger UI).

DRF's views authenticate by themselves (token or session) and answer 401/403 in JSON.
"""

from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from console.api import (
    alerts,
    batch,
    conflicts,
    containers,
    holds,
    masters,
    messages,
    organizations,
    recipients,
    requestors,
    runs,
    sites,
    status,
)

# /api/v1/ itself answers with the address of each collection (authenticated like the rest).
router = DefaultRouter()
router.register("status", status.StatusViewSet, basename="status")
router.register("organizations", organizations.OrganizationViewSet, basename="organization")
router.register("sites", sites.SiteViewSet, basename="site")
router.register("containers", containers.ContainerViewSet, basename="container")
router.register("recipients", recipients.RecipientViewSet, basename="recipient")
router.register("runs", runs.RunViewSet, basename="run")
router.register("messages", messages.MessageViewSet, basename="message")
router.register("conflicts", conflicts.ConflictViewSet, basename="conflict")
router.register("requestor-configs", requestors.RequestorConfigViewSet, basename="requestorconfig")
router.register(
    "exported-containers", requestors.ExportedContainerViewSet, basename="exportedcontainer"
)
router.register("master-configs", masters.MasterConfigViewSet, basename="masterconfig")
router.register("allowed-requestors", masters.AllowedRequestorViewSet, basename="allowedrequestor")
router.register("held-batches", holds.HoldViewSet, basename="hold")
router.register("alert-events", alerts.AlertEventViewSet, basename="alertevent")

urlpatterns = [
    path(
        "v1/",
        include((router.urls + alerts.urlpatterns + batch.urlpatterns, "api"), namespace="api"),
    ),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # A page for people: an anonymous visitor is sent to the login page.
    path(
        "docs/",
        login_required(SpectacularSwaggerView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
]
