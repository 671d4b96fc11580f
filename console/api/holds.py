"""Batches held for an administrator (transport.holds), and their decision."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from console.api.base import ORGANIZATION, Conflict409, OrganizationScoped, _param, query_param
from transport import holds
from transport.models import Hold


class HoldSerializer(serializers.ModelSerializer):
    """A batch held for an administrator (transport.holds)."""

    organization = serializers.CharField(source="organization.name", read_only=True)
    decided_by = serializers.CharField(source="decided_by.username", read_only=True, default=None)
    percent = serializers.FloatField(read_only=True)
    waiting = serializers.SerializerMethodField()

    class Meta:
        model = Hold
        fields = [
            "id",
            "organization",
            "kind",
            "peer",
            "sender",
            "batch",
            "message",
            "reason",
            "deletes",
            "live",
            "percent",
            "sample",
            "held_at",
            "decision",
            "decided_by",
            "decided_at",
            "waiting",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.INT)
    def get_waiting(self, hold) -> int:
        """Messages held from the same sender (this batch's included), while it is pending."""
        return holds.waiting(hold)


@extend_schema_view(
    list=extend_schema(
        parameters=[
            ORGANIZATION,
            _param("decision", "pending, approved or rejected", enum=Hold.Decision.values),
        ]
    )
)
class HoldViewSet(OrganizationScoped, viewsets.ReadOnlyModelViewSet):
    """Batches held for an administrator, and their decision (approve / reject)."""

    queryset = Hold.objects.select_related("organization", "decided_by")
    serializer_class = HoldSerializer

    def filter_queryset_params(self, queryset):
        decision = query_param(self.request, "decision")
        return queryset.filter(decision=decision) if decision in Hold.Decision.values else queryset

    def _decide(self, decide) -> Response:
        hold = self.get_object()
        self.check_can_administer(hold.organization_id)
        try:
            decide(hold.pk, self.request.user)
        except holds.HoldDecided as exc:
            raise Conflict409(str(exc)) from None
        return Response(HoldSerializer(self.get_object()).data)

    @extend_schema(request=None, responses=HoldSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        """Apply the held batch as it would have been, then what waited behind it, in order."""
        return self._decide(holds.approve)

    @extend_schema(request=None, responses=HoldSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        """Discard the held batch and what waited behind it."""
        return self._decide(holds.reject)
