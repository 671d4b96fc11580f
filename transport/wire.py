"""The wire format (docs/protocol.md): gzip JSON documents, strictly validated, split by size."""

import gzip
import json
import re
import zlib
from collections.abc import Callable
from typing import Annotated, Literal
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
    limit = limit or settings.INTERORG_MAX_DECODED_PAYLOAD
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        raw = inflater.decompress(payload, limit + 1)
    except zlib.error as exc:
        raise WireError(f"The attachment is not valid gzip data ({exc}).") from None
    if len(raw) > limit or inflater.unconsumed_tail:
        raise WireError(f"The attachment expands beyond {limit} bytes; refused as a gzip bomb.")
    if not inflater.eof:
        raise WireError("The attachment's gzip data is truncated.")
    if inflater.unused_data:
        raise WireError("The attachment has data after the end of its gzip stream.")
    return raw


def decode(payload: bytes) -> Document:
    """Parse and validate a wire payload; raise WireError saying what is wrong with it."""
    raw = decompress(payload)
    try:
        raw.decode("utf-8")  # strictly: json.loads alone lets encoded surrogates through
    except UnicodeDecodeError as exc:
        raise WireError(f"The attachment is not valid UTF-8 ({exc}).") from None
    # One parse for a valid document; an invalid one is parsed again to say what is wrong.
    try:
        document = _adapter.validate_json(raw)
    except ValidationError as exc:
        _probe(raw)
        raise WireError(_describe(exc)) from None
    _check_consistency(document)
    return document


def _probe(raw: bytes) -> None:
    """The errors that come before the schema's: not JSON, not an object, not our protocol."""
    try:
        probe = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        # ValueError: bad JSON, or an integer too long to convert; RecursionError: nested too deep.
        raise WireError(f"The attachment is not valid JSON ({_clip(str(exc))}).") from None
    if not isinstance(probe, dict):
        raise WireError("The document must be a JSON object.")
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


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(part) for part in error["loc"]) or "document"
        problems.append(_clip(f"{where}: {error['msg']}"))
    more = exc.error_count() - len(problems)
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
    """Consecutive (start, end) ranges of items whose JSON (and a comma each) fits `budget`;
    an item larger than the budget gets a range of its own. Always at least one range."""
    bounds = []
    start, used = 0, 0
    for index, text in enumerate(texts):
        size = len(text) + 1
        if index > start and used + size > budget:
            bounds.append((start, index))
            start, used = index, 0
        used += size
    bounds.append((start, len(texts)))
    return bounds
