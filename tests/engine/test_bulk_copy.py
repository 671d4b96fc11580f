"""The bulk helpers on PostgreSQL (COPY, one JSON parameter) and on SQLite: copy_insert and
update_objects write values that read back exactly, OneOf finds what a list finds."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DataError, IntegrityError, connection, transaction
from django.db.models.functions import Upper
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from directory import changes
from directory.bulk import OneOf, copy_insert, json_text, update_objects
from directory.constants import Kind
from directory.factories import ContainerFactory
from directory.models import Recipient
from master.factories import AllowedRequestorFactory
from master.models import GlobalEntry, LedgerEntry
from requestor.models import ImportedChange

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def writing():
    """These tests write recipients with the bulk helpers themselves, as the sync path does."""
    with changes.writing():
        yield


# Everything COPY's text format must escape, and what a careless quoting would mangle.
HOSTILE = [
    'O\'Brien "the" Quote',
    "back\\slash \\N \\\\ end\\",
    "tab\there",
    "line\nbreak\r\nand\rreturn",
    "Zoë Ångström 東京 Ωμέγα 🙂",
    "",
    "\\.",
    "NULL",
    "  padded  ",
    ",;|{}[]()",
]
FIELDS = ["organization_id", "container_id", "kind", "display_name", "alias", "office"]
FIELDS += ["address", "primary_smtp", "global_key", "master_usn", "usn"]
DISPLAY_NAME = Recipient._meta.get_field("display_name")


@pytest.fixture
def container():
    return ContainerFactory()


def contact_rows(container, values: list[str]) -> list[tuple]:
    return [
        (
            container.organization_id,
            container.pk,
            Kind.CUSTOM_RECIPIENT,
            value,
            f"contact{number}",
            value,
            value,
            f"contact{number}@org.example",
            value if number % 2 else None,
            None if number % 3 else number,
            number + 1,
        )
        for number, value in enumerate(values)
    ]


def test_it_reads_back_hostile_text_exactly(container):
    rows = contact_rows(container, HOSTILE)

    assert copy_insert(Recipient, FIELDS, rows) == len(rows)

    stored = Recipient.objects.order_by("usn").values_list(*FIELDS)
    assert [tuple(row) for row in stored] == rows


def test_it_keeps_empty_strings_and_nulls_apart(container):
    copy_insert(Recipient, FIELDS, contact_rows(container, ["", "", ""]))

    keys = list(Recipient.objects.order_by("usn").values_list("global_key", flat=True))
    assert keys == [None, "", None]
    assert Recipient.objects.filter(global_key__isnull=True).count() == 2


def test_it_gives_left_out_fields_their_defaults(container):
    copy_insert(Recipient, FIELDS, contact_rows(container, ["a", "b"]))

    first, second = Recipient.objects.order_by("usn")
    assert first.guid != second.guid and isinstance(first.guid, uuid.UUID)
    assert first.trust_level == 0 and first.custom_attribute_15 == "" and first.first_name == ""
    assert first.created_at is not None and first.changed_at is not None


def test_it_stamps_every_row_with_the_time_of_the_write(container):
    before = timezone.now()
    copy_insert(Recipient, FIELDS, contact_rows(container, ["a", "b"]))
    after = timezone.now()

    stamps = set(Recipient.objects.values_list("created_at", "changed_at"))
    assert all(before <= at <= after for pair in stamps for at in pair)
    if connection.vendor == "postgresql":
        assert len(stamps) == 1  # COPY: one time for the whole write


def test_it_writes_given_times_exactly():
    organization = ContainerFactory().organization
    paris = timezone.get_fixed_timezone(60)
    times = [
        datetime(2026, 12, 7, 12, 30, 15, 123456, tzinfo=UTC),
        datetime(2026, 12, 7, 13, 30, 15, 123456, tzinfo=paris),  # the same instant
        datetime(1999, 1, 2, 3, 4, 5, tzinfo=paris),  # no fraction of a second
        datetime(2026, 12, 7, 12, 30, 15, 1, tzinfo=UTC),
    ]
    fields = ["organization_id", "global_key", "origin", "op", "at"]
    rows = [(organization.pk, f"K:{n}", "K", "added", at) for n, at in enumerate(times * 2)]

    copy_insert(ImportedChange, fields, rows)

    stored = ImportedChange.objects.order_by("global_key").values_list("global_key", "at")
    assert sorted(stored) == sorted((key, at) for _, key, _, _, at in rows)


def test_it_round_trips_json_values():
    requestor = AllowedRequestorFactory()
    attrs = [{"display_name": value, "office": value[::-1]} for value in HOSTILE if value] + [
        {},
        {"nested": {"list": [1, "two", None, True], "quote": '"\\'}},
    ]
    fields = ["master", "usn", "global_key", "origin", "op", "source_usn", "attrs"]
    rows = [
        (requestor.master_id, usn, f"BRANCH:{usn}", "BRANCH", "upsert", None, value)
        for usn, value in enumerate(attrs, start=1)
    ]

    copy_insert(LedgerEntry, fields, rows)

    stored = LedgerEntry.objects.order_by("usn").values_list("attrs", "source_usn", "message")
    assert [tuple(row) for row in stored] == [(value, None, None) for value in attrs]


def test_it_writes_uuids_booleans_and_large_numbers():
    requestor = AllowedRequestorFactory()
    object_id, batch = uuid.uuid4(), uuid.uuid4()
    fields = ["master_id", "requestor_id", "object_id", "global_key", "origin", "kind", "attrs"]
    fields += ["deleted", "source_usn", "usn", "full_batch"]
    row = (
        requestor.master_id,
        requestor.pk,
        object_id,
        f"BRANCH:{object_id}",
        "BRANCH",
        Kind.MAILBOX,
        {"alias": "jdoe"},
        True,
        2**63 - 1,
        7,
        batch,
    )

    copy_insert(GlobalEntry, fields, [row])

    assert tuple(GlobalEntry.objects.values_list(*fields).get()) == row


def test_it_does_nothing_for_no_rows(container):
    with CaptureQueriesContext(connection) as queries:
        assert copy_insert(Recipient, FIELDS, iter([])) == 0
    assert len(queries) == 0


@pytest.mark.postgres
def test_it_takes_one_statement_whatever_the_number_of_rows(container):
    rows = contact_rows(container, [f"Person {n}" for n in range(2000)])

    with CaptureQueriesContext(connection) as queries:
        copy_insert(Recipient, FIELDS, rows)

    assert [query["sql"][:4] for query in queries] == ["COPY"]
    assert Recipient.objects.count() == 2000


def test_it_raises_integrity_error_and_leaves_nothing(container):
    rows = contact_rows(container, ["a", "b"])
    duplicate = rows[1][:4] + ("contact0",) + rows[1][5:]  # same alias as the first row

    with pytest.raises(IntegrityError), transaction.atomic():
        copy_insert(Recipient, FIELDS, [rows[0], duplicate])

    assert not Recipient.objects.exists()


def test_it_writes_inside_the_callers_transaction(container):
    with transaction.atomic():
        copy_insert(Recipient, FIELDS, contact_rows(container, ["a"]))
        assert Recipient.objects.count() == 1
        transaction.set_rollback(True)

    assert not Recipient.objects.exists()


def test_one_of_finds_what_a_plain_list_finds(container):
    copy_insert(Recipient, FIELDS, contact_rows(container, HOSTILE))
    wanted = [*HOSTILE[::2], "absent", None]

    found = Recipient.objects.filter(OneOf("display_name", wanted))

    assert set(found) == set(Recipient.objects.filter(display_name__in=wanted))
    assert sorted(found.values_list("display_name", flat=True)) == sorted(HOSTILE[::2])


def test_one_of_matches_an_expression(container):
    copy_insert(Recipient, FIELDS, contact_rows(container, ["a", "b", "c"]))

    found = Recipient.objects.annotate(upper=Upper("alias")).filter(OneOf("upper", ["CONTACT1"]))

    assert list(found.values_list("alias", flat=True)) == ["contact1"]


def test_one_of_takes_values_holding_its_separator(container):
    copy_insert(Recipient, FIELDS, contact_rows(container, ["split\x1fhere", "split"]))

    found = Recipient.objects.filter(OneOf("display_name", ["split\x1fhere", "here"]))

    assert list(found.values_list("display_name", flat=True)) == ["split\x1fhere"]


def test_one_of_never_cuts_a_long_value_short(container):
    fields = ["organization_id", "container_id", "display_name", "alias", "primary_smtp", "usn"]
    longest = "y" * DISPLAY_NAME.max_length
    row = (container.organization_id, container.pk, longest, "long", "long@org.example", 1)
    copy_insert(Recipient, fields, [row])

    assert not Recipient.objects.filter(OneOf("display_name", [longest + "y"])).exists()
    assert Recipient.objects.filter(OneOf("display_name", [longest])).exists()


def test_one_of_compares_uuids_and_numbers_as_their_columns(container):
    copy_insert(Recipient, FIELDS, contact_rows(container, ["a", "b", "c"]))
    first, _, third = Recipient.objects.order_by("usn")

    by_guid = Recipient.objects.filter(OneOf("guid", [first.guid, uuid.uuid4()]))
    by_usn = Recipient.objects.filter(OneOf("usn", [third.usn, 10**12]))

    assert list(by_guid) == [first]
    assert list(by_usn) == [third]


def test_one_of_nothing_finds_nothing_without_a_query(container):
    with CaptureQueriesContext(connection) as queries:
        assert list(Recipient.objects.filter(OneOf("alias", [None]))) == []
    assert len(queries) == 0


def test_update_objects_saves_hostile_values_exactly(container):
    copy_insert(Recipient, FIELDS, contact_rows(container, [f"Person {n}" for n in HOSTILE]))
    people = list(Recipient.objects.order_by("usn"))
    for person, value in zip(people, reversed(HOSTILE), strict=True):
        person.display_name = person.office = person.address = value
        person.global_key = value or None
        person.master_usn = 2**63 - 1 if value else None
    fields = ["display_name", "office", "address", "global_key", "master_usn"]

    assert update_objects(Recipient, people, fields) == len(people)

    stored = Recipient.objects.order_by("usn").values_list(*fields)
    assert [tuple(row) for row in stored] == [
        tuple(getattr(person, name) for name in fields) for person in people
    ]


def test_update_objects_saves_json_uuids_booleans_and_times():
    requestor = AllowedRequestorFactory()
    rows = [
        (requestor.master_id, requestor.pk, uuid.uuid4(), f"BRANCH:{n}", "BRANCH", "mailbox", {})
        for n in range(3)
    ]
    fields = ["master_id", "requestor_id", "object_id", "global_key", "origin", "kind", "attrs"]
    copy_insert(GlobalEntry, [*fields, "source_usn"], [(*row, 1) for row in rows])
    entries = list(GlobalEntry.objects.order_by("global_key"))
    moment = entries[0].changed_at - timedelta(days=3, microseconds=7)
    for number, entry in enumerate(entries):
        entry.attrs = {"display_name": HOSTILE[number], "nested": [number, None, "\\"]}
        entry.deleted, entry.full_batch, entry.changed_at = True, uuid.uuid4(), moment
    changed = ["attrs", "deleted", "full_batch", "changed_at"]

    update_objects(GlobalEntry, entries, changed)

    stored = GlobalEntry.objects.order_by("global_key").values_list(*changed)
    assert [tuple(row) for row in stored] == [
        tuple(getattr(entry, name) for name in changed) for entry in entries
    ]


def test_update_objects_leaves_other_fields_and_rows_alone(container):
    copy_insert(Recipient, FIELDS, contact_rows(container, ["a", "b"]))
    first, second = Recipient.objects.order_by("usn")
    first.display_name, first.office = "Renamed", "Not saved"

    update_objects(Recipient, [first], ["display_name"])

    assert list(Recipient.objects.order_by("usn").values_list("display_name", "office")) == [
        ("Renamed", "a"),
        ("b", "b"),
    ]


def test_update_objects_saves_an_object_listed_twice_as_its_last_state(container):
    copy_insert(Recipient, FIELDS, contact_rows(container, ["a"]))
    early, late = Recipient.objects.get(), Recipient.objects.get()
    early.display_name, late.display_name = "Early", "Late"

    update_objects(Recipient, [early, late], ["display_name"])

    assert Recipient.objects.get().display_name == "Late"


@pytest.mark.postgres  # SQLite does not enforce lengths
def test_update_objects_refuses_a_value_too_long_for_its_column(container):
    copy_insert(Recipient, FIELDS, contact_rows(container, ["a"]))
    person = Recipient.objects.get()
    person.display_name = "y" * (DISPLAY_NAME.max_length + 1)

    with pytest.raises(DataError), transaction.atomic():
        update_objects(Recipient, [person], ["display_name"])


@pytest.mark.postgres
def test_update_objects_takes_one_statement_whatever_the_number_of_rows(container):
    copy_insert(Recipient, FIELDS, contact_rows(container, [f"Person {n}" for n in range(2000)]))
    people = list(Recipient.objects.all())
    for person in people:
        person.title = f"Title of {person.display_name}"

    with CaptureQueriesContext(connection) as queries:
        assert update_objects(Recipient, people, ["title"]) == 2000

    assert len(queries) == 1
    assert not Recipient.objects.exclude(title__startswith="Title of Person").exists()


def nested(children):
    return st.lists(children) | st.dictionaries(st.text(), children)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    nested,
    max_leaves=20,
)


@pytest.mark.django_db(databases=[])
@given(JSON_VALUES)
def test_json_text_writes_what_json_dumps_writes(value):
    # orjson, or json.dumps for what it does not take (integers beyond 64 bits)
    assert json.loads(json_text(value)) == json.loads(json.dumps(value, ensure_ascii=False))


@pytest.mark.django_db(databases=[])
def test_json_text_hands_what_orjson_does_not_take_to_the_encoder():
    moment = datetime(2026, 12, 7, 12, 30, 15, 123456, tzinfo=UTC)
    odd = {1: "a key that is not a string", "when": moment, "big": 2**70}

    assert json_text(odd, DjangoJSONEncoder) == json.dumps(odd, cls=DjangoJSONEncoder)
    assert json_text({"when": moment}, DjangoJSONEncoder) == '{"when": "2026-12-07T12:30:15.123Z"}'
    with pytest.raises(TypeError):
        json_text({"when": moment})  # no encoder for it: refused, as json.dumps refuses it
    # JSON has no word for these: null, where json.dumps writes what PostgreSQL refuses.
    assert json_text([float("inf"), float("nan")]) == "[null,null]"
