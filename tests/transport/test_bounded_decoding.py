"""How much memory a large signed payload may cost: the decoder reads it a piece at a time, and
refuses a part with more items than INTERORG_MAX_ENTRIES_PER_PART before holding them all. Each
test fails under the mistake named in its docstring."""

import copy
import gzip
import json
import re
import tracemalloc
import uuid
from typing import Annotated

import pytest
from django.conf import settings
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st
from pydantic import Field, TypeAdapter, ValidationError

from tests.engine.conftest import MASTER_DN
from tests.transport.documents import NOW_MS, SENDER_2, export_doc, gz, reply_doc
from tests.transport.test_inbox import export_of, processed, receive, state
from tests.transport.test_wire import (
    BASE_EXPORT,
    BASE_REPLY,
    FUZZ,
    document_shapes,
    encoded,
    mutate,
)
from transport import wire
from transport.constants import Status

MIB = 1024 * 1024


def change_text(index: int) -> bytes:
    """The JSON of a typical change: a person with most General attributes filled in."""
    return wire.json_bytes(
        {
            "id": str(uuid.UUID(int=index + 1)),
            "op": "upsert",
            "kind": "mailbox",
            "usn": index + 1,
            "attrs": {
                "display_name": f"Person Number {index} (ORG2)",
                "alias": f"person{index}",
                "first_name": "Person",
                "last_name": f"Number{index}",
                "title": "Clerk",
                "company": "Org Two Ltd",
                "department": "Accounts",
                "phone": "+44 20 7946 0000",
                "address": f"{index} High Street\nLondon",
                "city": "London",
                "country": "United Kingdom",
                "primary_smtp": f"person{index}@org2.example",
            },
        }
    )


def deletion_text(index: int) -> bytes:
    """The JSON of the smallest change there is: the most items per byte."""
    return b'{"id":"%s","op":"delete","kind":"mailbox","usn":%d,"attrs":{}}' % (
        str(uuid.UUID(int=index + 1)).encode(),
        index + 1,
    )


def large_export(decoded_size: int, item=change_text) -> tuple[bytes, int]:
    """An export part whose JSON is about `decoded_size` bytes, and how many changes it holds."""
    texts, size = [], 0
    while size < decoded_size - 1024:
        texts.append(item(len(texts)))
        size += len(texts[-1]) + 1
    header = export_doc(full=True, master_epoch=None, usn_from=0, usn_through=len(texts))
    del header["changes"]
    raw = wire.json_bytes(header)[:-1] + b',"changes":[' + b",".join(texts) + b"]}"
    return gzip.compress(raw, compresslevel=1, mtime=0), len(texts)


def traced(function) -> tuple[object, int, int]:
    """Run `function`; return its result, the memory it still holds, and the most it held."""
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = function()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, after - before, peak - before


def decode_or_error(payload: bytes):
    try:
        return wire.decode(payload)
    except wire.WireError as exc:
        return exc


@override_settings(INTERORG_MAX_DECODED_PAYLOAD=24 * MIB, INTERORG_MAX_ENTRIES_PER_PART=100_000)
def test_a_large_part_is_never_held_whole_as_text():
    """Mistake: inflating the whole payload into one buffer and parsing that: the decoded text,
    as large as the limit allows, is held on top of the document made from it."""
    payload, count = large_export(16 * MIB)

    document, kept, peak = traced(lambda: wire.decode(payload))

    assert isinstance(document, wire.ExportDocument) and len(document.changes) == count
    # What decoding needs beyond the document it returns: a window on the text, not the text.
    assert peak - kept < 4 * MIB, f"{(peak - kept) / MIB:.1f} MiB beyond the document"


