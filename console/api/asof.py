"""GET /api/v1/organizations/{name}/address-book/?at=…: what an organization's address book held
at a past time, and what was removed, added and changed since (requestor.asof), for whoever
may read that organization. One list a request (`show`), paginated, with the four counts."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from console.api.pagination import Pagination
from requestor import asof
from requestor.models import ImportedChange


class ImportedChangeSerializer(serializers.ModelSerializer):
    run = serializers.IntegerField(
        source="run_id",
        allow_null=True,
        help_text="The run of this organization whose reply made the change (its console page: "
        "/o/{name}/runs/{run}/); null for the grace period's end or a run since purged.",
    )
    batch = serializers.UUIDField(allow_null=True, help_text="The reply batch that made it.")

    class Meta:
        model = ImportedChange
        fields = [
            "op",
            "at",
            "display_name",
            "primary_smtp",
            "detail",
            "master_usn",
            "batch",
            "run",
        ]
        read_only_fields = fields


class AddressBookEntrySerializer(serializers.Serializer):
    key = serializers.CharField(help_text="Global key: origin organization and source GUID.")
    origin = serializers.CharField()
    display_name = serializers.CharField(allow_blank=True)
    primary_smtp = serializers.CharField(allow_blank=True)
    then = ImportedChangeSerializer(
        allow_null=True, help_text="Its latest change at or before the time asked."
    )
    now = ImportedChangeSerializer(allow_null=True, help_text="Its latest change.")
    change = ImportedChangeSerializer(
        allow_null=True,
        help_text="What made the difference since: the change that removed or hid it "
        "(removed), added or restored it (added), or its latest change (changed, then).",
    )


class AddressBookCountsSerializer(serializers.Serializer):
    then = serializers.IntegerField()
    removed = serializers.IntegerField()
    added = serializers.IntegerField()
    changed = serializers.IntegerField()


class AddressBookSerializer(serializers.Serializer):
    organization = serializers.CharField()
    at = serializers.DateTimeField(help_text="The time asked.")
    now = serializers.DateTimeField(help_text="The time the difference is made to.")
    time_zone = serializers.CharField(help_text="The server's time zone (of times without one).")
    history_starts = serializers.DateTimeField(
        help_text="The first change the organization's import history holds."
    )
    horizon = serializers.DateTimeField(
        help_text="The earliest time that can be asked: now less the history's retention."
    )
    own_recipients = serializers.IntegerField(
        help_text="The organization's own recipients now: in its address book too, but with no "
        "history here, so not listed."
    )
    untracked = serializers.IntegerField(
        help_text="Contacts in the address book now imported before the history began (not listed)."
    )
    query = serializers.CharField(allow_blank=True)
    show = serializers.ChoiceField(choices=list(asof.SHOWS))
    counts = AddressBookCountsSerializer(help_text="The size of each list (with the search).")
    count = serializers.IntegerField(help_text="The size of the list shown.")
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = AddressBookEntrySerializer(many=True)


def _query(name: str, type_, description: str, **options) -> OpenApiParameter:
    return OpenApiParameter(name, type_, OpenApiParameter.QUERY, description=description, **options)


PARAMETERS = [
    _query(
        "at",
        str,
        "The time, in ISO 8601 (2025-03-14T09:30:00+01:00); without an offset, in the server's "
        "time zone. Within the history's retention (INTERORG_HISTORY_RETENTION_DAYS), not "
        "before its first change, not in the future.",
        required=True,
    ),
    _query(
        "show",
        str,
        "The list: then (the address book at that time, the default), removed (since), added "
        "(since), changed (display name or address, since).",
        enum=list(asof.SHOWS),
    ),
    _query("q", str, f"Part of a display name or address; at most {asof.MAX_QUERY_LENGTH}."),
    _query("page", int, "A page number of the list."),
    _query("page_size", int, f"Entries a page (at most {Pagination.max_page_size})."),
]


def _refused(field: str, exc: Exception):
    return exceptions.ValidationError({field: [str(exc)]})


class AddressBookAction:
    """The address-book action of the organizations' view set."""

    @extend_schema(parameters=PARAMETERS, responses=AddressBookSerializer)
    @action(detail=True, methods=["get"], url_path="address-book")
    def address_book(self, request, name=None):
        """What this organization's address book held at a past time (its imported contacts;
        its own recipients have no history here), and what was removed, added and changed
        since: for a removed entry, the change that removed or hid it, when, and the run."""
        organization = self.get_object()
        params = request.query_params
        show = params.get("show") or asof.THEN
        if show not in asof.SHOWS:
            raise _refused("show", asof.AsOfError(f"Show one of {', '.join(asof.SHOWS)}."))
        try:
            query = asof.clean_query(params.get("q", ""))
        except asof.AsOfError as exc:
            raise _refused("q", exc) from None
        try:
            result = asof.address_book(organization, asof.parse_time(params.get("at", "")), query)
        except asof.AsOfError as exc:
            raise _refused("at", exc) from None
        paginator = Pagination()
        rows = paginator.paginate_queryset(result.entries(show), request, view=self)
        data = {
            "organization": organization.name,
            "at": result.at,
            "now": result.now,
            "time_zone": asof.zone_name(),
            "history_starts": result.limits.starts,
            "horizon": result.limits.horizon,
            "own_recipients": result.own_recipients,
            "untracked": result.untracked,
            "query": query,
            "show": show,
            "counts": result.counts,
            "count": paginator.page.paginator.count,
            "next": paginator.get_next_link(),
            "previous": paginator.get_previous_link(),
            "results": result.explain(rows),
        }
        return Response(AddressBookSerializer(data).data)
