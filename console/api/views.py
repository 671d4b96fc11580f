"""The JSON API: status, directory, runs, messages, conflicts and configuration of the user's
organizations, and the requestor's actions. Lists only hold the user's organizations; objects
of other organizations answer 404; an operator's change answers 403."""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db.models import ProtectedError, Q
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from console import activity, directory_settings, permissions
from console import status as dashboard
from console.api import serializers as s
from console.api.asof import AddressBookAction
from console.api.explain import ExplainAction
from console.api.history import HistoryAction, RecipientHistoryAction
from console.api.permissions import OrganizationAccess
from console.api.preview import PreviewAction
from console.filters import ORIGIN_OWN, MessageFilter, RunFilter
from directory import changes, setup
from directory.constants import Kind
from directory.models import Container, LdapDirectory, Organization, Recipient, Site
from master import quarantine
from master.models import AllowedRequestor, MasterConfig
from requestor import actions
from requestor.constants import RunStatus, Trigger
from requestor.cycle import SyncError
from requestor.models import Conflict, ExportedContainer, RequestorConfig, Run
from transport import holds
from transport.constants import Direction, MessageKind, Status
from transport.dispatch import BrokerUnavailable
from transport.models import Hold, Message


def _param(name: str, description: str, enum=None, type_=str) -> OpenApiParameter:
    return OpenApiParameter(name, type_, OpenApiParameter.QUERY, description=description, enum=enum)


ORGANIZATION = _param("organization", "Only this organization (its short name, such as ORG2).")


DATE_RANGE = [
    _param("since", "Only from this day on (YYYY-MM-DD).", type_=OpenApiTypes.DATE),
    _param("until", "Only up to this day, included (YYYY-MM-DD).", type_=OpenApiTypes.DATE),
]


def filtered(request, form_class, queryset, **renamed):
    """The queryset narrowed by a console.filters form read from the query string (the
    console's list pages use the same forms); a value that is not valid answers 400 with the
    form's errors. `renamed` maps a form field to the API's name for it."""
    names = {name: renamed.get(name, name) for name in form_class.base_fields}
    for name in names.values():
        query_param(request, name)  # refuses a NUL character
    data = {
        name: request.query_params[api]
        for name, api in names.items()
        if api in request.query_params
    }
    form = form_class(data)
    if not form.is_valid():
        errors = {names.get(name, name): messages for name, messages in form.error_text().items()}
        raise exceptions.ValidationError(errors)
    return form.apply(queryset)


def query_param(request, name: str) -> str:
    value = request.query_params.get(name, "")
    if "\x00" in value:
        raise exceptions.ValidationError({name: "Null characters are not allowed."})
    return value


class OrganizationScoped:
    """Restricts the queryset to the user's organizations and checks writes.

    `organization_field` leads from the model to its organization.
    """

    permission_classes = [OrganizationAccess]
    organization_field = "organization"

    def get_queryset(self):
        queryset = permissions.restrict(
            self.base_queryset(), self.request.user, self.organization_field
        )
        name = query_param(self.request, "organization")
        if name:
            queryset = queryset.filter(**{f"{self.organization_field}__name": name})
        return self.filter_queryset_params(queryset)

    def base_queryset(self):
        return self.queryset.all()

    def filter_queryset_params(self, queryset):
        return queryset

    def organization_of(self, obj) -> int:
        value = obj
        for part in self.organization_field.split("__"):
            value = getattr(value, part)
        return value.pk

    def check_can_administer(self, organization_id: int) -> None:
        if not permissions.can_administer(self.request.user, organization_id):
            raise exceptions.PermissionDenied(OrganizationAccess.message)

    def perform_destroy(self, instance):
        try:
            instance.delete()
        except ProtectedError as exc:
            raise Conflict409(
                f"{instance} is still in use by {len(exc.protected_objects)} object(s); "
                "remove those first (or disable it instead)."
            ) from None