@override_settings(INTERORG_MAX_DECODED_PAYLOAD=48 * MIB, INTERORG_MAX_ENTRIES_PER_PART=2000)
def test_a_part_over_the_entry_cap_is_refused_in_memory_near_the_cap():
    """Mistake: counting the items once the whole part is parsed: a part of hundreds of
    thousands of small changes takes the memory of all of them first."""
    payload, count = large_export(40 * MIB, item=deletion_text)
    assert count > 400_000

    error, _kept, peak = traced(lambda: decode_or_error(payload))

    assert isinstance(error, wire.WireError)
    assert str(error) == (
        "The part holds more than 2000 changes, the most this installation accepts in one part "
        "(INTERORG_MAX_ENTRIES_PER_PART); nothing of it was applied."
    )
    # About what 2,000 changes and a window on the text take; not the 40 MiB of the payload.
    assert peak < 6 * MIB, f"peak {peak / MIB:.1f} MiB"


@pytest.mark.parametrize(("build", "key"), [(export_doc, "changes"), (reply_doc, "entries")])
def test_the_entry_cap_counts_the_items_of_either_kind_of_part(build, key):
    """Mistake: capping the changes of an export and not the entries of a reply."""
    document = build()
    items = document[key]
    with override_settings(INTERORG_MAX_ENTRIES_PER_PART=len(items)):
        assert len(getattr(wire.decode(wire.encode(document)), key)) == len(items)
    with (
        override_settings(INTERORG_MAX_ENTRIES_PER_PART=len(items) - 1),
        pytest.raises(wire.WireError, match=f"more than {len(items) - 1} {key}"),
    ):
        wire.decode(wire.encode(document))


def test_a_part_over_the_entry_cap_is_refused_with_its_reason_and_nothing_applied(scenario):
    """Mistake: refusing the part without saying why, or after applying some of it."""
    org2 = scenario["ORG2"]
    document, _ = export_of(org2)
    assert len(document["changes"]) >= 2
    before = state()

    with override_settings(INTERORG_MAX_ENTRIES_PER_PART=len(document["changes"]) - 1):
        message = processed(receive(org2.config.dn, MASTER_DN, wire.encode(document)))

    assert message.status == Status.REJECTED
    assert f"more than {len(document['changes']) - 1} changes" in message.error
    assert "INTERORG_MAX_ENTRIES_PER_PART" in message.error
    assert state() == before


def test_the_same_part_under_the_entry_cap_is_applied(scenario):
    """Mistake: a cap that refuses a part holding exactly as many items as it allows."""
    org2 = scenario["ORG2"]
    document, payload = export_of(org2)

    with override_settings(INTERORG_MAX_ENTRIES_PER_PART=len(document["changes"])):
        message = processed(receive(org2.config.dn, MASTER_DN, payload))

    assert message.status == Status.PROCESSED, message.error


def test_no_exported_part_holds_more_items_than_a_receiver_accepts(monkeypatch):
    """Mistake: a sender that cuts parts by size only: small items (deletions) can make a part
    of more items than the receiver's default cap, and legitimate traffic is refused."""
    assert settings.INTERORG_MAX_ENTRIES_PER_PART >= 2 * wire.MAX_ITEMS_PER_PART
    monkeypatch.setattr(wire, "MAX_ITEMS_PER_PART", 7)
    items = [json.loads(deletion_text(index)) for index in range(30)]

    parts = wire.split(items, 2 * MIB, render_export)

    assert [len(document["changes"]) for document, _ in parts] == [7, 7, 7, 7, 2]
    with override_settings(INTERORG_MAX_ENTRIES_PER_PART=7):
        assert [len(wire.decode(payload).changes) for _, payload in parts] == [7, 7, 7, 7, 2]


def render_export(chunks: list[list[dict]], index: int) -> dict:
    return {
        "protocol": 1,
        "type": "export",
        "sender": dict(SENDER_2),
        "batch": str(uuid.UUID(int=99)),
        "part": index + 1,
        "parts": len(chunks),
        "sequence": NOW_MS + index,
        "full": True,
        "master_usn": 0,
        "master_epoch": None,
        "usn_from": 0,
        "usn_through": 10_000,
        "changes": chunks[index],
    }


