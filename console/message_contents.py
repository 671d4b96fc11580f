"""What an archived message carried, for its console page: the entries of its signed payload as
a table, and the message as an e-mail file (.eml).

The archive keeps one of two things as a message's body (transport.archive): the whole mail as
it arrived, for a delivery report or a rejected mail kept for troubleshooting (its SHA-256
`digest` is that of these very bytes), or else the signed payload, the gzip JSON document the
mail carried. A body not kept (rejected mail, by default) has neither."""

import hashlib
from dataclasses import dataclass, field
from email.utils import format_datetime

from transport import wire
from transport.constants import MessageKind
from transport.mail import build_email
from transport.models import Message

# The entries a message page lists; the rest are counted. A part carries up to
# INTERORG_MAX_ENTRIES_PER_PART of them, too many for one page.
ENTRIES_SHOWN = 100
# The Message-ID of a message rebuilt without one (an EX delivery has none): a reserved domain.
NO_MESSAGE_ID = "<archive-{pk}@interorg.invalid>"


@dataclass
class Contents:
    """The entries of a message: the first `ENTRIES_SHOWN` of `count`, or why there are none."""

    rows: list[dict] = field(default_factory=list)
    count: int = 0
    items: str = ""
    problem: str = ""

    @property
    def more(self) -> int:
        return self.count - len(self.rows)


def body_of(message: Message) -> bytes:
    """The stored body (b"" when it was not kept)."""
    return b"" if message.body_dropped else bytes(message.payload or b"")


def is_whole_mail(message: Message, body: bytes) -> bool:
    """Whether the body is the mail as it arrived, byte for byte (its digest says so)."""
    return bool(body and message.digest) and hashlib.sha256(body).hexdigest() == message.digest


def contents(message: Message, body: bytes) -> Contents | None:
    """The entries the message carried, read from its signed payload; None when its body is
    not a payload (not kept, or the whole mail of a rejected one or of a delivery report)."""
    if not body or is_whole_mail(message, body) or message.kind == MessageKind.BOUNCE:
        return None
    try:
        document = wire.decode(body)
    except wire.WireError as exc:
        return Contents(problem=str(exc))
    items = document.changes if document.type == MessageKind.EXPORT else document.entries
    rows = [_row(item) for item in items[:ENTRIES_SHOWN]]
    name = "changes" if document.type == MessageKind.EXPORT else "entries"
    return Contents(rows=rows, count=len(items), items=name)


def _row(item) -> dict:
    attrs = item.attrs
    return {
        "op": item.op,
        "kind": item.kind,
        "usn": item.usn,
        # An export names the source object; a reply the global entry and its origin.
        "key": getattr(item, "key", None) or str(item.id),
        "origin": getattr(item, "origin", ""),
        "display_name": attrs.get("display_name", ""),
        "alias": attrs.get("alias", ""),
        "primary_smtp": attrs.get("primary_smtp", ""),
    }


def eml(message: Message) -> tuple[bytes, bool] | None:
    """The message as an e-mail file and whether it is the mail as it arrived; None when its
    body was not kept.

    A mail kept whole is given back byte for byte. One whose signed payload is kept is the
    e-mail an agent sends for it (transport.mail.build_email): its header and text rebuilt, its
    attachment the stored payload byte for byte, its signature the stored one."""
    body = body_of(message)
    if not body:
        return None
    if is_whole_mail(message, body) or message.kind == MessageKind.BOUNCE:
        return body, True
    if not message.message_id:
        message.message_id = NO_MESSAGE_ID.format(pk=message.pk)
    email = build_email(message)
    email.extra_headers["Date"] = format_datetime(message.created_at)
    return email.message().as_bytes(), False
