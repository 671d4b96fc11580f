"""GET /api/v1/organizations/{name}/explain/?q=…: why an entry is, or is not, in an
organization's address book (console.explain), for whoever may read that organization."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from console import explain, permissions


class ExplainLinkSerializer(serializers.Serializer):
    label = serializers.CharField()
    href = serializers.CharField(help_text="The console page of the related object.")


class ExplainStepSerializer(serializers.Serializer):
    step = serializers.CharField(
        help_text="entry, origin, scope, master, requestor, import, conflict or contact."
    )
    title = serializers.CharField()
    status = serializers.CharField(
        help_text="ok; info; waiting (a next cycle brings it); blocks (keeps it out, or removes "
        "it at the next cycle); unknown (in another installation); not_shown (you cannot read "
        "the organization it is about)."
    )
    found = serializers.CharField()
    fix = serializers.CharField(allow_blank=True, help_text="What to change to make it sync.")
    links = ExplainLinkSerializer(many=True)
    facts = serializers.DictField(help_text="What the step found, as values.")


class ExplainVerdictSerializer(serializers.Serializer):
    kind = serializers.CharField(
        help_text="here; leaving (here until the next cycle removes it); next_cycle (arrives "
        "with the next cycle); not_here."
    )
    text = serializers.CharField()
    reason = serializers.CharField(allow_blank=True)
    fix = serializers.CharField(allow_blank=True)
    step = serializers.CharField(allow_blank=True, help_text="The step that decided it.")


class ExplainMatchSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="Global key: origin organization and source GUID.")
    origin = serializers.CharField()
    display_name = serializers.CharField(allow_blank=True)
    address = serializers.CharField(allow_blank=True)
    found_in = serializers.ListField(child=serializers.CharField())


class ExplainTraceSerializer(serializers.Serializer):
    match = ExplainMatchSerializer()
    steps = ExplainStepSerializer(many=True)
    verdict = ExplainVerdictSerializer()


class ExplanationSerializer(serializers.Serializer):
    organization = serializers.CharField()
    query = serializers.CharField()
    searched = serializers.ListField(child=serializers.CharField())
    more = serializers.BooleanField(help_text="More matches than listed: narrow the question.")
    matches = ExplainMatchSerializer(many=True)
    traces = ExplainTraceSerializer(
        many=True,
        help_text=f"One per match when there are at most {explain.EXPLAINED}; none when there "
        "are more (ask again by one of the matches' keys).",
    )


QUERY = OpenApiParameter(
    "q",
    str,
    OpenApiParameter.QUERY,
    required=True,
    description="A primary SMTP address, part of a display name, or a global key "
    f"(ORG3:<guid>); at most {explain.MAX_QUERY_LENGTH} characters.",
)


class ExplainAction:
    """The explain action of the organizations' view set."""

    @extend_schema(parameters=[QUERY], responses=ExplanationSerializer)
    @action(detail=True, methods=["get"])
    def explain(self, request, name=None):
        """Why an entry is, or is not, in this organization's address book: each step of its
        way here, what it found and what to change; steps about an organization you cannot
        read are not shown."""
        organization = self.get_object()
        try:
            result = explain.explain(
                organization,
                request.query_params.get("q", ""),
                can_read=lambda pk: permissions.can_view(request.user, pk),
            )
        except explain.ExplainError as exc:
            raise exceptions.ValidationError({"q": [str(exc)]}) from None
        return Response(ExplanationSerializer(explain.as_dict(result)).data)