@override_settings(INTERORG_MAX_DECODED_PAYLOAD=64 * MIB)
def test_a_value_longer_than_any_item_can_be_is_refused_before_it_is_read_whole():
    """Mistake: buffering a single value however long it grows: one string of the whole
    payload's size would be held whole (and parsed again at every piece read)."""
    document = export_doc()
    document["changes"][0]["attrs"]["address"] = "x" * (32 * MIB)
    payload = wire.encode(document)

    error, _kept, peak = traced(lambda: decode_or_error(payload))

    assert isinstance(error, wire.WireError)
    assert str(error) == (
        f"Item 1 of changes is longer than {wire.MAX_VALUE_LENGTH} characters, which no "
        "document holds; refused unread."
    )
    assert peak < 8 * MIB, f"peak {peak / MIB:.1f} MiB"


def test_the_checks_keep_their_order_when_the_payload_is_read_in_pieces():
    """Mistake: reporting the first problem met while reading, whatever it is: a gzip or UTF-8
    fault later in the payload must still be named before a JSON or schema one earlier."""
    bad_json = b'{"protocol": 1, "changes": [oops' + b" " * (2 * MIB) + b"]}"
    with pytest.raises(wire.WireError, match="gzip data is truncated"):
        wire.decode(gzip.compress(bad_json, mtime=0)[:-100])
    with pytest.raises(wire.WireError, match="not valid UTF-8"):
        wire.decode(gzip.compress(bad_json + b"\xff", mtime=0))
    with pytest.raises(wire.WireError, match="not valid JSON"):
        wire.decode(gzip.compress(bad_json, mtime=0))


# How much the decoder reads at a time (transport.wire): as configured, and a few bytes, so
# that every value is cut somewhere between pieces.
AT_ONCE = (wire.READ_SIZE, wire.FEED_SIZE, wire.BATCH_LENGTH)
IN_PIECES = (5, 3, 40)


def read_in(monkeypatch, sizes: tuple[int, int, int]) -> None:
    """Have the decoder read `sizes` at a time (READ_SIZE, FEED_SIZE, BATCH_LENGTH)."""
    for name, size in zip(["READ_SIZE", "FEED_SIZE", "BATCH_LENGTH"], sizes, strict=True):
        monkeypatch.setattr(wire, name, size)


def outcome(payload: bytes, sizes: tuple[int, int, int]):
    """The document decoded reading `sizes` at a time, or the reason it is refused."""
    wire.READ_SIZE, wire.FEED_SIZE, wire.BATCH_LENGTH = sizes
    try:
        return wire.decode(payload)
    except wire.WireError as exc:
        # Where a JSON fault is reported inside a batch of items depends on the batch.
        return re.sub(r"line \d+ column \d+", "…", str(exc))
    finally:
        wire.READ_SIZE, wire.FEED_SIZE, wire.BATCH_LENGTH = AT_ONCE


@FUZZ
@given(st.data())
def test_reading_in_pieces_decodes_or_refuses_as_reading_at_once(data):
    """Mistake: taking a value cut short by the end of a piece for the whole value (a number
    "1" of "12", a literal, an escape cut in two), or a cut at `},{` inside a string for the
    end of an item."""
    document = copy.deepcopy(data.draw(st.sampled_from([BASE_EXPORT, BASE_REPLY])))
    key = "changes" if document["type"] == "export" else "entries"
    document[key] = copy.deepcopy(document[key] * data.draw(st.integers(1, 8)))
    document[key][0]["attrs"]["display_name"] = data.draw(
        st.sampled_from(["},{", '"},{"', "\\u00e9},{", "Ada"])
    )
    for _ in range(data.draw(st.integers(min_value=0, max_value=3))):
        mutate(document, data)
    indent = data.draw(st.sampled_from([None, 1]))
    payload = gz(json.dumps(document, ensure_ascii=False, indent=indent).encode())

    assert outcome(payload, IN_PIECES) == outcome(payload, AT_ONCE)


