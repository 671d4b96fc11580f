"""GET /api/v1/batches/{batch}/: a batch as one story (console.batch), for whoever may read one of
the organizations it concerns; the parts about the others say only that they are not shown."""

from django.urls import re_path
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from console import batch as batches
from console import permissions


class BatchMessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    organization = serializers.CharField(allow_blank=True)
    direction = serializers.CharField()
    status = serializers.CharField()
    kind = serializers.CharField()
    sender = serializers.CharField()
    recipient = serializers.CharField()
    part = serializers.IntegerField(allow_null=True)
    parts = serializers.IntegerField(allow_null=True)
    usn_from = serializers.IntegerField(allow_null=True)
    usn_through = serializers.IntegerField(allow_null=True)
    count = serializers.IntegerField(allow_null=True, help_text="Changes or entries it carries.")
    created_at = serializers.DateTimeField()
    error = serializers.CharField(allow_blank=True)
    href = serializers.CharField(allow_blank=True, help_text="Its console page.")


class BatchEntrySerializer(serializers.Serializer):
    name = serializers.CharField(allow_blank=True)
    key = serializers.CharField(help_text="Global key: origin organization and source GUID.")
    usn = serializers.IntegerField(allow_null=True, help_text="The master USN of the version.")
    address = serializers.CharField(allow_blank=True)
    detail = serializers.CharField(
        allow_blank=True,
        help_text="The attributes an update changed, or why an entry was set aside.",
    )
    at = serializers.DateTimeField(allow_null=True)


class BatchHoldSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    organization = serializers.CharField(allow_blank=True, help_text="Who holds it.")
    kind = serializers.CharField(
        help_text="export (the master's guard) or reply (an import guard)."
    )
    batch = serializers.CharField()
    held_at = serializers.DateTimeField()
    reason = serializers.CharField(allow_blank=True)
    deletes = serializers.IntegerField()
    live = serializers.IntegerField()
    decision = serializers.CharField(help_text="pending, approved or rejected.")
    decided_by = serializers.CharField(allow_null=True)
    decided_at = serializers.DateTimeField(allow_null=True)


class BatchRunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    trigger = serializers.CharField()
    requested_by = serializers.CharField(allow_null=True)
    status = serializers.CharField()
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    parts_sent = serializers.IntegerField()
    exported = serializers.IntegerField()
    imported = serializers.IntegerField()
    updated = serializers.IntegerField()
    deleted = serializers.IntegerField()
    conflicts = serializers.IntegerField()
    error = serializers.CharField(allow_blank=True)


class BatchOriginSerializer(serializers.Serializer):
    organization = serializers.CharField()
    local = serializers.BooleanField(help_text="In this installation.")
    shown = serializers.BooleanField(help_text="False: you cannot read it; nothing else is given.")
    full_export = serializers.BooleanField(allow_null=True)
    run = BatchRunSerializer(allow_null=True)
    parts = BatchMessageSerializer(many=True, help_text="The parts it sent.")
    replies = BatchMessageSerializer(many=True, help_text="The master's replies, as received.")


class BatchGuardSerializer(serializers.Serializer):
    shown = serializers.BooleanField()
    holds = BatchHoldSerializer(many=True, help_text="The master's holds of this batch.")
    quarantined = serializers.BooleanField(
        help_text="The origin's requestor is quarantined while the batch waits."
    )
    quarantine_reason = serializers.CharField(allow_blank=True)


class BatchMasterSerializer(serializers.Serializer):
    organization = serializers.CharField()
    shown = serializers.BooleanField()
    upserts = serializers.IntegerField(allow_null=True)
    deletes = serializers.IntegerField(allow_null=True)
    usn_from = serializers.IntegerField(allow_null=True)
    usn_through = serializers.IntegerField(allow_null=True)
    at = serializers.DateTimeField(allow_null=True)
    upserted = BatchEntrySerializer(many=True, help_text=f"At most {batches.SAMPLE}.")
    deleted = BatchEntrySerializer(many=True, help_text=f"At most {batches.SAMPLE}.")
    received = BatchMessageSerializer(many=True)
    replies = BatchMessageSerializer(many=True, help_text="Its replies to the batch, as sent.")


