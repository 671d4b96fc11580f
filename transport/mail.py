"""Messages as e-mail: the MIME form of an archived message part, and the intake of received mail.

One message part travels as one e-mail: a short text body for people, the payload as the
attachment `interorg.json.gz`, the signature and key fingerprint in `X-InterOrg-*` headers and a
Message-ID fixed before the first attempt. Whatever arrives (SMTP or IMAP) goes through
`accept_mime`, which archives it before anything else happens; a mail that is not a usable
InterOrg message is archived all the same and marked rejected with the reason.

Duplicates: a Message-ID already archived from the same sender for the same recipient (a retry
after a lost "250", an IMAP message fetched again after a crash) is acknowledged and not archived
again; `accept_mime` returns the earlier copy.
"""

import logging
import re
from dataclasses import dataclass
from email import policy
from email.errors import (
    InvalidBase64CharactersDefect,
    InvalidBase64LengthDefect,
    InvalidBase64PaddingDefect,
)
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, make_msgid

from django.core import mail as django_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from transport import archive, outbox
from transport.bounces import Bounce, apply_bounce, read_bounce
from transport.constants import (
    ATTACHMENT_NAME,
    ATTACHMENT_TYPE,
    AddressType,
    Direction,
    MessageKind,
    Status,
)
from transport.models import Message
from transport.registry import is_local_address, sender_refusal

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-InterOrg-Signature"
KEY_HEADER = "X-InterOrg-Key"

# C0/C1 controls, DEL and the Unicode line/paragraph separators and bidi overrides: nothing of
# this belongs in a header, an address or a reason shown in the console.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_FINGERPRINT = re.compile(r"^[A-Za-z0-9+/=:._-]+$")
_BASE64_DEFECTS = (
    InvalidBase64CharactersDefect,
    InvalidBase64LengthDefect,
    InvalidBase64PaddingDefect,
)
MAX_ADDRESS = Message._meta.get_field("sender").max_length
MAX_MESSAGE_ID = Message._meta.get_field("message_id").max_length
MAX_FINGERPRINT = Message._meta.get_field("key_fingerprint").max_length
MAX_SIGNATURE = 512  # an Ed25519 signature is 88 characters of base64


def one_line(text: str, limit: int = 200) -> str:
    """`text` made safe for a header or a log line: controls become spaces, runs of spaces one."""
    return " ".join(CONTROL_CHARACTERS.sub(" ", str(text)).split())[:limit]


# --- outbound -------------------------------------------------------------------------------


def new_message_id(sender: str) -> str:
    """A Message-ID in the sender's domain (or a reserved one for an EX sender)."""
    _, at, domain = sender.rpartition("@")
    domain = re.sub(r"[^A-Za-z0-9.-]", "", domain) if at else ""
    domain = domain or "interorg.invalid"
    return make_msgid("interorg", domain=domain)


def _organization(message: Message) -> tuple[str, str]:
    """(short name, display name) of the sending organization, made fit for a header."""
    sender = message.summary.get("sender") if isinstance(message.summary, dict) else None
    name = sender.get("organization", "") if isinstance(sender, dict) else ""
    organization = message.organization
    name = name or (organization.name if organization else "")
    display = organization.display_name if organization else ""
    return one_line(name, 64) or "?", one_line(display, 120)


def subject(message: Message) -> str:
    """'InterOrg export ORG2 part 1/1 (USN 0-120]': one line whatever the names contain."""
    name, _ = _organization(message)
    text = f"InterOrg {message.kind} {name} part {message.part}/{message.parts}"
    if message.usn_from is not None:
        text += f" (USN {message.usn_from}-{message.usn_through}]"
    return one_line(text, 200)


def body(message: Message) -> str:
    """The text part: what the message is, for a person who opens it in a mail client."""
    name, display = _organization(message)
    summary = message.summary if isinstance(message.summary, dict) else {}
    items = "Changes" if message.kind == MessageKind.EXPORT else "Entries"
    lines = [
        f"This is an InterOrg Sync {message.kind} message from {name}"
        + (f" ({display})." if display else "."),
        "",
        f"Sender:     {one_line(message.sender)}",
        f"Recipient:  {one_line(message.recipient)}",
        f"Batch:      {message.batch}, part {message.part} of {message.parts}",
        f"Sequence:   {message.sequence}",
        f"{items + ':':<11} {summary.get('count', '?')}",
        f"USN range:  {message.usn_range or '-'}",
        f"Full:       {'yes' if summary.get('full') else 'no'}",
        "",
        "It is processed automatically; the data is in the signed attachment "
        f"{ATTACHMENT_NAME} (gzip-compressed JSON). Please do not reply.",
    ]
    return "\n".join(lines) + "\n"