WHOLE = TypeAdapter(Annotated[wire.Document, Field(discriminator="type")])


@FUZZ
@given(st.data())
def test_a_document_is_refused_with_the_problems_the_schema_finds_in_it_whole(data):
    """The oracle: the schema's own verdict on the document validated whole, its problems in
    the schema's order. Mistake: the problems of the items, validated apart from the rest,
    put elsewhere than the schema puts them (before or after the unknown fields, under another
    list's name), or lost."""
    document = copy.deepcopy(data.draw(st.sampled_from([BASE_EXPORT, BASE_REPLY])))
    items = document["changes" if document["type"] == "export" else "entries"]
    items.extend(copy.deepcopy(items) * data.draw(st.integers(0, 3)))
    if data.draw(st.booleans()):  # an item the schema refuses
        mutate(data.draw(st.sampled_from(items)), data)
    if data.draw(st.booleans()):  # a field the schema does not know, before or after the items
        document[data.draw(st.sampled_from(["unknown", "display_name", "usn"]))] = 1
    for _ in range(data.draw(st.integers(min_value=0, max_value=2))):
        mutate(document, data)
    if not isinstance(document, dict) or not _speaks_version_1(document.get("protocol")):
        return  # the protocol's own refusals come first (pinned elsewhere)
    text = json.dumps(document, ensure_ascii=False)
    try:
        WHOLE.validate_json(text)
    except ValidationError as exc:
        expected = wire._describe(exc.errors(include_url=False), exc.error_count())
    else:
        return  # valid whole: decoding it is compared with reading at once above
    for sizes in (AT_ONCE, IN_PIECES):
        assert outcome(gz(text.encode("utf-8", "surrogatepass")), sizes) == expected


def _speaks_version_1(protocol) -> bool:
    # The integer 1 only: JSON's 1.0 and true equal 1 in Python, and are refused as versions.
    return type(protocol) is int and protocol == 1


@FUZZ
@given(document_shapes)
def test_reading_random_shapes_in_pieces_decodes_or_refuses_as_at_once(value):
    """Mistake: a reader whose answer depends on where the pieces are cut."""
    payload = encoded(value)

    assert outcome(payload, IN_PIECES) == outcome(payload, AT_ONCE)


def test_the_items_of_an_accepted_part_are_read_again_one_at_a_time(monkeypatch):
    """Mistake: reading a part's items again by inflating and parsing the whole part (the
    importer reads the keys of a full reply's other parts)."""
    read_in(monkeypatch, IN_PIECES)
    document = reply_doc()
    document["entries"] *= 5

    assert list(wire.iter_items(wire.encode(document), "entries")) == document["entries"]
    assert list(wire.iter_items(wire.encode(document), "changes")) == []


