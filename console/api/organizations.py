"""Organizations: their Server Type, setup and pairing, status and activity, and directory
service (built-in or LDAP)."""

import copy

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from console import activity, directory_settings, permissions
from console import status as dashboard
from console.api.asof import AddressBookAction
from console.api.base import ORGANIZATION, OrganizationScoped, drf_error, query_param
from console.api.explain import ExplainAction
from console.api.history import HistoryAction
from console.api.status import LdapStateSerializer, StatusSerializer
from directory import setup
from directory.constants import Backend, Role
from directory.models import LdapDirectory, Organization


class OrganizationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Organization
        fields = ["id", "name", "display_name", "role", "mail_domain", "directory_backend", "usn"]
        # The directory is chosen with its settings (organizations/{name}/directory/).
        read_only_fields = ["usn", "directory_backend"]

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list | tuple):
            fields["name"].read_only = True
        return fields


class DirectorySettingsSerializer(serializers.ModelSerializer):
    """Where an organization's recipients live and how to reach its LDAP server, with the
    server's state. The password is write-only: omitted, the stored one is kept; empty, it is
    removed (anonymous bind)."""

    directory_backend = serializers.ChoiceField(
        choices=Backend.choices,
        source="organization.directory_backend",
        required=False,
        help_text="builtin, ldap (an LDAP server read before every export) or ad (Active "
        "Directory, read by its update sequence numbers).",
    )
    has_password = serializers.SerializerMethodField()
    state = serializers.SerializerMethodField()

    class Meta:
        model = LdapDirectory
        fields = [
            "directory_backend",
            "uri",
            "start_tls",
            "ca_file",
            "bind_dn",
            "password",
            "has_password",
            "base_dn",
            "timeout",
            "unit_dns",
            "disabled_accounts",
            "hidden_entries",
            "address_book_only",
            "state",
        ]
        extra_kwargs = {
            "password": {"write_only": True, "required": False, "trim_whitespace": False},
            "uri": {"required": False, "allow_blank": True},
            "base_dn": {"required": False, "allow_blank": True},
        }
        validators = []

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_has_password(self, directory) -> bool:
        return bool(directory.password)

    @extend_schema_field(LdapStateSerializer(allow_null=True))
    def get_state(self, directory):
        return LdapStateSerializer(directory).data if directory.pk else None

    def validate(self, attrs):
        organization = self.instance.organization
        backend = attrs.pop("organization", {}).get(
            "directory_backend", organization.directory_backend
        )
        candidate = copy.copy(self.instance)
        for name, value in attrs.items():
            setattr(candidate, name, value)
        if directory_settings.keeps_settings(candidate, backend):
            try:
                directory_settings.validate(candidate, backend)
            except DjangoValidationError as exc:
                raise drf_error(exc) from None
        return {"backend": backend, "directory": candidate}

    def update(self, instance, validated_data):
        directory = validated_data["directory"]
        directory_settings.save(instance.organization, validated_data["backend"], directory)
        return directory


class ConnectionCheckSerializer(serializers.Serializer):
    """What Test connection found; the domain controller's fields for Active Directory only."""

    ok = serializers.BooleanField()
    detail = serializers.CharField()
    recipients = serializers.IntegerField(allow_null=True)
    # Active Directory only (left out otherwise): the domain controller that answered.
    dc_host = serializers.CharField(required=False, help_text="Its dnsHostName.")
    dc_service_name = serializers.CharField(
        required=False, help_text="Its dsServiceName (NTDS Settings DN)."
    )
    highest_usn = serializers.IntegerField(required=False, help_text="Its highestCommittedUSN.")
    show_deleted = serializers.BooleanField(
        required=False, help_text="Whether it supports the Show Deleted control."
    )
    dirsync = serializers.BooleanField(
        required=False, help_text="Whether it supports the DirSync control."
    )

    def to_representation(self, instance):
        data = super().to_representation(instance)
        always = {"ok", "detail", "recipients"}
        return {name: value for name, value in data.items() if value is not None or name in always}


class NamesField(serializers.ListField):
    """A list of names, or one text with a name per line (as the console's form takes them)."""

    def to_internal_value(self, data):
        return super().to_internal_value([data] if isinstance(data, str) else data)


