"""Containers: each inside a parent container or at the top of its site."""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, serializers, viewsets

from console.api.base import (
    ORGANIZATION,
    CleanedModelSerializer,
    Conflict409,
    OrganizationScoped,
    VisibleRelatedField,
    _param,
    query_param,
)
from directory import setup
from directory.models import Container, Site


class ContainerSerializer(CleanedModelSerializer):
    """A container. Create one with its site (id) and name, inside `parent` or at the top of
    the site; change `name` or `parent` (or `site`, for a container at the top) to rename or
    move it with everything inside it. A container stays in its organization: a site or parent
    of another one is refused (400)."""

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
    serializer_class = ContainerSerializer

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
