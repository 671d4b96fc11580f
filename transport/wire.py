"""The wire format (docs/protocol.md): gzip JSON documents, strictly validated, split by size."""

import gzip
import json
import re
import zlib
from collections.abc import Callable
from typing import Annotated, Literal
from uuid import UUID

from django.conf import settings
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from directory.constants import GENERAL_ATTRIBUTES, Kind
from transport.constants import PROTOCOL_VERSION

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
    value = _NEWLINE.sub("\n" if name in MULTILINE_ATTRIBUTES else " ", value)
    return _FORBIDDEN.sub("", value)[: GENERAL_ATTRIBUTES[name]]


def _check_attrs(attrs: dict[str, str]) -> dict[str, str]:
    for name, value in attrs.items():
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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Sender(_Strict):
    organization: OrgName
    address: Address


class Change(_Strict):
    """One change of an export: the current state of a source object, or its deletion."""

    id: UUID
    op: Literal["upsert", "delete"]
    kind: KindName
    usn: Count
    attrs: Attrs


class Entry(_Strict):
    """One entry of a reply: the master's latest state of a global entry."""

    key: Annotated[
        str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")
    ]
    origin: OrgName
    op: Literal["upsert", "delete"]
    kind: KindName
    usn: Positive
    attrs: Attrs


class _Document(_Strict):
    protocol: Literal[1]
    sender: Sender
    batch: UUID
    part: PartNumber
    parts: PartNumber
    sequence: Positive
    full: bool


class ExportDocument(_Document):
    type: Literal["export"]
    master_usn: Count
    master_epoch: UUID | None
    usn_from: Count
    usn_through: Count
    changes: list[Change]


class ReplyDocument(_Document):
    type: Literal["reply"]
    in_reply_to: UUID
    epoch: UUID
    ack: Count
    after: Count
    through: Count
    entries: list[Entry]


Document = ExportDocument | ReplyDocument
_adapter = TypeAdapter(Annotated[Document, Field(discriminator="type")])


def encode(document: dict) -> bytes:
    """Serialize a document (plain JSON types) to its gzip-compressed wire form."""
    return _gzip(json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode())


def _gzip(raw: bytes) -> bytes:
    return gzip.compress(raw, compresslevel=6, mtime=0)


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
        text = raw.decode("utf-8")  # strictly: json.loads alone lets encoded surrogates through
    except UnicodeDecodeError as exc:
        raise WireError(f"The attachment is not valid UTF-8 ({exc}).") from None
    try:
        probe = json.loads(text)
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
    try:
        document = _adapter.validate_json(raw)
    except ValidationError as exc:
        raise WireError(_describe(exc)) from None
    _check_consistency(document)
    return document


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
) -> list[tuple[dict, bytes]]:
    """Cut `items` (in USN order) into parts whose encoded documents fit `max_message_size`.

    `render(chunks, index)` builds the self-contained document of part `index + 1`; it sees all
    chunks so that a part's USN range can start where the previous one ended.
    Returns (document, payload) pairs in part order; always at least one part.
    """
    limit = payload_limit(max_message_size)
    sizes = [len(json.dumps(item, separators=(",", ":"), ensure_ascii=False)) + 1 for item in items]
    chunks = _chunk(items, sizes, limit * COMPRESSION_GUESS)
    while True:
        encoded = [render(chunks, index) for index in range(len(chunks))]
        payloads = [encode(document) for document in encoded]
        oversize = [i for i, payload in enumerate(payloads) if len(payload) > limit]
        if not oversize:
            return list(zip(encoded, payloads, strict=True))
        for i in reversed(oversize):
            chunk = chunks[i]
            if len(chunk) == 1:
                raise WireError(
                    f"One item alone needs more than {max_message_size} bytes; "
                    "raise the maximum message size."
                )
            middle = len(chunk) // 2
            chunks[i : i + 1] = [chunk[:middle], chunk[middle:]]


def _chunk(items: list[dict], sizes: list[int], budget: int) -> list[list[dict]]:
    chunks: list[list[dict]] = [[]]
    used = 0
    for item, size in zip(items, sizes, strict=True):
        if chunks[-1] and used + size > budget:
            chunks.append([])
            used = 0
        chunks[-1].append(item)
        used += size
    return chunks
