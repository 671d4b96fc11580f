"""The wire format (docs/protocol.md): gzip JSON documents, strictly validated, split by size."""

import codecs
import gzip
import json
import re
import zlib
from collections.abc import Callable, Iterator
from typing import Annotated, Literal, NoReturn
from uuid import UUID

import pydantic_core
from django.conf import settings
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from directory.constants import GENERAL_ATTRIBUTES, Kind
from transport.constants import PROTOCOL_VERSION, MessageKind, Op

# Room for the MIME envelope: headers, the text body, and base64's 4/3 growth of the attachment.
MIME_OVERHEAD = 8 * 1024
# Directory JSON compresses at least this well; chunks are cut from raw sizes, then checked.
COMPRESSION_GUESS = 3

# C0 and C1 controls, DEL, and the bidirectional overrides that can disguise a name on screen.
_FORBIDDEN = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NEWLINE = re.compile(r"\r\n?|\n")
MULTILINE_ATTRIBUTES = {"address"}


class WireError(ValueError):
    """A payload that is not a valid protocol document; the message says what is wrong."""


def sanitize_value(name: str, value: str) -> str:
    """What the wire allows of an attribute value: no control characters, within the length."""
    # A printable string has no line break and nothing _FORBIDDEN: the usual value skips both.
    if not value.isprintable():
        value = _NEWLINE.sub("\n" if name in MULTILINE_ATTRIBUTES else " ", value)
        value = _FORBIDDEN.sub("", value)
    return value[: GENERAL_ATTRIBUTES[name]]


def _check_attrs(attrs: dict[str, str]) -> dict[str, str]:
    for name, value in attrs.items():
        # The usual value: printable (see sanitize_value) and short enough.
        if value.isprintable() and len(value) <= GENERAL_ATTRIBUTES[name]:
            continue
        if len(value) > GENERAL_ATTRIBUTES[name]:
            raise ValueError(f"{name} is longer than {GENERAL_ATTRIBUTES[name]} characters")
        if _FORBIDDEN.search(value) or (name not in MULTILINE_ATTRIBUTES and "\n" in value):
            raise ValueError(f"{name} contains control characters")
    return attrs


