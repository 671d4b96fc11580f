"""JSON shapes of the API. Writable serializers validate through the models' own full_clean(),
so the API gives the same messages as the console (and never trips a database constraint)."""

import copy

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from console import directory_settings, permissions
from directory import changes, setup
from directory.constants import CUSTOM_ATTRIBUTE_COUNT, GENERAL_ATTRIBUTES, Backend, Role
from directory.models import Container, LdapDirectory, Organization, Recipient, Site
from master.models import AllowedRequestor, MasterConfig
from requestor.models import Conflict, ExportedContainer, RequestorConfig, Run
from transport.models import Hold, Message
from transport.signing import fingerprint


def drf_error(exc: DjangoValidationError) -> serializers.ValidationError:
    """Django's validation errors field by field, as DRF reports them."""
    if hasattr(exc, "error_dict"):
        errors = {
            ("non_field_errors" if field == "__all__" else field): messages
            for field, messages in exc.message_dict.items()
        }
        return serializers.ValidationError(errors)
    return serializers.ValidationError({"non_field_errors": exc.messages})


def model_clean(instance, exclude=()) -> None:
    """Run the model's validation; report its errors field by field, as DRF does."""
    try:
        instance.full_clean(exclude=list(exclude))
    except DjangoValidationError as exc:
        raise drf_error(exc) from None


class CleanedModelSerializer(serializers.ModelSerializer):
    """Validates a copy of the instance with the new values through the model's full_clean()."""

    clean_exclude: tuple[str, ...] = ()

    def validate(self, attrs):
        attrs = super().validate(attrs)
        candidate = copy.copy(self.instance) if self.instance else self.Meta.model()
        many = {f.name for f in self.Meta.model._meta.many_to_many}
        for name, value in attrs.items():
            if name not in many:
                setattr(candidate, name, value)
        model_clean(candidate, exclude=(*many, *self.clean_exclude))
        # Keep what the model's clean() derived (a custom recipient's target address).
        for name, field in self.fields.items():
            model_field = getattr(field, "source", name)
            if not field.read_only and model_field in self._plain_fields():
                attrs[model_field] = getattr(candidate, model_field)
        return attrs

    def _plain_fields(self) -> set[str]:
        return {
            f.name
            for f in self.Meta.model._meta.concrete_fields
            if not f.is_relation and f.editable
        }


def _user(serializer):
    request = serializer.context.get("request")
    return request.user if request else None


class VisibleRelatedField(serializers.PrimaryKeyRelatedField):
    """A related object of an organization the requesting user may see (others do not exist)."""

    def __init__(self, model=None, organization_path="organization", **kwargs):
        self.model = model
        self.organization_path = organization_path
        if not kwargs.get("read_only"):
            kwargs.setdefault("queryset", model.objects.all())
        super().__init__(**kwargs)

    def get_queryset(self):
        return permissions.restrict(
            self.model.objects.all(), _user(self), field=self.organization_path
        )


class OrganizationNameField(serializers.SlugRelatedField):
    def __init__(self, **kwargs):
        if not kwargs.get("read_only"):
            kwargs.setdefault("queryset", Organization.objects.all())
        super().__init__(slug_field="name", **kwargs)

    def get_queryset(self):
        return permissions.visible_organizations(_user(self))


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
        ]
        read_only_fields = fields


