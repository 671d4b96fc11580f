"""The master of an organization and its requestor allowlist, with quarantine and release."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from console.api.base import (
    ORGANIZATION,
    CleanedModelSerializer,
    Conflict409,
    OrganizationNameField,
    OrganizationScoped,
    VisibleRelatedField,
)
from master import quarantine
from master.models import AllowedRequestor, MasterConfig
from transport.signing import fingerprint


class AllowedRequestorSerializer(CleanedModelSerializer):
    master = VisibleRelatedField(MasterConfig)
    quarantined = serializers.BooleanField(read_only=True)
    master_organization = serializers.CharField(source="master.organization.name", read_only=True)
    key_fingerprint = serializers.SerializerMethodField()
    unsent = serializers.SerializerMethodField()

    class Meta:
        model = AllowedRequestor
        fields = [
            "id",
            "master",
            "master_organization",
            "address",
            "organization_name",
            "label",
            "enabled",
            "public_key",
            "key_fingerprint",
            "acked_usn",
            "reported_master_usn",
            "pending_ranges",
            "sent_master_usn",
            "last_contact_at",
            "unsent",
            "delete_limit",
            "delete_percent",
            "delete_floor",
            "quarantined",
            "quarantined_at",
            "quarantine_reason",
            "refusals",
            "full_export_wanted",
        ]
        read_only_fields = [
            "acked_usn",
            "reported_master_usn",
            "sent_master_usn",
            "pending_ranges",
            "last_contact_at",
            "quarantined_at",
            "quarantine_reason",
            "refusals",
            "full_export_wanted",
        ]
        validators = []

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list | tuple):
            fields["master"].read_only = True
        return fields

    @extend_schema_field(OpenApiTypes.STR)
    def get_key_fingerprint(self, requestor) -> str:
        return fingerprint(requestor.public_key) if requestor.public_key else ""

    @extend_schema_field(OpenApiTypes.INT)
    def get_unsent(self, requestor) -> int:
        return requestor.unsent


class MasterConfigSerializer(CleanedModelSerializer):
    organization = OrganizationNameField()
    requestors = AllowedRequestorSerializer(many=True, read_only=True)

    class Meta:
        model = MasterConfig
        fields = [
            "id",
            "organization",
            "enabled",
            "address",
            "dn",
            "max_attachment_size",
            "tombstone_lifetime_days",
            "quarantine_after_refusals",
            "usn",
            "epoch",
            "purged_through_usn",
            "requestors",
        ]
        read_only_fields = ["usn", "epoch", "purged_through_usn"]
        validators = []

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list | tuple):
            fields["organization"].read_only = True
        return fields


class QuarantineSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True)


@extend_schema_view(list=extend_schema(parameters=[ORGANIZATION]))
class MasterConfigViewSet(OrganizationScoped, viewsets.ModelViewSet):
    """The master of an organization (Master Configuration) with its requestors' state."""

    queryset = (
        MasterConfig.objects.select_related("organization")
        .prefetch_related("requestors__master__organization")
        .order_by("organization__name")
    )
    serializer_class = MasterConfigSerializer

    def perform_create(self, serializer):
        self.check_can_administer(serializer.validated_data["organization"].pk)
        serializer.save()


@extend_schema_view(list=extend_schema(parameters=[ORGANIZATION]))
class AllowedRequestorViewSet(OrganizationScoped, viewsets.ModelViewSet):
    """The master's requestor allowlist (addresses and keys), and what it knows of each."""

    queryset = AllowedRequestor.objects.select_related("master__organization")
    serializer_class = AllowedRequestorSerializer
    organization_field = "master__organization"

    def perform_create(self, serializer):
        self.check_can_administer(serializer.validated_data["master"].organization_id)
        serializer.save()

    @extend_schema(request=QuarantineSerializer, responses=AllowedRequestorSerializer)
    @action(detail=True, methods=["post"])
    def quarantine(self, request, pk=None):
        """Quarantine this requestor: its exports are kept, not applied, until released."""
        requestor = self.get_object()
        self.check_can_administer(requestor.master.organization_id)
        form = QuarantineSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        reason = " ".join(form.validated_data.get("reason", "").split()) or "Quarantined by hand."
        quarantine.quarantine(requestor, reason, request.user)
        return Response(AllowedRequestorSerializer(self.get_object()).data)

    @extend_schema(request=None, responses=AllowedRequestorSerializer)
    @action(detail=True, methods=["post"])
    def release(self, request, pk=None):
        """Release this requestor: what waited is applied in order."""
        requestor = self.get_object()
        self.check_can_administer(requestor.master.organization_id)
        try:
            quarantine.release(requestor)
        except quarantine.QuarantineError as exc:
            raise Conflict409(str(exc)) from None
        return Response(AllowedRequestorSerializer(self.get_object()).data)
