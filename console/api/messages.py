"""The message archive."""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, viewsets

from console.api.base import DATE_RANGE, ORGANIZATION, OrganizationScoped, _param, filtered
from console.filters import MessageFilter
from transport.constants import Direction, MessageKind, Status
from transport.models import Message


class MessageSerializer(serializers.ModelSerializer):
    """An archived message: its envelope and parsed summary, never the payload itself."""

    organization = serializers.CharField(
        source="organization.name", read_only=True, allow_null=True
    )

    class Meta:
        model = Message
        fields = [
            "id",
            "organization",
            "direction",
            "status",
            "kind",
            "sender",
            "recipient",
            "address_type",
            "batch",
            "part",
            "parts",
            "sequence",
            "usn_from",
            "usn_through",
            "size",
            "summary",
            "key_fingerprint",
            "message_id",
            "error",
            "attempts",
            "created_at",
            "processed_at",
        ]
        read_only_fields = fields


@extend_schema_view(
    list=extend_schema(
        parameters=[
            ORGANIZATION,
            _param("direction", "in (received) or out (sent).", Direction.values),
            _param("status", "Only messages in this state.", Status.values),
            _param("kind", "Only messages of this kind.", MessageKind.values),
            _param("origin", "Only messages from this organization's agent (its short name)."),
            _param("search", "Part of the subject, the Message-ID or an address, or a batch id."),
            *DATE_RANGE,
        ]
    )
)
class MessageViewSet(OrganizationScoped, viewsets.ReadOnlyModelViewSet):
    """The message archive: every message sent and received, with rejections and their reason."""

    queryset = Message.objects.defer("payload", "signature").select_related("organization")
    serializer_class = MessageSerializer

    def filter_queryset_params(self, queryset):
        return filtered(self.request, MessageFilter, queryset, q="search")