class DirectorySettingsSerializer(serializers.ModelSerializer):
    """Where an organization's recipients live and how to reach its LDAP server, with the
    server's state. The password is write-only: omitted, the stored one is kept; empty, it is
    removed (anonymous bind)."""

    directory_backend = serializers.ChoiceField(
        choices=Backend.choices,
        source="organization.directory_backend",
        required=False,
        help_text="builtin, or ldap (an LDAP server read before every export).",
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
    ok = serializers.BooleanField()
    detail = serializers.CharField()
    recipients = serializers.IntegerField(allow_null=True)


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


class RunSerializer(serializers.ModelSerializer):
    organization = serializers.CharField(source="config.organization.name", read_only=True)
    requested_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Run
        fields = [
            "id",
            "organization",
            "trigger",
            "requested_by",
            "status",
            "batch",
            "full_export",
            "action",
            "full_reply",
            "started_at",
            "finished_at",
            "parts_sent",
            "exported",
            "export_through",
            "acknowledged",
            "reply_parts",
            "reply_parts_applied",
            "imported",
            "updated",
            "deleted",
            "conflicts",
            "error",
            "attempts",
            "repair",
            "verification",
        ]
        read_only_fields = fields


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
    master_current_usn = serializers.SerializerMethodField()
    requestors = RequestorViewSerializer(many=True)
    held = serializers.IntegerField(
        help_text="Batches held for this organization's administrators."
    )
    ldap = LdapStateSerializer(allow_null=True, help_text="The LDAP directory's state (or null).")

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_master_current_usn(self, status):
        return status.master.usn if status.master else None


class SiteSerializer(CleanedModelSerializer):
    """A site (/o=ORG/ou=NAME). Create one with its organization and name; change `name` to
    rename it (its containers' DNs follow); delete it once it holds no container."""

    organization = OrganizationNameField()
    dn = serializers.CharField(read_only=True)
    containers = serializers.IntegerField(source="containers.count", read_only=True)

    class Meta:
        model = Site
        fields = ["id", "organization", "name", "dn", "containers"]
        validators = []

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list | tuple):
            fields["organization"].read_only = True  # a site stays in its organization
        return fields

    def create(self, validated_data):
        return setup.create_site(validated_data["organization"], validated_data["name"])

    def update(self, instance, validated_data):
        return setup.rename_site(instance, validated_data.get("name", instance.name))


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


class ContainerSerializer(CleanedModelSerializer):
    """A container. Create one with its site (id) and name, inside `parent` or at the top of
    the site; change `name` or `parent` (or `site`, for a container at the top) to rename or
    move it with everything inside it."""

    organization = serializers.CharField(source="organization.name", read_only=True)
    site = VisibleRelatedField(Site, organization_path="organization")
    site_name = serializers.CharField(source="site.name", read_only=True)
    parent = VisibleRelatedField(Container, allow_null=True, required=False)

    class Meta:
        model = Container
        fields = ["id", "organization", "site", "site_name", "parent", "name", "dn"]
        read_only_fields = ["dn"]
        validators = []

    def create(self, validated_data):
        return setup.create_container(
            validated_data["site"], validated_data["name"], validated_data.get("parent")
        )

    def update(self, instance, validated_data):
        for name, value in validated_data.items():
            setattr(instance, name, value)
        return setup.move_container(instance)


CUSTOM_FIELDS = [f"custom_attribute_{n}" for n in range(1, CUSTOM_ATTRIBUTE_COUNT + 1)]


class RecipientSerializer(CleanedModelSerializer):
    organization = serializers.CharField(source="organization.name", read_only=True)
    container = VisibleRelatedField(Container)
    members = VisibleRelatedField(Recipient, many=True, required=False)
    imported = serializers.BooleanField(source="is_imported", read_only=True)

    class Meta:
        model = Recipient
        fields = [
            "id",
            "organization",
            "container",
            "guid",
            "kind",
            *GENERAL_ATTRIBUTES,
            "target_address",
            "trust_level",
            "hidden_from_others",
            *CUSTOM_FIELDS,
            "members",
            "imported",
            "origin_organization",
            "global_key",
            "master_usn",
            "usn",
            "created_at",
            "changed_at",
        ]
        read_only_fields = [
            "guid",
            "origin_organization",
            "global_key",
            "master_usn",
            "usn",
            "created_at",
            "changed_at",
        ]
        # The models' own constraints are checked by full_clean() in validate().
        validators = []

    def validate(self, attrs):
        attrs = super().validate(attrs)
        container = attrs.get("container") or (self.instance and self.instance.container)
        members = attrs.get("members") or []
        if any(m.organization_id != container.organization_id for m in members):
            raise serializers.ValidationError(
                {"members": "Members must be recipients of the same organization."}
            )
        return attrs

    def create(self, validated_data):
        members = validated_data.pop("members", None)
        recipient = changes.save_recipient(Recipient(**validated_data))
        if members is not None:
            recipient.members.set(members)
        return recipient

    def update(self, instance, validated_data):
        members = validated_data.pop("members", None)
        for name, value in validated_data.items():
            setattr(instance, name, value)
        changes.save_recipient(instance)
        if members is not None:
            instance.members.set(members)
        return instance


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
        if hold.decision != Hold.Decision.PENDING:
            return 0
        from transport.holds import held_messages

        return held_messages(hold.organization_id, hold.sender).count()


class QuarantineSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True)


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
