"""The dashboard: state, runs, USN lag, sync check and recent errors of each organization."""

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, viewsets
from rest_framework.response import Response

from console import permissions
from console import status as dashboard
from console.api.permissions import OrganizationAccess
from console.api.runs import RunSerializer
from directory.models import LdapDirectory


class LdapStateSerializer(serializers.ModelSerializer):
    """How far an LDAP directory has been read and written, and what went wrong."""

    scan_problems = serializers.ListField(child=serializers.CharField(), read_only=True)
    publish_problems = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = LdapDirectory
        fields = [
            "high_water",
            "published_usn",
            "last_scan_at",
            "last_publish_at",
            "last_error",
            "last_error_at",
            "scan_problems",
            "publish_problems",
            # Active Directory: the watermark and the domain controller it belongs to.
            "usn_watermark",
            "invocation_id",
            "dc_service_name",
            "dc_host",
            "last_full_scan_at",
            "full_scan_reason",
            "deletes_read",
            "deletes_note",
        ]
        read_only_fields = fields


class ErrorLineSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    source = serializers.CharField()
    text = serializers.CharField()


class RequestorViewSerializer(serializers.Serializer):
    """An allowlisted requestor as the master sees it."""

    id = serializers.IntegerField(source="requestor.pk")
    organization_name = serializers.CharField(source="requestor.organization_name")
    address = serializers.CharField(source="requestor.address")
    enabled = serializers.BooleanField(source="requestor.enabled")
    last_contact_at = serializers.DateTimeField(source="requestor.last_contact_at", allow_null=True)
    acked_usn = serializers.IntegerField(source="requestor.acked_usn")
    reported_master_usn = serializers.IntegerField(source="requestor.reported_master_usn")
    sent_master_usn = serializers.IntegerField(source="requestor.sent_master_usn")
    unsent = serializers.IntegerField(
        help_text="Master changes not yet sent to this requestor: the master's USN minus the "
        "USN its latest reply went through (the requestor's lag once it imports that reply)."
    )
    quarantined = serializers.BooleanField(source="requestor.quarantined")
    quarantined_at = serializers.DateTimeField(source="requestor.quarantined_at", allow_null=True)
    quarantine_reason = serializers.CharField(source="requestor.quarantine_reason")


class SideCheckSerializer(serializers.Serializer):
    """One side of the last verification (requestor.models.Verification)."""

    side = serializers.CharField()
    state = serializers.CharField()
    checked_at = serializers.DateTimeField(allow_null=True)
    verified_at = serializers.DateTimeField(allow_null=True)
    detail = serializers.CharField()
    local_digest = serializers.CharField()
    local_count = serializers.IntegerField(allow_null=True)
    master_digest = serializers.CharField()
    master_count = serializers.IntegerField(allow_null=True)
    repairs = serializers.IntegerField()
    repaired_at = serializers.DateTimeField(allow_null=True)
    last_repair_differed = serializers.IntegerField(allow_null=True)


class SyncCheckSerializer(serializers.Serializer):
    """What the digests last proved: verified (in sync at `at`), repairing, diverged (with the
    reason in `detail`), or unknown (not verified yet)."""

    state = serializers.CharField()
    at = serializers.DateTimeField(allow_null=True)
    detail = serializers.CharField()
    sides = serializers.SerializerMethodField()

    @extend_schema_field(SideCheckSerializer(many=True))
    def get_sides(self, check):
        return SideCheckSerializer(list(check.sides.values()), many=True).data


class StatusSerializer(serializers.Serializer):
    """The dashboard's line for one organization."""

    organization = serializers.CharField(source="organization.name")
    display_name = serializers.CharField(source="organization.display_name")
    role = serializers.CharField(source="organization.role")
    state = serializers.CharField()
    reason = serializers.CharField()
    requestor_usn = serializers.IntegerField(source="config.requestor_usn", allow_null=True)
    master_usn = serializers.IntegerField(source="config.master_usn", allow_null=True)
    lag = serializers.IntegerField(
        allow_null=True,
        help_text="Master USN lag: master changes this requestor has not yet imported (the "
        "master's USN minus master_usn); null when the master does not run here.",
    )
    last_run = RunSerializer(allow_null=True)
    last_ok_at = serializers.DateTimeField(allow_null=True)
    next_run = serializers.DateTimeField(
        allow_null=True,
        help_text="When beat next starts the requestor's cycle (now, when it is due already); "
        "null when none will start: next_run_note says why.",
    )
    next_run_note = serializers.CharField(
        help_text="Why there is no next run: not scheduled, schedule disabled, schedule "
        "expired, requestor disabled (empty otherwise)."
    )
    errors = ErrorLineSerializer(many=True)
    sync = SyncCheckSerializer(allow_null=True, help_text="The last verification (or null).")
    master_current_usn = serializers.IntegerField(
        allow_null=True,
        help_text="The current USN of the master this requestor sends to (null when it is not "
        "in this installation); lag counts from it.",
    )
    requestors = RequestorViewSerializer(many=True)
    held = serializers.IntegerField(
        help_text="Batches held for this organization's administrators."
    )
    ldap = LdapStateSerializer(allow_null=True, help_text="The LDAP directory's state (or null).")


class StatusViewSet(viewsets.ViewSet):
    """The dashboard: state, runs, USN lag and recent errors of every organization you see."""

    permission_classes = [OrganizationAccess]

    @extend_schema(responses=StatusSerializer(many=True))
    def list(self, request):
        organizations = permissions.visible_organizations(request.user)
        return Response(StatusSerializer(dashboard.all_statuses(organizations), many=True).data)
