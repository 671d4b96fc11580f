"""The API's preview of a requestor's next cycle: `GET /api/v1/requestor-configs/{id}/preview/`
(requestor.preview). A safe method for whoever may read the organization: nothing changes.
Its JSON shapes are here, beside the one action that returns them."""

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from requestor.constants import ImportOp, PreviewOp, PreviewReason
from requestor.cycle import SyncError
from requestor.preview import preview_cycle
from transport.constants import Status

STATUSES = ", ".join(Status.values)


class ExportChangeSerializer(serializers.Serializer):
    op = serializers.ChoiceField(PreviewOp.choices)
    reason = serializers.ChoiceField(PreviewReason.choices)
    reason_label = serializers.CharField()
    detail = serializers.CharField(allow_blank=True, help_text="Why, in words.")
    name = serializers.CharField(
        allow_blank=True, help_text="The display name as the others see it."
    )
    address = serializers.CharField(
        allow_blank=True, help_text="The primary SMTP address as the others see it."
    )
    kind = serializers.CharField(allow_blank=True)
    id = serializers.CharField(help_text="The recipient's object GUID.")
    usn = serializers.IntegerField(
        allow_null=True, help_text="Its local USN; null for an entry a full export drops."
    )
    attributes = serializers.ListField(
        child=serializers.CharField(),
        help_text="The General attributes it changes at the master (when the master runs in "
        "this installation).",
    )
    causes = serializers.ListField(
        child=serializers.CharField(),
        help_text="What made it enter or leave the scope: container, kind, trust_level, hidden, "
        "suffix, smtp_domain, deleted_at_master.",
    )
    at_master = serializers.BooleanField(
        allow_null=True,
        help_text="Whether the master holds a live entry of it; null when the master runs "
        "elsewhere.",
    )


class ImportChangeSerializer(serializers.Serializer):
    op = serializers.ChoiceField(ImportOp.choices)
    reason = serializers.CharField(
        help_text="new, conflict_freed, changed, deleted, absent, conflict, domain, address or "
        "organization."
    )
    detail = serializers.CharField(allow_blank=True)
    name = serializers.CharField(allow_blank=True)
    address = serializers.CharField(allow_blank=True)
    origin = serializers.CharField(allow_blank=True, help_text="The origin organization.")
    key = serializers.CharField(help_text="The master's global key of the entry.")
    attributes = serializers.ListField(child=serializers.CharField())


class ReplyPreviewSerializer(serializers.Serializer):
    message = serializers.IntegerField(help_text="The archived message's id.")
    sender = serializers.CharField()
    batch = serializers.CharField(allow_null=True)
    part = serializers.IntegerField(allow_null=True)
    parts = serializers.IntegerField(allow_null=True)
    status = serializers.CharField(help_text=f"Its status in the message archive now: {STATUSES}.")
    outcome = serializers.CharField(
        help_text=f"The status the next cycle (or an approval) would leave it in: {STATUSES}."
    )
    detail = serializers.CharField(allow_blank=True)
    if_approved = serializers.BooleanField(
        help_text="What it would do once an administrator approves the held batch."
    )
    guard_tripped = serializers.BooleanField(help_text="The import guard would hold it.")
    counts = serializers.DictField(child=serializers.IntegerField())
    changes = ImportChangeSerializer(many=True)


class GuardSerializer(serializers.Serializer):
    side = serializers.ChoiceField(["export", "import"])
    held = serializers.BooleanField(allow_null=True, help_text="Null when it cannot be known.")
    detail = serializers.CharField()


class PreviewSerializer(serializers.Serializer):
    organization = serializers.CharField()
    master_address = serializers.CharField()
    master_local = serializers.BooleanField(
        help_text="The master runs in this installation (attribute changes and its guard known)."
    )
    generated_at = serializers.DateTimeField()
    full = serializers.BooleanField(help_text="A full export (the requestor USN is 0).")
    usn_from = serializers.IntegerField()
    usn_through = serializers.IntegerField()
    parts = serializers.IntegerField(help_text="Message parts the export would take.")
    export_counts = serializers.DictField(child=serializers.IntegerField())
    import_counts = serializers.DictField(child=serializers.IntegerField())
    changes = ExportChangeSerializer(many=True)
    replies = ReplyPreviewSerializer(many=True)
    guards = GuardSerializer(many=True)
    notes = serializers.ListField(child=serializers.CharField())


class CycleRunning409(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "A cycle of this organization is running; preview again when it is done."
    default_code = "cycle_running"


class PreviewAction:
    """The preview action of the requestor configurations' view set."""

    @extend_schema(
        request=None,
        responses={200: PreviewSerializer},
        description="What the next cycle would export (each change with its reason) and what the "
        "replies received but not applied yet would import, and whether a guard would hold it. "
        "Worked out by the sync code in a transaction that is rolled back: nothing changes. 409 "
        "while a cycle of the organization is running.",
    )
    @action(detail=True, methods=["get"])
    def preview(self, request, pk=None):
        config = self.get_object()
        try:
            preview = preview_cycle(config.pk)
        except SyncError as exc:
            raise CycleRunning409(str(exc)) from None
        return Response(PreviewSerializer(preview).data)