class Conflict409(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object is still in use."
    default_code = "conflict"


class ServiceUnavailable503(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The task queue (broker) does not answer."
    default_code = "broker_unavailable"


@extend_schema_view(list=extend_schema(parameters=[ORGANIZATION]))
class OrganizationViewSet(
    AddressBookAction, ExplainAction, HistoryAction, OrganizationScoped, viewsets.ModelViewSet
):
    """Organizations: administrators change their Server Type; administrators of the whole
    installation create and delete them."""

    queryset = Organization.objects.all()
    serializer_class = s.OrganizationSerializer
    organization_field = "pk"
    lookup_field = "name"
    lookup_value_regex = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"

    def get_queryset(self):
        queryset = permissions.visible_organizations(self.request.user)
        name = query_param(self.request, "organization")
        return queryset.filter(name=name) if name else queryset

    def organization_of(self, obj) -> int:
        return obj.pk

    def perform_create(self, serializer):
        if not permissions.is_installation_administrator(self.request.user):
            raise exceptions.PermissionDenied("Only installation administrators add organizations.")
        serializer.save()

    def perform_destroy(self, instance):
        if not permissions.is_installation_administrator(self.request.user):
            raise exceptions.PermissionDenied("Only installation administrators remove them.")
        super().perform_destroy(instance)

    @extend_schema(request=s.OrganizationSetupSerializer, responses={201: s.PairingSerializer})
    @action(detail=False, methods=["post"], url_path="setup")
    def setup_organization(self, request):
        """Add an organization with its site, containers, services and signing key at once;
        the answer is its pairing information (agent addresses, public key, fingerprint)."""
        if not permissions.is_installation_administrator(request.user):
            raise exceptions.PermissionDenied(
                "Only administrators of the whole installation add organizations."
            )
        serializer = s.OrganizationSetupSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        made = serializer.save()
        return Response(s.PairingSerializer(made).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=s.PairingSerializer)
    @action(detail=True, methods=["get"])
    def pairing(self, request, name=None):
        """What the other installation's administrator needs: agent addresses, public key
        and its fingerprint (as `manage.py keys show ORG` prints them)."""
        return Response(s.PairingSerializer(setup.pairing(self.get_object())).data)

    @extend_schema(responses=s.StatusSerializer)
    @action(detail=True, methods=["get"])
    def status(self, request, name=None):
        """The dashboard line of one organization."""
        organization = self.get_object()
        return Response(s.StatusSerializer(dashboard.organization_status(organization)).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("window", OpenApiTypes.STR, enum=list(activity.WINDOWS)),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    @action(detail=True, methods=["get"])
    def activity(self, request, name=None):
        """The dashboard's history of one organization (console.activity): per hour of the
        last 24 hours (window=24h, the default) or per day of the last 30 days (window=30d)."""
        organization = self.get_object()
        try:
            window = activity.window_of(request.query_params.get("window"))
        except activity.BadWindow as error:
            raise exceptions.ValidationError({"window": [str(error)]}) from error
        return Response(activity.history([organization], window))

    def _directory(self, organization) -> LdapDirectory:
        directory = LdapDirectory.objects.filter(organization=organization).first()
        directory = directory or LdapDirectory(organization=organization)
        directory.organization = organization
        return directory

    @extend_schema(methods=["GET"], responses=s.DirectorySettingsSerializer)
    @extend_schema(
        methods=["PUT", "PATCH"],
        request=s.DirectorySettingsSerializer,
        responses=s.DirectorySettingsSerializer,
    )
    @action(detail=True, methods=["get", "put", "patch"], url_path="directory")
    def directory(self, request, name=None):
        """The Directory Service page: built-in or LDAP, the LDAP server's settings (the
        password is never returned) and its state."""
        directory = self._directory(self.get_object())
        if request.method == "GET":
            return Response(s.DirectorySettingsSerializer(directory).data)
        serializer = s.DirectorySettingsSerializer(
            directory, data=request.data, partial=request.method == "PATCH"
        )
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response(serializer.data)

    @extend_schema(request=None, responses=s.ConnectionCheckSerializer)
    @action(detail=True, methods=["post"], url_path="directory/test")
    def test_directory(self, request, name=None):
        """Test connection: bind to the stored LDAP server and count the recipients under its
        base DN (ok is false, with the reason, when that fails)."""
        directory = self._directory(self.get_object())
        if directory.pk is None:
            result = directory_settings.ConnectionCheck(
                False, f"{directory.organization.name} has no LDAP server settings."
            )
        else:
            result = directory_settings.try_connection(directory)
        return Response(s.ConnectionCheckSerializer(result).data)


class StatusViewSet(viewsets.ViewSet):
    """The dashboard: state, runs, USN lag and recent errors of every organization you see."""

    permission_classes = [OrganizationAccess]

    @extend_schema(responses=s.StatusSerializer(many=True))
    def list(self, request):
        organizations = permissions.visible_organizations(request.user)
        return Response(s.StatusSerializer(dashboard.all_statuses(organizations), many=True).data)


@extend_schema_view(
    list=extend_schema(
        parameters=[ORGANIZATION, _param("site", "Only containers of this site (its name).")]
    )
)
class ContainerViewSet(OrganizationScoped, viewsets.ModelViewSet):
    """Containers. Renaming or moving one (PATCH name, parent) takes everything inside with it;
    the next export sends what that takes into or out of the export scope. An LDAP
    organization's containers are its organizational units: change them in LDAP."""

    queryset = Container.objects.select_related("organization", "site")
    serializer_class = s.ContainerSerializer

    def filter_queryset_params(self, queryset):
        site = query_param(self.request, "site")
        return queryset.filter(site__name=site) if site else queryset

    def perform_create(self, serializer):
        site = serializer.validated_data["site"]
        self.check_can_administer(site.organization_id)
        self._refuse_ldap(site.organization)
        serializer.save()

    def perform_update(self, serializer):
        site = serializer.validated_data.get("site", serializer.instance.site)
        self.check_can_administer(site.organization_id)
        self.check_can_administer(serializer.instance.organization_id)
        self._refuse_ldap(serializer.instance.organization)
        serializer.save()

    def perform_destroy(self, instance):
        self._refuse_ldap(instance.organization)
        try:
            setup.delete_container(instance)
        except setup.InUse as exc:
            raise Conflict409(exc.messages[0]) from None

    def _refuse_ldap(self, organization) -> None:
        if organization.uses_ldap:
            raise exceptions.PermissionDenied(
                f"The containers of {organization.name} are the organizational units of its "
                "LDAP server: add, rename and move them there."
            )


@extend_schema_view(list=extend_schema(parameters=[ORGANIZATION]))
class SiteViewSet(OrganizationScoped, viewsets.ModelViewSet):
    """Sites. Renaming one (PATCH name) renames the DNs of its containers; a site is deleted
    only once it holds no container (409 otherwise). Organization administrators only."""

    queryset = Site.objects.select_related("organization").order_by("organization__name", "name")
    serializer_class = s.SiteSerializer

    def perform_create(self, serializer):
        organization = serializer.validated_data["organization"]
        self.check_can_administer(organization.pk)
        self._refuse_ldap(organization)
        serializer.save()

    def perform_update(self, serializer):
        self.check_can_administer(serializer.instance.organization_id)
        self._refuse_ldap(serializer.instance.organization)
        serializer.save()

    def perform_destroy(self, instance):
        self.check_can_administer(instance.organization_id)
        self._refuse_ldap(instance.organization)
        try:
            setup.delete_site(instance)
        except setup.InUse as exc:
            raise Conflict409(exc.messages[0]) from None

    def _refuse_ldap(self, organization) -> None:
        if organization.uses_ldap:
            raise exceptions.PermissionDenied(
                f"The sites of {organization.name} hold its LDAP server's organizational units: "
                "change them there."
            )


@extend_schema_view(
    list=extend_schema(
        parameters=[
            ORGANIZATION,
            _param("container", "Only recipients of this container (its id).", type_=int),
            _param("imported", "true: imported contacts only; false: own recipients only."),
            _param("search", "Part of the display name, alias or primary SMTP address."),
            _param("kind", "Only recipients of this kind.", Kind.values),
            _param(
                "origin",
                "own: the organization's own recipients; else the short name of the "
                "organization imported contacts come from.",
            ),
        ]
    )
)
class RecipientViewSet(RecipientHistoryAction, OrganizationScoped, viewsets.ModelViewSet):
    """Recipients. Imported contacts are kept by the requestor's import: they are read-only."""

    queryset = Recipient.objects.select_related("organization").prefetch_related("members")
    serializer_class = s.RecipientSerializer

    def filter_queryset_params(self, queryset):
        container = query_param(self.request, "container")
        if container:
            if not container.isdigit() or len(container) > 18:
                raise exceptions.ValidationError({"container": "Give a container id."})
            queryset = queryset.filter(container_id=int(container))
        imported = query_param(self.request, "imported").lower()
        if imported in ("true", "false"):
            queryset = queryset.filter(global_key__isnull=imported == "false")
        search = query_param(self.request, "search")
        if search:
            queryset = queryset.filter(
                Q(display_name__icontains=search)
                | Q(alias__icontains=search)
                | Q(primary_smtp__icontains=search)
            )
        kind = query_param(self.request, "kind")
        if kind:
            if kind not in Kind.values:
                raise exceptions.ValidationError({"kind": f"Give one of {', '.join(Kind.values)}."})
            queryset = queryset.filter(kind=kind)
        origin = query_param(self.request, "origin")
        if origin.lower() == ORIGIN_OWN:
            queryset = queryset.filter(global_key__isnull=True)
        elif origin:
            queryset = queryset.filter(origin_organization__iexact=origin)
        return queryset.order_by("display_name", "pk")

    def perform_create(self, serializer):
        container = serializer.validated_data["container"]
        self.check_can_administer(container.organization_id)
        self._refuse_ldap(container.organization)
        serializer.save()

    def perform_update(self, serializer):
        recipient = serializer.instance
        self._refuse_imported(recipient)
        self.check_can_administer(
            serializer.validated_data.get("container", recipient.container).organization_id
        )
        if recipient.organization.uses_ldap and _changed(recipient, serializer.validated_data):
            self._refuse_ldap(recipient.organization)
        serializer.save()

    def perform_destroy(self, instance):
        self._refuse_imported(instance)
        self._refuse_ldap(instance.organization)
        changes.delete_recipients([instance])

    def _refuse_ldap(self, organization) -> None:
        """An LDAP organization's recipients mirror its server: only their trust level and
        hidden flag, which LDAP has no attributes for, are changed here."""
        if organization.uses_ldap:
            raise exceptions.PermissionDenied(
                f"The recipients of {organization.name} live in its LDAP server: change them "
                "with your LDAP tools (only the trust level and the hidden flag are set here)."
            )

    def _refuse_imported(self, recipient) -> None:
        if recipient.is_imported:
            raise exceptions.PermissionDenied(
                "Imported contacts are kept by the requestor's import; change them in their "
                f"origin organization ({recipient.origin_organization})."
            )


def _changed(recipient, validated: dict) -> set[str]:
    """The fields other than the trust level and the hidden flag (kept beside an LDAP entry, in
    the mirror) whose value the request changes."""
    changed = set()
    for name, value in validated.items():
        if name in ("trust_level", "hidden_from_others"):
            continue
        if name == "members":
            if {m.pk for m in value} != set(recipient.members.values_list("pk", flat=True)):
                changed.add(name)
        elif getattr(recipient, name) != value:
            changed.add(name)
    return changed


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
    serializer_class = s.RunSerializer
    organization_field = "config__organization"

    def filter_queryset_params(self, queryset):
        return filtered(self.request, RunFilter, queryset)


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
    serializer_class = s.MessageSerializer

    def filter_queryset_params(self, queryset):
        return filtered(self.request, MessageFilter, queryset, q="search")


@extend_schema_view(list=extend_schema(parameters=[ORGANIZATION]))
class ConflictViewSet(OrganizationScoped, viewsets.ReadOnlyModelViewSet):
    queryset = Conflict.objects.select_related("config__organization")
    serializer_class = s.ConflictSerializer
    organization_field = "config__organization"


ACTION_RESPONSES = {202: s.ActionResultSerializer}
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
    serializer_class = s.RequestorConfigSerializer

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
        body = s.ActionResultSerializer(outcome, context={"url": url}).data
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


@extend_schema_view(list=extend_schema(parameters=[ORGANIZATION]))
class ExportedContainerViewSet(OrganizationScoped, viewsets.ModelViewSet):
    queryset = ExportedContainer.objects.select_related(
        "container", "config__organization"
    ).order_by("config__organization__name", "container__dn")
    serializer_class = s.ExportedContainerSerializer
    organization_field = "config__organization"

    def perform_create(self, serializer):
        self.check_can_administer(serializer.validated_data["config"].organization_id)
        serializer.save()

    def perform_update(self, serializer):
        config = serializer.validated_data.get("config", serializer.instance.config)
        self.check_can_administer(config.organization_id)
        serializer.save()


@extend_schema_view(list=extend_schema(parameters=[ORGANIZATION]))
class MasterConfigViewSet(OrganizationScoped, viewsets.ModelViewSet):
    """The master of an organization (Master Configuration) with its requestors' state."""

    queryset = (
        MasterConfig.objects.select_related("organization")
        .prefetch_related("requestors__master__organization")
        .order_by("organization__name")
    )
    serializer_class = s.MasterConfigSerializer

    def perform_create(self, serializer):
        self.check_can_administer(serializer.validated_data["organization"].pk)
        serializer.save()


@extend_schema_view(list=extend_schema(parameters=[ORGANIZATION]))
class AllowedRequestorViewSet(OrganizationScoped, viewsets.ModelViewSet):
    """The master's requestor allowlist (addresses and keys), and what it knows of each."""

    queryset = AllowedRequestor.objects.select_related("master__organization")
    serializer_class = s.AllowedRequestorSerializer
    organization_field = "master__organization"

    def perform_create(self, serializer):
        self.check_can_administer(serializer.validated_data["master"].organization_id)
        serializer.save()

    @extend_schema(request=s.QuarantineSerializer, responses=s.AllowedRequestorSerializer)
    @action(detail=True, methods=["post"])
    def quarantine(self, request, pk=None):
        """Quarantine this requestor: its exports are kept, not applied, until released."""
        requestor = self.get_object()
        self.check_can_administer(requestor.master.organization_id)
        form = s.QuarantineSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        reason = " ".join(form.validated_data.get("reason", "").split()) or "Quarantined by hand."
        quarantine.quarantine(requestor, reason, request.user)
        return Response(s.AllowedRequestorSerializer(self.get_object()).data)

    @extend_schema(request=None, responses=s.AllowedRequestorSerializer)
    @action(detail=True, methods=["post"])
    def release(self, request, pk=None):
        """Release this requestor: what waited is applied in order."""
        requestor = self.get_object()
        self.check_can_administer(requestor.master.organization_id)
        try:
            quarantine.release(requestor)
        except quarantine.QuarantineError as exc:
            raise Conflict409(str(exc)) from None
        return Response(s.AllowedRequestorSerializer(self.get_object()).data)


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
    serializer_class = s.HoldSerializer

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
        return Response(s.HoldSerializer(self.get_object()).data)

    @extend_schema(request=None, responses=s.HoldSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        """Apply the held batch as it would have been, then what waited behind it, in order."""
        return self._decide(holds.approve)

    @extend_schema(request=None, responses=s.HoldSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        """Discard the held batch and what waited behind it."""
        return self._decide(holds.reject)
