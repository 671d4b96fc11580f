"""Conflicts the requestor's import met."""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, viewsets

from console.api.base import ORGANIZATION, OrganizationScoped
from requestor.models import Conflict


class ConflictSerializer(serializers.ModelSerializer):
    organization = serializers.CharField(source="config.organization.name", read_only=True)

    class Meta:
        model = Conflict
        fields = [
            "id",
            "organization",
            "global_key",
            "origin",
            "display_name",
            "address",
            "reason",
            "local_recipient",
            "first_seen",
            "last_seen",
        ]
        read_only_fields = fields


@extend_schema_view(list=extend_schema(parameters=[ORGANIZATION]))
class ConflictViewSet(OrganizationScoped, viewsets.ReadOnlyModelViewSet):
    queryset = Conflict.objects.select_related("config__organization")
    serializer_class = ConflictSerializer
    organization_field = "config__organization"