def build_email(message: Message, connection=None) -> django_mail.EmailMessage:
    """The e-mail for an outbound message part; `message.message_id` must be set."""
    email = django_mail.EmailMessage(
        subject=subject(message),
        body=body(message),
        from_email=message.sender,
        to=[message.recipient],
        connection=connection,
        # RFC 3834: no vacation notices or other auto-replies to an agent's mail.
        headers={"Message-ID": message.message_id, "Auto-Submitted": "auto-generated"},
    )
    if message.signature:
        email.extra_headers[SIGNATURE_HEADER] = message.signature
    if message.key_fingerprint:
        email.extra_headers[KEY_HEADER] = message.key_fingerprint
    email.attach(ATTACHMENT_NAME, bytes(message.payload), ATTACHMENT_TYPE)
    return email


# --- inbound --------------------------------------------------------------------------------


@dataclass
class Parsed:
    """What `parse` found in a received mail; `problem` says why it cannot be processed."""

    payload: bytes | None = None
    signature: str = ""
    key_fingerprint: str = ""
    message_id: str = ""
    from_address: str = ""
    to_addresses: tuple[str, ...] = ()
    problem: str = ""
    bounce: Bounce | None = None


def parse(raw: bytes) -> Parsed:
    """Take a received mail apart; never raises, whatever the bytes are."""
    parsed = Parsed()
    try:
        mail = BytesParser(policy=policy.default).parsebytes(raw)
    except Exception as exc:  # the parser records defects; this is for its own bugs
        parsed.problem = f"The mail cannot be parsed as MIME: {one_line(exc)}"
        return parsed
    _read_headers(mail, parsed)
    try:
        parsed.bounce = read_bounce(mail)
    except Exception as exc:  # a report too broken to read is a mail like any other
        log.info("a delivery report could not be read: %s", one_line(exc))
    problem = _read_attachment(mail, parsed)
    parsed.problem = parsed.problem or problem
    return parsed


def _header(mail: EmailMessage, name: str) -> list[str]:
    try:
        return [str(value) for value in mail.get_all(name) or []]
    except Exception:  # a header policy.default cannot make sense of
        return []


def _addresses(mail: EmailMessage, *names: str) -> tuple[str, ...]:
    values = [value for name in names for value in _header(mail, name)]
    try:
        pairs = getaddresses(values)
    except Exception:
        return ()
    return tuple(one_line(addr, MAX_ADDRESS + 1) for _, addr in pairs if addr and "@" in addr)


def _read_headers(mail: EmailMessage, parsed: Parsed) -> None:
    message_ids = _header(mail, "Message-ID")
    parsed.message_id = one_line(message_ids[0], MAX_MESSAGE_ID + 1) if message_ids else ""
    parsed.from_address = next(
        iter(_addresses(mail, "From") or _addresses(mail, "Return-Path")), ""
    )
    parsed.to_addresses = _addresses(mail, "To", "Cc", "Delivered-To")
    signatures, keys = _header(mail, SIGNATURE_HEADER), _header(mail, KEY_HEADER)
    # Folding may have split a long value; base64 and fingerprints have no spaces of their own.
    signature = "".join("".join(signatures[:1]).split())
    key = "".join("".join(keys[:1]).split())
    if len(signatures) > 1 or len(keys) > 1:
        parsed.problem = f"The mail has more than one {SIGNATURE_HEADER} or {KEY_HEADER} header."
    elif signature and (len(signature) > MAX_SIGNATURE or not _BASE64.match(signature)):
        parsed.problem = f"The {SIGNATURE_HEADER} header is not a base64 signature."
    elif key and (len(key) > MAX_FINGERPRINT or not _FINGERPRINT.match(key)):
        parsed.problem = f"The {KEY_HEADER} header is not a key fingerprint."
    elif len(parsed.message_id) > MAX_MESSAGE_ID:
        parsed.problem = "The Message-ID header is too long."
    else:
        parsed.signature, parsed.key_fingerprint = signature, key
    if len(parsed.message_id) > MAX_MESSAGE_ID:
        parsed.message_id = ""


def _attachments(mail: EmailMessage) -> list[EmailMessage]:
    """Every part that is an attachment, in order; an attached mail counts as one."""
    found, stack = [], [mail]
    while stack:
        part = stack.pop(0)
        if part.is_multipart() and part.get_content_maintype() == "multipart":
            stack[:0] = part.get_payload()
        elif (
            part.is_multipart()
            or part.get_content_disposition() == "attachment"
            or part.get_filename() is not None
        ):
            found.append(part)
    return found


def _read_attachment(mail: EmailMessage, parsed: Parsed) -> str:
    try:
        attachments = _attachments(mail)
        names = [
            one_line(part.get_filename() or part.get_content_type(), 80) for part in attachments
        ]
        if not attachments:
            return f"The mail has no attachment; an InterOrg message carries {ATTACHMENT_NAME}."
        if len(attachments) > 1:
            return (
                f"The mail has {len(attachments)} attachments ({', '.join(names)}); an InterOrg "
                f"message carries exactly one, {ATTACHMENT_NAME}."
            )
        [part] = attachments
        if part.get_filename() != ATTACHMENT_NAME:
            return f"The attachment is {names[0]}, not {ATTACHMENT_NAME}."
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or any(
            isinstance(defect, _BASE64_DEFECTS) for defect in part.defects
        ):
            return f"The attachment {ATTACHMENT_NAME} is damaged (bad base64 encoding)."
    except Exception as exc:
        return f"The mail's MIME structure cannot be read: {one_line(exc)}"
    parsed.payload = payload
    return ""