# Far enough in that reading at once takes more than one piece to reach the fault, and with
# non-ASCII text before it, so that characters and bytes are counted apart.
LEAD = '{"protocol": 1, "note": "' + "Zoë " * (wire.READ_SIZE // 3) + '", '
UTF8_FAULTS = {
    "bad-byte": b'{"a": "\xff"}',
    "bad-continuation": b'{"a": "\xc3\x28"}',
    "encoded-surrogate": b'{"a": "\xed\xa0\x80"}',
    "cut-at-the-end": b'{"a": "\xe2\x82',
    "far-in": LEAD.encode() + b'"b": "\xe2\x82(x"}',
    "two-faults": b'{"a": "\xff' + b"x" * 100 + b'\xfe"}',
    # Found while refusing a JSON fault that comes first: UTF-8 is named first all the same.
    "after-a-json-fault": b'{"a": tru, "b": "' + "Zoë".encode() * 100 + b'\xff"}',
    "two-after-a-json-fault": b'{"a": tru, "b": "' + b"x" * 100 + b"\xff" + b"x" * 100 + b'\xfe"}',
    "cut-at-the-end-after-a-json-fault": b'{"a": tru, "b": "' + b"x" * 300 + b"\xe2\x82",
}


@pytest.mark.parametrize("sizes", [AT_ONCE, IN_PIECES], ids=["at-once", "in-pieces"])
@pytest.mark.parametrize("raw", UTF8_FAULTS.values(), ids=UTF8_FAULTS.keys())
def test_a_utf8_fault_is_named_as_the_codec_names_it_in_the_whole_payload(raw, sizes):
    """Mistake: a position counted from the piece read rather than from the payload's start,
    or a later fault reported instead of the first."""
    with pytest.raises(UnicodeDecodeError) as whole:
        raw.decode()

    assert outcome(gz(raw), sizes) == f"The attachment is not valid UTF-8 ({whole.value})."


JSON_FAULTS = {
    "trailing-comma": '{"a": 1,}',
    "cut-short": '{"protocol": 1, "changes": [1, 2',
    "no-colon": '{"a" 1}',
    "extra-data": '{"protocol": 1} {}',
    "bad-literal": '  {"protocol": 1, "type": "export", "x": tru}',
    "empty-item": '{"protocol": 1, "changes": [{"a": 1},, {}]}',
    "far-in": LEAD + '"b": [1 2]}',
    "nothing": "",
    "an-array-cut-short": "[",
    "elements-without-a-comma": "[1 2]",
    "after-an-empty-array": "[]x",
    "after-an-array": "[1, 2] x",
    "after-a-string": '"abc" 1',
    "an-object-cut-short": "{",
    "after-an-empty-object": "{} x",
    "a-brace-after-an-empty-object": "{}}",
    "a-brace-after-an-object": '{"a": 1}}',
    "fields-without-a-comma": '{"a": 1 "b": 2}',
}


@pytest.mark.parametrize("sizes", [AT_ONCE, IN_PIECES], ids=["at-once", "in-pieces"])
@pytest.mark.parametrize("text", JSON_FAULTS.values(), ids=JSON_FAULTS.keys())
def test_a_json_fault_is_named_as_json_names_it_in_the_whole_payload(text, sizes):
    """Mistake: a position counted from the text read so far, or none at all."""
    with pytest.raises(json.JSONDecodeError) as whole:
        json.loads(text)
    fault = whole.value

    expected = f"The attachment is not valid JSON ({fault.msg}: char {fault.pos})."
    assert outcome(gz(text.encode()), sizes) == expected


@pytest.mark.parametrize("sizes", [AT_ONCE, IN_PIECES], ids=["at-once", "in-pieces"])
@pytest.mark.parametrize("text", ["{}", "{ }", "{}\n ", " {\n}"])
def test_an_empty_document_is_read_as_one_without_fields(text, sizes):
    """Mistake: the closing brace of an empty object taken for a field, or stepped over wrong."""
    assert outcome(gz(text.encode()), sizes) == (
        "The document has no protocol version; this installation speaks 1."
    )


def test_decompress_gives_a_payload_of_many_pieces_back_whole():
    raw = "".join(f"{index:08d} Zoë\n" for index in range(3 * wire.READ_SIZE // 10)).encode()

    assert len(raw) > 2 * wire.READ_SIZE
    assert wire.decompress(gz(raw)) == raw


def several_changes(count: int) -> dict:
    """An export of `count` changes at USNs 1 to `count`, sharing one `attrs` dict."""
    document = export_doc(usn_from=0, usn_through=count)
    change = document["changes"][0]
    document["changes"] = [{**change, "usn": usn} for usn in range(1, count + 1)]
    return document


@pytest.mark.parametrize("read_size", [300, 700, 1000])
def test_a_value_under_the_longest_is_read_wherever_the_pieces_cut_it(monkeypatch, read_size):
    """Mistake: measuring a value cut by the end of a piece from the start of the text read,
    not from its own start: the items after the first would be refused as too long."""
    document = several_changes(4)
    document["changes"][0]["attrs"]["address"] = "x" * 1000  # (all four share their attrs)
    payload = wire.encode(document)
    assert all(len(wire.json_bytes(item)) < 1400 for item in document["changes"])
    monkeypatch.setattr(wire, "MAX_VALUE_LENGTH", 1500)
    read_in(monkeypatch, (read_size, *IN_PIECES[1:]))

    assert [change.usn for change in wire.decode(payload).changes] == [1, 2, 3, 4]


def spaced(document: dict) -> bytes:
    """A payload written with ", " between items: no `},{` for a window to cut at, so that
    every item is read one at a time."""
    return gz(json.dumps(document).encode())


ONE_AT_A_TIME = (300, 64, 100_000)  # small pieces; batches of the whole list


@pytest.mark.parametrize("sizes", [AT_ONCE, IN_PIECES, ONE_AT_A_TIME])
@pytest.mark.parametrize(("kind", "key"), [("export", "changes"), ("reply", "entries")])
def test_a_list_of_any_length_reads_as_json_has_it(kind, key, sizes):
    """Mistake: an empty list taken for one holding an item, or the last items of a list
    left unvalidated, when the items are read one at a time."""
    for count in (0, 1, 5):
        document = copy.deepcopy(BASE_EXPORT if kind == "export" else BASE_REPLY)
        document[key] = [document[key][0]] * count
        decoded = outcome(spaced(document), sizes)
        assert not isinstance(decoded, str), decoded
        assert len(getattr(decoded, key)) == count


def test_an_item_too_long_is_named_by_its_place_in_the_list(monkeypatch):
    """Mistake: numbering items from the batch being read, or from one."""
    document = several_changes(6)
    document["changes"][4] = copy.deepcopy(document["changes"][4])
    document["changes"][4]["attrs"]["address"] = "x" * 1000
    monkeypatch.setattr(wire, "MAX_VALUE_LENGTH", 500)

    # Batches of 1,500 characters: the four items before it (282 each) wait in one.
    assert outcome(spaced(document), (100, 64, 1500)) == (
        "Item 5 of changes is longer than 500 characters, which no document holds; refused unread."
    )


@pytest.mark.parametrize("sizes", [AT_ONCE, IN_PIECES, ONE_AT_A_TIME])
def test_items_without_a_comma_between_them_are_named_as_json_names_them(sizes):
    text = json.dumps(several_changes(3)).replace("}, {", "} {", 1)
    with pytest.raises(json.JSONDecodeError) as whole:
        json.loads(text)

    expected = f"The attachment is not valid JSON ({whole.value.msg}: char {whole.value.pos})."
    assert whole.value.msg == "Expecting ',' delimiter"
    assert outcome(gz(text.encode()), sizes) == expected


@pytest.mark.parametrize("sizes", [AT_ONCE, IN_PIECES, ONE_AT_A_TIME])
def test_a_part_of_exactly_the_cap_is_read_and_one_more_is_refused(sizes):
    payload = spaced(several_changes(6))

    with override_settings(INTERORG_MAX_ENTRIES_PER_PART=6):
        assert len(outcome(payload, sizes).changes) == 6
    with override_settings(INTERORG_MAX_ENTRIES_PER_PART=5):
        assert outcome(payload, sizes).startswith("The part holds more than 5 changes")


@pytest.mark.parametrize("sizes", [AT_ONCE, IN_PIECES, ONE_AT_A_TIME])
def test_the_problems_of_many_items_are_named_five_and_counted_all(sizes):
    document = several_changes(8)
    for change in document["changes"][1:]:
        change["op"] = "rename"
    message = outcome(spaced(document), sizes)

    named = "; ".join(
        f"export.changes.{index}.op: Input should be 'upsert' or 'delete'" for index in range(1, 6)
    )
    assert message == f"Invalid document: {named} (and 2 more)"


def test_the_header_may_be_exactly_as_long_as_allowed(monkeypatch):
    """Mistake: the fields besides the items measured other than as their JSON text (a
    comma between fields), or refused at the limit rather than past it."""
    document = reply_doc()
    header = wire.json_bytes({**document, "entries": []}).decode()
    payload = wire.encode(document)  # as compact as the header above

    monkeypatch.setattr(wire, "MAX_HEADER_LENGTH", len(header) - 1)  # less the closing brace
    assert len(outcome(payload, IN_PIECES).entries) == len(document["entries"])
    monkeypatch.setattr(wire, "MAX_HEADER_LENGTH", len(header) - 2)
    assert outcome(payload, IN_PIECES) == (
        f"The document's fields besides its items are longer than {len(header) - 2} "
        "characters, which no document needs; refused unread."
    )


LONG = "x" * 2000  # read 100, 200, 400, 800 characters at a time: cut past 500


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (f'"{LONG}"', "The document"),
        (f'[1, 2, "{LONG}"]', "Element 3"),
        ('{"' + "k" * 60 + f'": "{LONG}"}}', 'The field "' + "k" * 38 + "…"),
        ('{"' + "k" * 38 + f'": "{LONG}"}}', 'The field "' + "k" * 38 + '"'),
        ('{"' + LONG + '": 1}', "A field name"),
    ],
    ids=["the-document", "an-element", "a-long-field", "a-field-as-long-as-shown", "a-name"],
)
def test_a_value_too_long_is_named_by_what_it_is(monkeypatch, text, named):
    monkeypatch.setattr(wire, "MAX_VALUE_LENGTH", 500)

    assert outcome(gz(text.encode()), (100, 64, 40)) == (
        f"{named} is longer than 500 characters, which no document holds; refused unread."
    )


def test_an_array_of_short_elements_is_read_one_at_a_time(monkeypatch):
    """Mistake: a document that is an array read as one value: refused as too long, where it
    is only not an object."""
    monkeypatch.setattr(wire, "MAX_VALUE_LENGTH", 500)

    assert outcome(gz(("[" + "1, " * 500 + "1]").encode()), (100, 64, 40)) == (
        "The document must be a JSON object."
    )


def test_reading_a_part_again_names_an_item_too_long_by_its_place(monkeypatch):
    document = reply_doc()
    document["entries"] *= 3
    document["entries"][1] = copy.deepcopy(document["entries"][1])
    document["entries"][1]["attrs"]["address"] = "x" * 1000
    payload = wire.encode(document)
    monkeypatch.setattr(wire, "MAX_VALUE_LENGTH", 500)
    read_in(monkeypatch, IN_PIECES)

    with pytest.raises(wire.WireError) as refused:
        list(wire.iter_items(payload, "entries"))
    assert str(refused.value) == (
        "Item of entries 2 is longer than 500 characters, which no document holds; refused unread."
    )
    long_field = '{"' + "k" * 60 + f'": "{LONG}"}}'
    with pytest.raises(wire.WireError) as refused:
        list(wire.iter_items(gz(long_field.encode()), "entries"))
    assert str(refused.value).startswith('The field "' + "k" * 38 + "… is longer than 500")
    with pytest.raises(wire.WireError, match=r"^The document must be a JSON object\.$"):
        list(wire.iter_items(gz(b"[1]"), "entries"))


def test_a_fault_early_in_a_long_value_is_named_rather_than_its_length(monkeypatch):
    """Mistake: reading on past a fault that is not where the text read ends (as if the value
    were cut there), until the value is refused as too long instead."""
    text = '{"protocol": 1, "a": "\\q' + LONG + '"}'
    with pytest.raises(json.JSONDecodeError) as whole:
        json.loads(text)
    monkeypatch.setattr(wire, "MAX_VALUE_LENGTH", 500)

    assert outcome(gz(text.encode()), (100, 64, 40)) == (
        f"The attachment is not valid JSON ({whole.value.msg}: char {whole.value.pos})."
    )
