"""Sites of an organization (/o=ORG/ou=NAME)."""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, serializers, viewsets

from console.api.base import (
    ORGANIZATION,
    CleanedModelSerializer,
    Conflict409,
    OrganizationNameField,
    OrganizationScoped,
)
from directory import setup
from directory.models import Site


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


@extend_schema_view(list=extend_schema(parameters=[ORGANIZATION]))
class SiteViewSet(OrganizationScoped, viewsets.ModelViewSet):
    """Sites. Renaming one (PATCH name) renames the DNs of its containers; a site is deleted
    only once it holds no container (409 otherwise). Organization administrators only."""

    queryset = Site.objects.select_related("organization").order_by("organization__name", "name")
    serializer_class = SiteSerializer

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
