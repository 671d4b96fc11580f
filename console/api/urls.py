"""/api/v1/ (the API), /api/schema/ (its OpenAPI document) and /api/docs/ (Swagger UI).

DRF's views authenticate by themselves (token or session) and answer 401/403 in JSON.
"""

from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from console.api import alerts, batch, views

# /api/v1/ itself answers with the address of each collection (authenticated like the rest).
router = DefaultRouter()
router.register("status", views.StatusViewSet, basename="status")
router.register("organizations", views.OrganizationViewSet, basename="organization")
router.register("sites", views.SiteViewSet, basename="site")
router.register("containers", views.ContainerViewSet, basename="container")
router.register("recipients", views.RecipientViewSet, basename="recipient")
router.register("runs", views.RunViewSet, basename="run")
router.register("messages", views.MessageViewSet, basename="message")
router.register("conflicts", views.ConflictViewSet, basename="conflict")
router.register("requestor-configs", views.RequestorConfigViewSet, basename="requestorconfig")
router.register("exported-containers", views.ExportedContainerViewSet, basename="exportedcontainer")
router.register("master-configs", views.MasterConfigViewSet, basename="masterconfig")
router.register("allowed-requestors", views.AllowedRequestorViewSet, basename="allowedrequestor")
router.register("held-batches", views.HoldViewSet, basename="hold")
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
