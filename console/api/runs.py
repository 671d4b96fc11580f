"""Runs of the requestors: read-only, filtered like the console's Runs page."""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, viewsets

from console.api.base import DATE_RANGE, ORGANIZATION, OrganizationScoped, _param, filtered
from console.filters import RunFilter
from requestor.constants import RunStatus, Trigger
from requestor.models import Run


class RunSerializer(serializers.ModelSerializer):
    organization = serializers.CharField(source="config.organization.name", read_only=True)
    requested_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Run
        fields = [
            "id",
            "organization",
            "trigger",
            "requested_by",
            "status",
            "batch",
            "full_export",
            "action",
            "full_reply",
            "started_at",
            "finished_at",
            "parts_sent",
            "exported",
            "export_through",
            "acknowledged",
            "reply_parts",
            "reply_parts_applied",
            "imported",
            "updated",
            "deleted",
            "conflicts",
            "error",
            "attempts",
            "repair",
            "verification",
        ]
        read_only_fields = fields


@extend_schema_view(
    list=extend_schema(
        parameters=[
            ORGANIZATION,
            _param("status", "Only runs in this state.", RunStatus.values),
            _param("trigger", "Only runs started this way.", Trigger.values),
            *DATE_RANGE,
        ]
    )
)
class RunViewSet(OrganizationScoped, viewsets.ReadOnlyModelViewSet):
    queryset = Run.objects.select_related("config__organization", "requested_by")
    serializer_class = RunSerializer
    organization_field = "config__organization"

    def filter_queryset_params(self, queryset):
        return filtered(self.request, RunFilter, queryset)