class BatchChangesSerializer(serializers.Serializer):
    op = serializers.CharField(help_text="added, updated, hidden, restored, removed or set_aside.")
    label = serializers.CharField()
    count = serializers.IntegerField()
    runs = serializers.ListField(child=serializers.IntegerField(), help_text="Its runs' ids.")
    first_at = serializers.DateTimeField(allow_null=True)
    last_at = serializers.DateTimeField(allow_null=True)
    entries = BatchEntrySerializer(many=True, help_text=f"At most {batches.SAMPLE}.")


class BatchImportSerializer(serializers.Serializer):
    organization = serializers.CharField()
    shown = serializers.BooleanField()
    state = serializers.CharField(
        allow_null=True,
        help_text="done (it applied every USN of the batch), partly, waiting (none yet), or "
        "nothing (the master stamped nothing of it).",
    )
    line = serializers.CharField(help_text="The story's line about it.")
    master_usn = serializers.IntegerField(allow_null=True)
    changes = BatchChangesSerializer(many=True)
    reply_holds = BatchHoldSerializer(
        many=True, help_text="Its import guard's holds of replies carrying this batch."
    )
    waiting_behind = BatchHoldSerializer(
        allow_null=True, help_text="A held reply that the batch's changes wait behind."
    )


class BatchCarriedSerializer(serializers.Serializer):
    batch = serializers.CharField(allow_null=True, help_text="None: changes made at the master.")
    origin = serializers.CharField()
    count = serializers.IntegerField()
    deletes = serializers.IntegerField()
    usn_from = serializers.IntegerField()
    usn_through = serializers.IntegerField()


class BatchReplySerializer(serializers.Serializer):
    to = serializers.CharField(allow_null=True)
    parts = BatchMessageSerializer(many=True)
    holds = BatchHoldSerializer(many=True)
    carries = BatchCarriedSerializer(
        many=True,
        help_text=f"The export batches whose changes it carries (at most {batches.CARRIED}).",
    )
    more = serializers.BooleanField()


class BatchStorySerializer(serializers.Serializer):
    batch = serializers.CharField()
    kind = serializers.CharField(help_text="export, or reply (a reply of the master).")
    lines = serializers.ListField(
        child=serializers.CharField(), help_text="The story in a few lines, one per part."
    )
    origin = BatchOriginSerializer(allow_null=True)
    guard = BatchGuardSerializer(allow_null=True)
    master_name = serializers.CharField(allow_blank=True)
    master = BatchMasterSerializer(
        allow_null=True, help_text="None: the master is in another installation."
    )
    organizations = BatchImportSerializer(
        many=True, help_text="Each organization of this installation following the master."
    )
    reply = BatchReplySerializer(allow_null=True)


BATCH = OpenApiParameter(
    "batch",
    str,
    OpenApiParameter.PATH,
    description="The batch's UUID, as on a run (an export batch) or a message.",
)


class BatchStoryView(APIView):
    """A batch as one story."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        parameters=[BATCH],
        responses={
            200: BatchStorySerializer,
            400: OpenApiResponse(description="Not a batch id."),
            404: OpenApiResponse(description="No such batch among your organizations'."),
        },
    )
    def get(self, request, batch: str):
        """Everything one export batch did, everywhere: the origin's run and who started it,
        the master's guard and who decided it, what the master stamped, and what each
        organization imported, hid, updated, restored, removed or set aside of it. For a reply
        of the master: the export batches it carries."""
        try:
            batch_id = batches.parse_batch(batch)
        except ValueError as exc:
            raise exceptions.ValidationError({"batch": [str(exc)]}) from None
        try:
            result = batches.story(
                batch_id, can_read=lambda pk: permissions.can_view(request.user, pk)
            )
        except batches.BatchNotFound:
            raise exceptions.NotFound("No such batch.") from None
        if not result.readable:
            raise exceptions.NotFound("No such batch.")
        return Response(BatchStorySerializer(batches.as_dict(result)).data)


urlpatterns = [
    re_path(r"^batches/(?P<batch>[^/]+)/$", BatchStoryView.as_view(), name="batch"),
]