class OrganizationSetupSerializer(serializers.Serializer):
    """A new organization with its site, containers, services and signing key, made at once by
    directory.setup.create_organization (the console's New organization page)."""

    name = serializers.CharField(max_length=64)
    display_name = serializers.CharField(max_length=256, required=False, allow_blank=True)
    mail_domain = serializers.CharField(max_length=253)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.REQUESTOR)
    site = serializers.CharField(max_length=64, default=setup.DEFAULT_SITE)
    containers = NamesField(
        child=serializers.CharField(max_length=1024),
        default=list(setup.DEFAULT_CONTAINERS),
        help_text="Container names (a list, or one per line); a requestor imports into the "
        "last one by default.",
    )
    requestor_address = serializers.CharField(max_length=256, required=False, allow_blank=True)
    requestor_dn = serializers.CharField(max_length=1024, required=False, allow_blank=True)
    master_address = serializers.CharField(max_length=1024, required=False, allow_blank=True)
    master_public_key = serializers.CharField(max_length=64, required=False, allow_blank=True)
    import_container = serializers.CharField(max_length=64, required=False, allow_blank=True)
    master_agent_address = serializers.CharField(max_length=256, required=False, allow_blank=True)
    master_dn = serializers.CharField(max_length=1024, required=False, allow_blank=True)

    def create(self, validated_data):
        try:
            return setup.create_organization(**validated_data)
        except DjangoValidationError as exc:
            raise drf_error(exc) from None


class AgentSerializer(serializers.Serializer):
    service = serializers.CharField()
    address = serializers.CharField()


class PairingSerializer(serializers.Serializer):
    """What the other installation's administrator needs: the agents' addresses and the
    organization's public key with its SHA-256 fingerprint."""

    organization = serializers.CharField(source="organization.name")
    agents = AgentSerializer(many=True)
    public_key = serializers.CharField()
    fingerprint = serializers.CharField()


@extend_schema_view(list=extend_schema(parameters=[ORGANIZATION]))
class OrganizationViewSet(
    AddressBookAction, ExplainAction, HistoryAction, OrganizationScoped, viewsets.ModelViewSet
):
    """Organizations: administrators change their Server Type; administrators of the whole
    installation create and delete them."""

    queryset = Organization.objects.all()
    serializer_class = OrganizationSerializer
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

    @extend_schema(request=OrganizationSetupSerializer, responses={201: PairingSerializer})
    @action(detail=False, methods=["post"], url_path="setup")
    def setup_organization(self, request):
        """Add an organization with its site, containers, services and signing key at once;
        the answer is its pairing information (agent addresses, public key, fingerprint)."""
        if not permissions.is_installation_administrator(request.user):
            raise exceptions.PermissionDenied(
                "Only administrators of the whole installation add organizations."
            )
        serializer = OrganizationSetupSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        made = serializer.save()
        return Response(PairingSerializer(made).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=PairingSerializer)
    @action(detail=True, methods=["get"])
    def pairing(self, request, name=None):
        """What the other installation's administrator needs: agent addresses, public key
        and its fingerprint (as `manage.py keys show ORG` prints them)."""
        return Response(PairingSerializer(setup.pairing(self.get_object())).data)

    @extend_schema(responses=StatusSerializer)
    @action(detail=True, methods=["get"])
    def status(self, request, name=None):
        """The dashboard line of one organization."""
        organization = self.get_object()
        return Response(StatusSerializer(dashboard.organization_status(organization)).data)

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

    @extend_schema(methods=["GET"], responses=DirectorySettingsSerializer)
    @extend_schema(
        methods=["PUT", "PATCH"],
        request=DirectorySettingsSerializer,
        responses=DirectorySettingsSerializer,
    )
    @action(detail=True, methods=["get", "put", "patch"], url_path="directory")
    def directory(self, request, name=None):
        """The Directory Service page: built-in or LDAP, the LDAP server's settings (the
        password is never returned) and its state."""
        directory = self._directory(self.get_object())
        if request.method == "GET":
            return Response(DirectorySettingsSerializer(directory).data)
        serializer = DirectorySettingsSerializer(
            directory, data=request.data, partial=request.method == "PATCH"
        )
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response(serializer.data)

    @extend_schema(request=None, responses=ConnectionCheckSerializer)
    @action(detail=True, methods=["post"], url_path="directory/test")
    def test_directory(self, request, name=None):
        """Test connection: bind to the stored LDAP server and count the recipients under its
        base DN (ok is false, with the reason, when that fails); for Active Directory, also the
        domain controller's identity, highest committed USN and supported controls."""
        organization = self.get_object()
        directory = self._directory(organization)
        if directory.pk is None:
            result = directory_settings.ConnectionCheck(
                False, f"{directory.organization.name} has no LDAP server settings."
            )
        else:
            result = directory_settings.try_connection(directory, organization.directory_backend)
        return Response(ConnectionCheckSerializer(result).data)
