"""Recipients: an organization's own (writable) and its imported contacts (read-only)."""

from django.db.models import Q
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, serializers, viewsets

from console.api.base import (
    ORGANIZATION,
    CleanedModelSerializer,
    OrganizationScoped,
    VisibleRelatedField,
    _param,
    query_param,
)
from console.api.history import RecipientHistoryAction
from console.filters import ORIGIN_OWN
from directory import changes
from directory.constants import CUSTOM_ATTRIBUTE_COUNT, GENERAL_ATTRIBUTES, Kind
from directory.models import Container, Recipient

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
    serializer_class = RecipientSerializer

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