def _recipient(parsed: Parsed) -> str:
    """The agent address a mail fetched from a mailbox was sent to (no envelope there)."""
    for address in parsed.to_addresses:
        if is_local_address(address):
            return address
    return next(iter(parsed.to_addresses), "")


def accept_mime(
    raw: bytes, envelope_sender: str = "", envelope_recipient: str = "", *, problem: str = ""
) -> Message:
    """Archive a received mail (committed when this returns) and return its archive entry.

    Without an envelope (IMAP), the sender is the From (or Return-Path) address and the recipient
    the first agent address of this installation among To, Cc and Delivered-To. A mail from a
    sender the recipient's agent does not take, or that is not a usable InterOrg message (or
    comes with a `problem` found by the caller), is archived by its header, size and digest,
    then rejected; its body is not kept (transport.archive).
    """
    parsed = parse(raw)
    sender = one_line(envelope_sender, MAX_ADDRESS + 1) or parsed.from_address
    recipient = one_line(envelope_recipient, MAX_ADDRESS + 1) or _recipient(parsed)
    if not sender or not recipient:
        problem = problem or "The mail names no sender or no recipient address."
    if len(sender) > MAX_ADDRESS or len(recipient) > MAX_ADDRESS:
        problem = problem or "The sender or recipient address is too long."
        sender, recipient = sender[:MAX_ADDRESS], recipient[:MAX_ADDRESS]
    # Who sent it comes first: what a stranger's mail contains does not matter.
    if parsed.bounce is None and not problem:
        problem = sender_refusal(sender, recipient) or ""
    problem = problem or parsed.problem
    arrival = {"digest": archive.digest_of(raw), "headers": archive.header_of(raw)}
    with transaction.atomic():
        earlier = _earlier_copy(sender, recipient, parsed.message_id)
        if earlier is not None:
            log.info("mail %s from %s is message %s again", parsed.message_id, sender, earlier.pk)
            return earlier
        if parsed.bounce is not None and sender and recipient:
            return _archive_bounce(raw, sender, recipient, parsed, arrival)
        if problem:
            arrival.update(archive.rejected(raw))
        try:
            with transaction.atomic():
                message = outbox.receive(
                    sender,
                    recipient,
                    arrival.pop("payload", parsed.payload),
                    AddressType.SMTP,
                    signature=parsed.signature,
                    key_fingerprint=parsed.key_fingerprint,
                    message_id=parsed.message_id,
                    **arrival,
                )
        except IntegrityError:
            # Another copy was archived at the same moment (the unique constraint waited for it).
            earlier = _earlier_copy(sender, recipient, parsed.message_id)
            if earlier is None:
                raise
            log.info("mail %s from %s is message %s again", parsed.message_id, sender, earlier.pk)
            return earlier
        if problem:
            message.status, message.error = Status.REJECTED, problem
            message.processed_at = timezone.now()
            message.save(update_fields=["status", "error", "processed_at"])
            log.warning(
                "mail from %s archived as message %s, rejected: %s", sender, message.pk, problem
            )
    return message


def _archive_bounce(
    raw: bytes, sender: str, recipient: str, parsed: Parsed, arrival: dict
) -> Message:
    """A delivery report: archived as such, and the message it reports on failed if the
    failure is permanent and this agent sent it. Only a report on a message this agent sent
    keeps its body: anyone can write one."""
    bounce = parsed.bounce
    failed = apply_bounce(bounce, recipient)
    if failed is not None:
        status, error = Status.PROCESSED, ""
        arrival.update(payload=raw, size=len(raw))
    else:
        arrival.update(archive.rejected(raw))
        if bounce.permanent:
            status, error = Status.REJECTED, "A delivery report on no message this agent sent."
        else:
            status, error = Status.PROCESSED, ""
    return Message.objects.create(
        direction=Direction.INBOUND,
        status=status,
        kind=MessageKind.BOUNCE,
        sender=sender,
        recipient=recipient,
        address_type=AddressType.SMTP,
        message_id=parsed.message_id,
        error=error,
        processed_at=timezone.now(),
        summary={
            "bounce_for": failed.pk if failed else None,
            "original_message_id": one_line(bounce.original_message_id, 200),
            "action": one_line(bounce.action, 40),
            "status": one_line(bounce.status, 40),
            "diagnostic": one_line(bounce.diagnostic, 500),
        },
        **arrival,
    )


def _earlier_copy(sender: str, recipient: str, message_id: str) -> Message | None:
    if not message_id:
        return None
    return (
        Message.objects.filter(
            direction=Direction.INBOUND,
            message_id=message_id,
            sender__iexact=sender,
            recipient__iexact=recipient,
        )
        .order_by("id")
        .first()
    )
