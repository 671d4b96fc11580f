"""The history of an entry across organizations (console.history), for whoever may read the
organization asked in: `GET /api/v1/organizations/{name}/history/?q=…` (by address, name or
global key) and `GET /api/v1/recipients/{id}/history/` (a recipient or contact). What belongs
to an organization the caller cannot read is left out and named in `not_shown`."""

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from console import history, permissions
from console.api.explain import QUERY, ExplainLinkSerializer, ExplainMatchSerializer


class HistoryRunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    trigger = serializers.CharField(help_text="schedule, manual (Execute Now), command or api.")
    requested_by = serializers.CharField(allow_blank=True, help_text="Who started it.")
    status = serializers.CharField()
    started_at = serializers.DateTimeField()


class HistoryEventSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    place = serializers.CharField(
        help_text="master: a version the master stamped; import: an organization's import."
    )
    organization = serializers.CharField(help_text="The master's, or the importing, organization.")
    change = serializers.CharField(
        help_text="A version: created, updated, restated (no General attribute changed), "
        "returned (live again after a delete), deleted, earliest (the earliest version kept). "
        "An import: added, updated, hidden, restored, removed, set_aside."
    )
    label = serializers.CharField()
    text = serializers.CharField(help_text="What happened, in words.")
    attributes = serializers.ListField(
        child=serializers.CharField(),
        help_text="The General attributes changed (compared with the previous version).",
    )
    master_usn = serializers.IntegerField(allow_null=True)
    source_usn = serializers.IntegerField(allow_null=True, help_text="The origin's local USN.")
    origin = serializers.CharField(allow_blank=True)
    display_name = serializers.CharField(allow_blank=True)
    address = serializers.CharField(allow_blank=True)
    detail = serializers.CharField(
        allow_blank=True, help_text="An import's detail: attributes changed, or the reason."
    )
    batch = serializers.UUIDField(
        allow_null=True, help_text="The export batch (a version) or the reply batch (an import)."
    )
    run = HistoryRunSerializer(
        allow_null=True,
        help_text="The origin's run that exported the version (for readers of the origin), or "
        "the importing organization's run.",
    )
    links = ExplainLinkSerializer(many=True)


class HistorySourceSerializer(serializers.Serializer):
    organization = serializers.CharField()
    id = serializers.IntegerField()
    kind = serializers.CharField()
    container = serializers.CharField(help_text="The container's DN.")
    guid = serializers.CharField()
    display_name = serializers.CharField()
    address = serializers.CharField()
    created_at = serializers.DateTimeField()


class HistoryContactSerializer(serializers.Serializer):
    organization = serializers.CharField()
    id = serializers.IntegerField()
    display_name = serializers.CharField()
    address = serializers.CharField()
    master_usn = serializers.IntegerField(allow_null=True)
    hidden_at = serializers.DateTimeField(
        allow_null=True, help_text="Hidden for its grace period since then."
    )


class HistoryCutSerializer(serializers.Serializer):
    place = serializers.CharField(help_text="master or import.")
    organization = serializers.CharField()
    days = serializers.IntegerField(help_text="How long every change is kept.")
    since = serializers.DateTimeField(help_text="The history is complete from here on.")
    text = serializers.CharField()


class HistorySerializer(serializers.Serializer):
    key = serializers.CharField(help_text="Global key: origin organization and source GUID.")
    origin = serializers.CharField()
    display_name = serializers.CharField(allow_blank=True)
    address = serializers.CharField(allow_blank=True)
    source = HistorySourceSerializer(
        allow_null=True, help_text="Its recipient in the origin, when you can read it there."
    )
    origin_note = serializers.CharField(allow_blank=True)
    deleted_at = serializers.DateTimeField(
        allow_null=True, help_text="When its origin deleted its recipient (readers of the origin)."
    )
    contacts = HistoryContactSerializer(many=True)
    events = HistoryEventSerializer(many=True, help_text="Oldest first.")
    cuts = HistoryCutSerializer(many=True, help_text="Where retention may have cut it.")
    notes = serializers.ListField(child=serializers.CharField())
    not_shown = serializers.ListField(
        child=serializers.CharField(), help_text="Organizations whose part you cannot read."
    )


class HistoryLookupSerializer(serializers.Serializer):
    organization = serializers.CharField()
    query = serializers.CharField()
    searched = serializers.ListField(child=serializers.CharField())
    more = serializers.BooleanField(help_text="More matches than listed: narrow the question.")
    matches = ExplainMatchSerializer(
        many=True, help_text="The entries the question names when it names several."
    )
    history = HistorySerializer(
        allow_null=True,
        help_text="The history of the one entry named; null when nothing or several match "
        "(ask again by one of the matches' keys).",
    )


def _reader(request):
    return lambda pk: permissions.can_view(request.user, pk)


class HistoryAction:
    """The history action of the organizations' view set."""

    @extend_schema(parameters=[QUERY], responses=HistoryLookupSerializer)
    @action(detail=True, methods=["get"])
    def history(self, request, name=None):
        """The history of an entry across organizations: every version the master stamped and
        every organization's import of it, oldest first; the matches when the question names
        several entries. Only what you can read is shown."""
        organization = self.get_object()
        try:
            lookup = history.look_up(
                organization, request.query_params.get("q", ""), can_read=_reader(request)
            )
        except history.QueryError as exc:
            raise exceptions.ValidationError({"q": [str(exc)]}) from None
        return Response(HistoryLookupSerializer(history.lookup_as_dict(lookup)).data)


class RecipientHistoryAction:
    """The history action of the recipients' view set."""

    @extend_schema(responses=HistorySerializer)
    @action(detail=True, methods=["get"])
    def history(self, request, pk=None):
        """The history of this recipient's entry (or of the entry this contact stands for)
        across organizations. Only what you can read is shown."""
        recipient = self.get_object()
        entry = history.recipient_history(recipient, can_read=_reader(request))
        return Response(HistorySerializer(history.as_dict(entry)).data)
