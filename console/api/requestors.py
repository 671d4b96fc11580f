"""The requestor of an organization (Export Config, Import Config, exported containers) and
its buttons (Execute Now, Import All, Export All)."""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from console.api.base import (
    ORGANIZATION,
    CleanedModelSerializer,
    OrganizationNameField,
    OrganizationScoped,
    VisibleRelatedField,
)
from console.api.preview import PreviewAction
from console.api.runs import RunSerializer
from directory.models import Container
from requestor import actions
from requestor.constants import Trigger
from requestor.cycle import SyncError
from requestor.models import ExportedContainer, RequestorConfig
from transport.dispatch import BrokerUnavailable


class NestedExportedContainerSerializer(serializers.ModelSerializer):
    container_dn = serializers.CharField(source="container.dn", read_only=True)

    class Meta:
        model = ExportedContainer
        fields = ["id", "container", "container_dn", "mailboxes", "distribution_lists"]
        fields += ["custom_recipients"]
        read_only_fields = fields


class RequestorConfigSerializer(CleanedModelSerializer):
    """Export Config, Import Config and the USNs of a requestor."""

    organization = OrganizationNameField()
    master_address_type = serializers.CharField(read_only=True)
    import_container = VisibleRelatedField(Container, allow_null=True, required=False)
    exported_containers = NestedExportedContainerSerializer(many=True, read_only=True)

    class Meta:
        model = RequestorConfig
        fields = [
            "id",
            "organization",
            "enabled",
            "address",
            "dn",
            "requestor_usn",
            "master_usn",
            "exported_containers",
            "append_display_name",
            "modify_smtp_domain",
            "max_message_size",
            "trust_level",
            "master_address",
            "master_address_type",
            "master_public_key",
            "import_container",
            "import_all_domains",
            "import_domains",
            "excluded_addresses",
            "excluded_organizations",
            "import_delete_limit",
            "import_delete_percent",
            "import_delete_floor",
            "grace_days",
        ]
        read_only_fields = ["requestor_usn", "master_usn"]
        # The suffix usually starts with a space, as in " (ORG2)": keep it.
        extra_kwargs = {"append_display_name": {"trim_whitespace": False}}
        validators = []

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list | tuple):
            fields["organization"].read_only = True
        return fields


class ActionResultSerializer(serializers.Serializer):
    """What a button did, and the run that carries it (queued for a worker, or ended when the
    cycle ran inside the request); `url` is the run's, also in the Location header."""

    detail = serializers.CharField()
    id = serializers.IntegerField(source="run.pk", help_text="The run's id.")
    url = serializers.SerializerMethodField(help_text="The run's URL: GET it to follow the run.")
    run = RunSerializer()

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, outcome) -> str:
        return self.context["url"]


class ServiceUnavailable503(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The task queue (broker) does not answer."
    default_code = "broker_unavailable"


ACTION_RESPONSES = {202: ActionResultSerializer}


# The buttons ask requestor.actions, which asks the one rule (console.permissions.may); the
# viewset's own rule (administrators write) would refuse an operator the button allows.
ACTION_PERMISSIONS = [IsAuthenticated]


@extend_schema_view(list=extend_schema(parameters=[ORGANIZATION]))
class RequestorConfigViewSet(PreviewAction, OrganizationScoped, viewsets.ModelViewSet):
    """The requestor of an organization (Export Config and Import Config), and its buttons."""

    queryset = (
        RequestorConfig.objects.select_related("organization", "import_container")
        .prefetch_related("exported_containers__container")
        .order_by("organization__name")
    )
    serializer_class = RequestorConfigSerializer

    def perform_create(self, serializer):
        self.check_can_administer(serializer.validated_data["organization"].pk)
        serializer.save()

    def _act(self, request, operation) -> Response:
        # Outsiders find nothing (404); the action itself checks the rule (403 with the reason).
        config = get_object_or_404(self.get_queryset(), pk=self.kwargs["pk"])
        try:
            outcome = operation(config, request.user, Trigger.API)
        except SyncError as exc:
            raise exceptions.ValidationError({"non_field_errors": [str(exc)]}) from None
        except BrokerUnavailable as exc:
            raise ServiceUnavailable503(str(exc)) from None
        except DjangoPermissionDenied as exc:
            raise exceptions.PermissionDenied(str(exc)) from None
        # 202 and the run's URL, whether the run ended inside the request (without workers) or
        # waits for a worker: a script follows it with GET on that URL until it ends.
        url = request.build_absolute_uri(reverse("api:run-detail", kwargs={"pk": outcome.run.pk}))
        body = ActionResultSerializer(outcome, context={"url": url}).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": url})

    @extend_schema(request=None, responses={**ACTION_RESPONSES, 503: None})
    @action(
        detail=True, methods=["post"], url_path="execute-now", permission_classes=ACTION_PERMISSIONS
    )
    def execute_now(self, request, pk=None):
        """Execute Now: run a cycle (inline, or queued for a worker; 503 if the broker is down)."""
        return self._act(request, actions.execute_now)

    @extend_schema(request=None, responses={**ACTION_RESPONSES, 503: None})
    @action(
        detail=True, methods=["post"], url_path="import-all", permission_classes=ACTION_PERMISSIONS
    )
    def import_all(self, request, pk=None):
        """Import All Recipients: master USN to 0, then a cycle."""
        return self._act(request, actions.import_all)

    @extend_schema(request=None, responses={**ACTION_RESPONSES, 503: None})
    @action(
        detail=True, methods=["post"], url_path="export-all", permission_classes=ACTION_PERMISSIONS
    )
    def export_all(self, request, pk=None):
        """Export All Recipients: requestor USN to 0, then a cycle."""
        return self._act(request, actions.export_all)


class ExportedContainerSerializer(CleanedModelSerializer):
    config = VisibleRelatedField(RequestorConfig)
    container = VisibleRelatedField(Container)
    container_dn = serializers.CharField(source="container.dn", read_only=True)

    class Meta:
        model = ExportedContainer
        fields = [
            "id",
            "config",
            "container",
            "container_dn",
            "mailboxes",
            "distribution_lists",
            "custom_recipients",
        ]
        validators = []


@extend_schema_view(list=extend_schema(parameters=[ORGANIZATION]))
class ExportedContainerViewSet(OrganizationScoped, viewsets.ModelViewSet):
    queryset = ExportedContainer.objects.select_related(
        "container", "config__organization"
    ).order_by("config__organization__name", "container__dn")
    serializer_class = ExportedContainerSerializer
    organization_field = "config__organization"

    def perform_create(self, serializer):
        self.check_can_administer(serializer.validated_data["config"].organization_id)
        serializer.save()

    def perform_update(self, serializer):
        config = serializer.validated_data.get("config", serializer.instance.config)
        self.check_can_administer(config.organization_id)
        serializer.save()