AttributeName = Literal[tuple(GENERAL_ATTRIBUTES)]
Attrs = Annotated[dict[AttributeName, str], AfterValidator(_check_attrs)]
KindName = Literal[tuple(Kind.values)]
# Numbers end up in bigint (USNs, sequences) and integer (part numbers) columns.
MAX_BIGINT = 2**63 - 1
MAX_PARTS = 2**31 - 1
Count = Annotated[int, Field(ge=0, le=MAX_BIGINT)]
Positive = Annotated[int, Field(ge=1, le=MAX_BIGINT)]
PartNumber = Annotated[int, Field(ge=1, le=MAX_PARTS)]
OrgName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Address = Annotated[
    str, StringConstraints(min_length=3, max_length=1024, pattern=r"^[^\x00-\x1f\x7f]+$")
]
Hex128 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
OpName = Literal[tuple(Op.values)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Sender(_Strict):
    organization: OrgName
    address: Address


class Change(_Strict):
    """One change of an export: the current state of a source object, or its deletion."""

    id: UUID
    op: OpName
    kind: KindName
    usn: Count
    attrs: Attrs


class Entry(_Strict):
    """One entry of a reply: the master's latest state of a global entry."""

    key: Annotated[
        str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")
    ]
    origin: OrgName
    op: OpName
    kind: KindName
    usn: Positive
    attrs: Attrs


def _exactly_an_int(value: object) -> object:
    # Literal[1] alone takes JSON's true and 1.0 as well; the version is the integer 1.
    if type(value) is not int:
        raise ValueError("the protocol version must be an integer")
    return value


class _Document(_Strict):
    protocol: Annotated[Literal[1], BeforeValidator(_exactly_an_int)]
    sender: Sender
    batch: UUID
    part: PartNumber
    parts: PartNumber
    sequence: Positive
    full: bool


class Tally(_Strict):
    """A digest of a set of entries (transport.digest) and how many there are."""

    digest: Hex128
    count: Count


class Verification(_Strict):
    """What the master holds, to be checked by the requestor (docs/protocol.md, rule 10)."""

    # The live entries of the other organizations at `through`: (global key, master USN) each.
    holdings: Tally
    # The requestor's own live entries: (object id, source USN) each.
    exports: Tally
    # How many entries the answered export batch changed at the master (its sweep included).
    changed: Count


class ExportDocument(_Document):
    type: Literal[MessageKind.EXPORT.value]
    master_usn: Count
    master_epoch: UUID | None
    # The master's fingerprint of its ledger entry at master_usn, as the last reply gave it.
    master_fingerprint: Hex128 | None = None
    usn_from: Count
    usn_through: Count
    changes: list[Change]


class ReplyDocument(_Document):
    type: Literal[MessageKind.REPLY.value]
    in_reply_to: UUID
    epoch: UUID
    ack: Count
    after: Count
    through: Count
    # The fingerprint of the master's ledger entry at `through` (None while the ledger is empty).
    fingerprint: Hex128 | None = None
    # On the last part of a reply only.
    verification: Verification | None = None
    # A notice instead of a reply: the master holds the answered export for an administrator
    # (the reason), and applied nothing of it (docs/protocol.md, rule 11).
    held: (
        Annotated[
            str,
            StringConstraints(min_length=1, max_length=2000, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$"),
        ]
        | None
    ) = None
    # The master asks for a full export at the next cycle (an administrator rejected a held one).
    export_all: bool = False
    entries: list[Entry]


Document = ExportDocument | ReplyDocument
_adapter = TypeAdapter(Annotated[Document, Field(discriminator="type")])


# The wire's JSON: compact UTF-8, the bytes of json.dumps(separators=(",", ":"),
# ensure_ascii=False).encode() for documents, made several times faster.
json_bytes = pydantic_core.to_json
# Fast deflate: about twice as fast as level 6 on directory JSON, for payloads about a sixth
# larger. Any level decompresses the same (docs/protocol.md).
GZIP_LEVEL = 2


def encode(document: dict) -> bytes:
    """Serialize a document (plain JSON types) to its gzip-compressed wire form."""
    return _gzip(json_bytes(document))


def _gzip(raw: bytes) -> bytes:
    return gzip.compress(raw, compresslevel=GZIP_LEVEL, mtime=0)


def decompress(payload: bytes, limit: int | None = None) -> bytes:
    """Inflate a gzip payload, refusing one that would grow past `limit` bytes (a gzip bomb)."""
    reader = _Reader(payload, limit or settings.INTERORG_MAX_DECODED_PAYLOAD)
    return b"".join(iter(reader.inflate, None))


# Reading a payload (docs/protocol.md, "Integrity"): its decoded text is inflated and parsed a
# piece at a time and never held whole; items are validated in batches as they come, and a part
# with more items than INTERORG_MAX_ENTRIES_PER_PART is refused as soon as it has one more.
# Decoded bytes inflated at a time, and compressed bytes fed to the inflater at a time.
READ_SIZE = 256 * 1024
FEED_SIZE = 64 * 1024
# No item or field comes near this: the longest item there can be, every attribute at its limit
# and every character written as a \u escape, is under 64 KiB. A longer value is refused unread.
MAX_VALUE_LENGTH = 1024 * 1024
# A document's fields besides its items: under 2 KiB in any document a sender writes.
MAX_HEADER_LENGTH = 1024 * 1024
# Items are validated together up to this much JSON text: one call of the validator per batch
# decodes as fast as one for the whole document.
BATCH_LENGTH = 256 * 1024
# The most items a sender puts in one part (split), well under what a receiver accepts
# (INTERORG_MAX_ENTRIES_PER_PART, 100,000 by default): parts are cut by size, and a part of
# small items (deletions) would otherwise hold several times more.
MAX_ITEMS_PER_PART = 50_000

ITEM_LISTS = {"changes": TypeAdapter(list[Change]), "entries": TypeAdapter(list[Entry])}
_LIST_OF = {MessageKind.EXPORT.value: "changes", MessageKind.REPLY.value: "entries"}
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_scan = json.JSONDecoder().raw_decode
_scan_once = json.JSONDecoder().scan_once
_SEPARATOR = re.compile(r"[ \t\n\r]*([,\]])[ \t\n\r]*")


class _Reader:
    """The decoded text of a gzip payload, inflated and checked as UTF-8 a piece at a time.

    `text[pos:]` is what has been read and not yet parsed; reading more drops what is before
    `pos`. Faults are refused in the order the checks name them, whatever is met first: gzip
    (not gzip, a bomb, truncated, trailing data), then UTF-8, then JSON and the rest.
    """

    def __init__(self, payload: bytes, limit: int):
        self._payload = memoryview(payload)
        self._fed = 0
        self._tail = b""
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._utf8_read = 0  # bytes given to the UTF-8 decoder
        self.limit = limit
        self.size = 0  # bytes inflated
        self.text = ""
        self.pos = 0
        self.offset = 0  # characters dropped before text[0]
        self.ended = False

    def inflate(self) -> bytes | None:
        """The next piece of the decoded payload (None at its end); raises WireError for a gzip
        fault."""
        inflater = self._inflater
        while not inflater.eof:
            data = self._tail
            if not data:
                if self._fed >= len(self._payload):
                    raise WireError("The attachment's gzip data is truncated.")
                data = self._payload[self._fed : self._fed + FEED_SIZE]
                self._fed += len(data)
            try:
                # Never 0, which would mean no limit: size stays at most limit until it is refused.
                raw = inflater.decompress(data, min(READ_SIZE, self.limit + 1 - self.size))
            except zlib.error as exc:
                raise WireError(f"The attachment is not valid gzip data ({exc}).") from None
            self._tail = inflater.unconsumed_tail
            self.size += len(raw)
            if self.size > self.limit:
                raise WireError(
                    f"The attachment expands beyond {self.limit} bytes; refused as a gzip bomb."
                )
            if raw:
                return raw
        if inflater.unused_data or self._fed < len(self._payload):
            raise WireError("The attachment has data after the end of its gzip stream.")
        return None

    def _decode(self, raw: bytes, final: bool = False) -> str:
        pending = len(self._utf8.getstate()[0])
        try:
            text = self._utf8.decode(raw, final)
        except UnicodeDecodeError as exc:
            self.refuse(self._not_utf8(exc, self._utf8_read - pending))
        self._utf8_read += len(raw)
        return text

    @staticmethod
    def _not_utf8(exc: UnicodeDecodeError, base: int) -> WireError:
        # The codec's own words, at the position in the whole payload rather than in the piece.
        start, end = base + exc.start, base + exc.end
        if exc.end - exc.start == 1:
            where = f"byte 0x{exc.object[exc.start]:02x} in position {start}"
        else:
            where = f"bytes in position {start}-{end - 1}"
        return WireError(
            f"The attachment is not valid UTF-8 ('utf-8' codec can't decode {where}: {exc.reason})."
        )

    def refuse(self, error: WireError) -> NoReturn:
        """Raise `error`, or a fault of the rest of the payload that the checks name first."""
        utf8_fault = error.args[0].startswith("The attachment is not valid UTF-8")
        while not self.ended:
            raw = self.inflate()  # a gzip fault is raised from here, first
            if raw is None:
                self.ended = True
                raw, final = b"", True
            else:
                final = False
            if not utf8_fault:
                try:
                    self._utf8.decode(raw, final)
                except UnicodeDecodeError as exc:
                    pending = len(self._utf8.getstate()[0])
                    error, utf8_fault = self._not_utf8(exc, self._utf8_read - pending), True
                self._utf8_read += len(raw)
        raise error

    def not_json(self, problem: str, position: int | None = None) -> NoReturn:
        where = self.offset + (self.pos if position is None else position)
        self.refuse(WireError(f"The attachment is not valid JSON ({problem}: char {where})."))

    def more(self, at_least: int = 1) -> bool:
        """Read at least `at_least` more characters (fewer at the end); False if none were."""
        pieces, read = [], 0
        while read < at_least and not self.ended:
            raw = self.inflate()
            if raw is None:
                self.ended = True
                pieces.append(self._decode(b"", final=True))
            else:
                pieces.append(self._decode(raw))
            read += len(pieces[-1])
        if read:
            self.offset += self.pos
            self.text = self.text[self.pos :] + "".join(pieces)
            self.pos = 0
        return read > 0

    def next(self) -> str:
        """Skip whitespace: the next character, or "" at the end of the payload."""
        while True:
            self.pos = _WHITESPACE.match(self.text, self.pos).end()
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more(READ_SIZE):
                return ""

    def value(self, what: str) -> tuple[object, int, int]:
        """The JSON value at `pos`, read whole: (value, start, end) in `text`; `pos` goes past
        it. `what` names it if it is too long."""
        while True:
            start = self.pos
            try:
                value, end = _scan(self.text, start)
            except json.JSONDecodeError as exc:
                # Cut short by the end of what was read, maybe: read more and parse it again.
                # (The longest token a fault is reported at the start of is -Infinity; 16 is a
                # margin: a fault near the end, read again with more text, is the same fault.)
                near_end = exc.pos >= len(self.text) - 16  # pragma: no mutate
                cut = near_end or exc.msg.startswith("Unterminated string")
                if not (cut and self._extend(start, what)):
                    self.not_json(exc.msg, exc.pos)
                continue
            except (ValueError, RecursionError) as exc:
                # An integer too long to convert; arrays or objects nested too deep.
                self.refuse(WireError(f"The attachment is not valid JSON ({_clip(str(exc))})."))
            # A number may go on past the text read so far, which may end in the middle of it:
            # after "1" or "1." or "1e+" (the scan takes what comes before as the number).
            number = type(value) in (int, float)
            if number and end + 2 >= len(self.text) and self._extend(start, what):
                continue
            self.pos = end
            return value, start, end

    def _extend(self, start: int, what: str) -> bool:
        length = len(self.text) - start
        if length > MAX_VALUE_LENGTH:
            self.refuse(
                WireError(
                    f"{what} is longer than {MAX_VALUE_LENGTH} characters, which no document "
                    "holds; refused unread."
                )
            )
        # Twice as much each time: a long value is parsed again a few times, not once a piece.
        return self.more(max(length, READ_SIZE))

    def expect(self, character: str, problem: str) -> None:
        if self.next() != character:
            self.not_json(problem)
        self.pos += 1


def _elements(reader: _Reader, what: str) -> Iterator[str]:
    """The JSON text of each element of the array at `pos` (the caller saw its "["), one at a
    time."""
    reader.pos += 1
    if reader.next() == "]":
        reader.pos += 1
        return
    index = 0
    while True:
        index += 1
        reader.next()
        _, start, end = reader.value(f"{what} {index}")
        yield reader.text[start:end]
        following = reader.next()
        if following == "]":
            reader.pos += 1
            return
        reader.expect(",", "Expecting ',' delimiter")


def _fields(reader: _Reader) -> Iterator[tuple[str, str]]:
    """(name, its JSON text) of each field of the object at `pos` (the caller saw its "{"),
    which the caller reads the value of before asking for the next; then checks that nothing but
    whitespace follows."""
    reader.pos += 1
    if reader.next() == "}":
        reader.pos += 1
    else:
        while True:
            if reader.next() != '"':
                reader.not_json("Expecting property name enclosed in double quotes")
            name, start, end = reader.value("A field name")
            text = reader.text[start:end]
            reader.expect(":", "Expecting ':' delimiter")
            reader.next()
            yield name, text
            if reader.next() == "}":
                reader.pos += 1
                break
            reader.expect(",", "Expecting ',' delimiter")
    if reader.next():
        reader.not_json("Extra data")


class _Items:
    """The items of one list of a part, validated a batch at a time as they are read."""

    def __init__(self, name: str):
        self.name = name
        self.adapter = ITEM_LISTS[name]
        self.models: list = []
        self.count = 0
        self.errors: list[dict] = []  # the first few, located from the list on
        self.error_count = 0
        self._batch: list[str] = []

    def read(self, reader: _Reader, cap: int) -> None:
        """Read the array at `pos` (the caller saw its "["), refusing it as soon as it has more
        than `cap` items."""
        reader.pos += 1
        if reader.next() == "]":
            reader.pos += 1
            return
        while self._window(reader, cap) or not self._one_by_one(reader, cap):
            pass

    def _window(self, reader: _Reader, cap: int) -> bool:
        """Validate the whole items of the next BATCH_LENGTH characters at once, if they are cut
        where one item's object ends and the next one's begins (`},{`, as senders write them).

        Where that text is inside a string, or nested, the window cannot be valid JSON on its
        own (JSON strings hold no bare quote, and the brackets would not balance): a window
        that validates is exactly the items the text holds there. False if it does not."""
        # (A shortcut: a window chosen otherwise either validates, and then holds exactly the
        # items there too, or does not, and the items are read one by one: the same items. So
        # the choice of the window is marked `no mutate`: it changes only the speed.)
        if len(reader.text) - reader.pos < BATCH_LENGTH and not reader.ended:  # pragma: no mutate
            reader.more(BATCH_LENGTH)
        text, start = reader.text, reader.pos
        cut = text.rfind("},{", start, start + BATCH_LENGTH)  # pragma: no mutate
        if cut < start:  # pragma: no mutate
            return False
        try:
            window = "[" + text[start : cut + 1] + "]"  # pragma: no mutate
            models = self.adapter.validate_json(window)
        except ValidationError:
            return False  # read one by one, to say what is wrong (or to cut elsewhere)
        self._count(reader, cap, len(models))
        self.models.extend(models)
        reader.pos = cut + 2
        return True  # pragma: no mutate (False: the next items are read one by one instead)

    def _one_by_one(self, reader: _Reader, cap: int) -> bool:
        """Read items one at a time for about BATCH_LENGTH characters, and validate them; True
        when the array has ended."""
        scan, separator, batch = _scan_once, _SEPARATOR.match, self._batch
        # (How long a batch grows changes only how many items are validated at once.)
        length = 0  # pragma: no mutate
        while True:
            # Usually the item and what follows it are in the text read so far: one scan.
            text, start = reader.text, reader.pos
            try:
                end = scan(text, start)[1]
                # (Without a step, the slow way below reads the same item: only slower.)
                step = separator(text, end)  # pragma: no mutate
            except (StopIteration, ValueError, RecursionError):
                step = None
            if step is not None:
                item, last = text[start:end], step.group(1) == "]"
                reader.pos = step.end()
            else:
                # Cut short by the end of what was read, or a fault to name: the slow way.
                reader.next()
                _, start, end = reader.value(f"Item {self.count + len(batch) + 1} of {self.name}")
                item, following = reader.text[start:end], reader.next()
                if following not in (",", "]"):
                    reader.not_json("Expecting ',' delimiter")
                reader.pos += 1
                last = following == "]"
            batch.append(item)
            length += len(item)  # pragma: no mutate (see above)
            self._count(reader, cap, 0)
            full = length >= BATCH_LENGTH  # pragma: no mutate (see above)
            if full or last:
                self._validate()
                return last

    def _count(self, reader: _Reader, cap: int, validated: int) -> None:
        self.count += validated
        if self.count + len(self._batch) > cap:
            reader.refuse(
                WireError(
                    f"The part holds more than {cap} {self.name}, the most this installation "
                    "accepts in one part (INTERORG_MAX_ENTRIES_PER_PART); nothing of it was "
                    "applied."
                )
            )

    def _validate(self) -> None:
        first = self.count
        self.count += len(self._batch)
        try:
            self.models.extend(self.adapter.validate_json("[" + ",".join(self._batch) + "]"))
        except ValidationError as exc:
            # (Only the first five are named, and the url is never shown: how many are kept
            # and with what changes nothing that is said.)
            kept = exc.errors(include_url=False)[: 5 - len(self.errors)]  # pragma: no mutate
            for error in kept:
                where = error["loc"]
                # Positions in the batch become positions in the part.
                if where and isinstance(where[0], int):
                    where = (first + where[0], *where[1:])
                self.errors.append({**error, "loc": (self.name, *where)})
            self.error_count += exc.error_count()
        self._batch.clear()


def _read(reader: _Reader, cap: int) -> tuple[str, dict[str, _Items]]:
    """The document's fields besides its items as JSON text, with each list of items (changes,
    entries) written empty there and read into an _Items."""
    if reader.next() != "{":
        # Valid JSON first (an array a piece at a time), then the shape.
        if reader.next() == "[":
            for _ in _elements(reader, "Element"):
                pass
        else:
            reader.value("The document")
        if reader.next():
            reader.not_json("Extra data")
        reader.refuse(WireError("The document must be a JSON object."))
    header, length = [], 0
    lists: dict[str, _Items] = {}
    for name, text in _fields(reader):
        if name in ITEM_LISTS and reader.next() == "[":
            # A repeated field counts as JSON has it: the last one.
            lists[name] = _Items(name)
            lists[name].read(reader, cap)
            field = text + ":[]"
        else:
            _, start, end = reader.value(f"The field {_clip(text, 40)}")
            field = text + ":" + reader.text[start:end]
        length += len(field) + 1
        if length > MAX_HEADER_LENGTH:
            reader.refuse(
                WireError(
                    f"The document's fields besides its items are longer than "
                    f"{MAX_HEADER_LENGTH} characters, which no document needs; refused unread."
                )
            )
        header.append(field)
    return "{" + ",".join(header) + "}", lists


def decode(payload: bytes) -> Document:
    """Parse and validate a wire payload; raise WireError saying what is wrong with it.

    The payload is read a piece at a time: what it costs is about its items as objects, never
    its decoded text whole (INTERORG_MAX_DECODED_PAYLOAD and INTERORG_MAX_ENTRIES_PER_PART
    bound both)."""
    reader = _Reader(payload, settings.INTERORG_MAX_DECODED_PAYLOAD)
    cap = settings.INTERORG_MAX_ENTRIES_PER_PART
    # A payload read whole in the first piece (most of them) is validated in one call; one that
    # is not valid is read again the long way, which says what is wrong with it.
    if reader.more(READ_SIZE) and reader.ended:
        try:
            document = _adapter.validate_json(reader.text)
        except ValidationError:
            pass
        else:
            if len(getattr(document, _LIST_OF[document.type])) <= cap:
                _check_consistency(document)
                return document
    header, lists = _read(reader, cap)
    try:
        document = _adapter.validate_json(header)
        errors, error_count = [], 0
    except ValidationError as exc:
        document = None
        errors, error_count = exc.errors(include_url=False), exc.error_count()
    # The type's list of items, validated on its own: its problems go where the schema's would.
    tag = (
        document.type
        if document
        else next((e["loc"][0] for e in errors if e["loc"] and e["loc"][0] in _LIST_OF), None)
    )
    items = lists.get(_LIST_OF.get(tag, ""))
    if items is not None and items.error_count:
        # The list is the model's last field: its errors come before the unknown fields'.
        extra = [
            i for i, e in enumerate(errors) if e["type"] == "extra_forbidden" and len(e["loc"]) == 2
        ]
        at = extra[0] if extra else len(errors)
        errors[at:at] = [{**e, "loc": (tag, *e["loc"])} for e in items.errors]
        error_count += items.error_count
    if errors:
        _check_protocol(header)
        raise WireError(_describe(errors, error_count))
    document = document.model_copy(update={items.name: items.models})
    _check_consistency(document)
    return document


def iter_items(payload: bytes, name: str) -> Iterator:
    """The items (plain JSON values) of the list `name` of a payload decoded before, read a
    piece at a time: a part once accepted, read again for some of its fields."""
    reader = _Reader(payload, settings.INTERORG_MAX_DECODED_PAYLOAD)
    if reader.next() != "{":
        reader.refuse(WireError("The document must be a JSON object."))
    for field, text in _fields(reader):
        if field == name and reader.next() == "[":
            for item in _elements(reader, f"Item of {name}"):
                yield json.loads(item)
        else:
            reader.value(f"The field {_clip(text, 40)}")


def _check_protocol(header: str) -> None:
    """The error that comes before the schema's: not our protocol. (`header` is a JSON object:
    the reader has checked it field by field, and refused anything else before.)"""
    probe = json.loads(header)
    if "protocol" not in probe:
        raise WireError(
            f"The document has no protocol version; this installation speaks {PROTOCOL_VERSION}."
        )
    protocol = probe["protocol"]
    # `type`, not just ==: True == 1 and 1.0 == 1 in Python.
    if type(protocol) is not int or protocol != PROTOCOL_VERSION:
        raise WireError(
            f"Protocol version {_clip(repr(protocol))} is not supported; "
            f"this installation speaks version {PROTOCOL_VERSION}."
        )


def _clip(text: str, length: int = 200) -> str:
    """Error messages quote the input; keep what a hostile payload can put in them short."""
    return text if len(text) <= length else text[: length - 1] + "…"


def _describe(errors: list[dict], count: int) -> str:
    problems = []
    for error in errors[:5]:
        where = ".".join(str(part) for part in error["loc"]) or "document"
        problems.append(_clip(f"{where}: {error['msg']}"))
    more = count - len(problems)
    suffix = f" (and {more} more)" if more > 0 else ""
    return "Invalid document: " + "; ".join(problems) + suffix


def _check_consistency(document: Document) -> None:
    if document.part > document.parts:
        raise WireError(f"Part {document.part} of {document.parts} does not exist.")
    if isinstance(document, ExportDocument):
        low, high = document.usn_from, document.usn_through
        if any(not low < change.usn <= high for change in document.changes):
            raise WireError(f"A change lies outside the part's USN range ({low}, {high}].")
    else:
        low, high = document.after, document.through
        if any(not low < entry.usn <= high for entry in document.entries):
            raise WireError(f"An entry lies outside the part's USN range ({low}, {high}].")
    if low > high:
        raise WireError(f"The USN range ({low}, {high}] is empty backwards.")


def payload_limit(max_message_size: int) -> int:
    """Largest gzip payload that fits a message of `max_message_size` bytes once MIME-encoded."""
    return max(1024, (max_message_size - MIME_OVERHEAD) * 3 // 4)


def split(
    items: list[dict],
    max_message_size: int,
    render: Callable[[list[list[dict]], int], dict],
    texts: list[bytes] | None = None,
) -> list[tuple[dict, bytes]]:
    """Cut `items` (in USN order) into parts whose encoded documents fit `max_message_size`.

    `render(chunks, index)` builds the self-contained document of part `index + 1`; it sees all
    chunks so that a part's USN range can start where the previous one ended.
    `texts`, when given, is the JSON of each item, written as is into the payloads: the items
    then need to hold only what `render` reads.
    Returns (document, payload) pairs in part order; always at least one part.
    """
    limit = payload_limit(max_message_size)
    # Each item is serialized once: its length sizes the chunks, its text goes into the payload.
    if texts is None:
        texts = [json_bytes(item) for item in items]
    bounds = _chunk(texts, limit * COMPRESSION_GUESS)
    while True:
        chunks = [items[start:end] for start, end in bounds]
        documents = [render(chunks, index) for index in range(len(chunks))]
        payloads = [
            _gzip(_encode_part(document, chunks[index], texts[start:end]))
            for index, (document, (start, end)) in enumerate(zip(documents, bounds, strict=True))
        ]
        oversize = [i for i, payload in enumerate(payloads) if len(payload) > limit]
        if not oversize:
            return list(zip(documents, payloads, strict=True))
        for i in reversed(oversize):
            start, end = bounds[i]
            if end - start == 1:
                raise WireError(
                    f"One item alone needs more than {max_message_size} bytes; "
                    "raise the maximum message size."
                )
            middle = (start + end) // 2
            bounds[i : i + 1] = [(start, middle), (middle, end)]


def _encode_part(document: dict, chunk: list[dict], texts: list[bytes]) -> bytes:
    """The JSON of `document`, whose list `chunk` is written from the items' `texts`: the same
    text as json_bytes(document), without serializing the items again."""
    keys = list(document)
    lists = [i for i, key in enumerate(keys) if isinstance(document[key], list)]
    # The chunk itself, usually; a renderer may have copied it.
    found = [i for i in lists if document[keys[i]] is chunk] or [
        i for i in lists if document[keys[i]] == chunk
    ]
    if len(found) != 1:
        raise ValueError("The document rendered for a part does not hold its chunk of items.")
    position = found[0]
    before = {key: document[key] for key in keys[:position]}
    after = {key: document[key] for key in keys[position + 1 :]}
    head = json_bytes(before)[:-1] + (b"," if before else b"")
    tail = b"," + json_bytes(after)[1:] if after else b"}"
    return b"".join([head, json_bytes(keys[position]), b":[", b",".join(texts), b"]", tail])


def _chunk(texts: list[bytes] | list[str], budget: int) -> list[tuple[int, int]]:
    """Consecutive (start, end) ranges of items whose JSON (and a comma each) fits `budget`,
    of at most MAX_ITEMS_PER_PART items; an item larger than the budget gets a range of its own.
    Always at least one range."""
    bounds = []
    start, used = 0, 0
    for index, text in enumerate(texts):
        size = len(text) + 1
        if index > start and (used + size > budget or index - start >= MAX_ITEMS_PER_PART):
            bounds.append((start, index))
            start, used = index, 0
        used += size
    bounds.append((start, len(texts)))
    return bounds
