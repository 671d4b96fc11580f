"""The API of alerts (console.alerts): an organization's alert recipients and the state they
were last told of (GET, PATCH /api/v1/organizations/{name}/alerts/), and its state changes
with what became of their mail (/api/v1/alert-events/)."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from django.urls import re_path
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, serializers, viewsets

from console import alerts, permissions
from console.api.base import ORGANIZATION, OrganizationScoped, _param, query_param
from console.models import MAX_ALERT_ADDRESSES, AlertEvent, AlertSettings, clean_addresses

ORGANIZATION_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"


class AlertSettingsSerializer(serializers.ModelSerializer):
    """Who gets an organization's alert e-mails, and the state they were last told of."""

    organization = serializers.CharField(source="organization.name", read_only=True)
    addresses = serializers.ListField(
        child=serializers.EmailField(max_length=254),
        max_length=MAX_ALERT_ADDRESSES,
        required=False,
        help_text="E-mail addresses that get the alerts, beside the administrators if so set.",
    )
    recipients = serializers.SerializerMethodField(
        help_text="Where the mail goes: the addresses, and the administrators' if so set."
    )

    class Meta:
        model = AlertSettings
        fields = [
            "organization",
            "addresses",
            "include_administrators",
            "recipients",
            "state",
            "reason",
            "state_since",
            "pending_state",
            "pending_since",
        ]
        read_only_fields = ["state", "reason", "state_since", "pending_state", "pending_since"]

    def get_recipients(self, row) -> list[str]:
        return alerts.recipients_of(row)

    def validate_addresses(self, value: list[str]) -> list[str]:
        try:
            return clean_addresses(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None


class AlertEventSerializer(serializers.ModelSerializer):
    """A state change of an organization (or a repair), and its alert e-mail."""

    organization = serializers.CharField(source="organization.name", read_only=True)
    recipients = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = AlertEvent
        fields = [
            "id",
            "organization",
            "at",
            "previous_state",
            "state",
            "subject",
            "reason",
            "recipients",
            "attempts",
            "sent_at",
            "retry_at",
            "error",
        ]
        read_only_fields = fields


@extend_schema(
    parameters=[
        OpenApiParameter(
            "name",
            str,
            OpenApiParameter.PATH,
            description="The organization's short name, such as ORG2.",
            pattern=f"^{ORGANIZATION_NAME}$",
        )
    ]
)
class OrganizationAlertsView(OrganizationScoped, generics.RetrieveUpdateAPIView):
    """An organization's alert recipients (its administrators change them) and the state they
    were last told of."""

    serializer_class = AlertSettingsSerializer
    queryset = AlertSettings.objects.none()
    http_method_names = ["get", "patch", "head", "options"]

    def get_object(self) -> AlertSettings:
        organization = get_object_or_404(
            permissions.visible_organizations(self.request.user), name=self.kwargs["name"]
        )
        row = alerts.settings_of(organization)
        self.check_object_permissions(self.request, row)
        return row

    def perform_update(self, serializer) -> None:
        row, data = serializer.instance, serializer.validated_data
        serializer.instance = alerts.set_recipients(
            row.organization,
            data.get("addresses", row.addresses),
            data.get("include_administrators", row.include_administrators),
        )


@extend_schema_view(
    list=extend_schema(
        parameters=[
            ORGANIZATION,
            _param("state", "Only changes into this state (such as failing, ok or repaired)."),
        ]
    )
)
class AlertEventViewSet(OrganizationScoped, viewsets.ReadOnlyModelViewSet):
    """State changes of your organizations, newest first, and what became of their mail."""

    queryset = AlertEvent.objects.select_related("organization")
    serializer_class = AlertEventSerializer

    def filter_queryset_params(self, queryset):
        state = query_param(self.request, "state")
        return queryset.filter(state=state) if state else queryset


urlpatterns = [
    re_path(
        rf"^organizations/(?P<name>{ORGANIZATION_NAME})/alerts/$",
        OrganizationAlertsView.as_view(),
        name="organization-alerts",
    ),
]
