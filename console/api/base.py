"""What the API's resources share. Lists only hold the user's organizations; objects of other
organizations answer 404; an operator's change answers 403. Writable serializers validate
through the models' own full_clean(), so the API gives the same messages as the console (and
never trips a database constraint)."""

import copy

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ProtectedError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, serializers, status

from console import permissions
from console.api.permissions import OrganizationAccess
from directory.models import Organization


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
