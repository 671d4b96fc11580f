"""IMAP polling of an agent's mailbox: each message archived, then moved out of the way.

A message leaves the polled folder only after its archive entry is committed. A crash in between
leaves it there; the next poll fetches it again and `accept_mime` recognizes its Message-ID, so
nothing is lost and nothing is archived twice. Every message in the folder is taken, read or not:
someone opening the agent's mailbox in a mail client must not make a message skip the sync.
"""

import contextlib
import logging
import ssl
from dataclasses import dataclass, field

from django.conf import settings
from imapclient import IMAPClient

from transport import archive
from transport.constants import Status
from transport.mail import accept_mime, one_line
from transport.models import Message

log = logging.getLogger(__name__)

SECURITY_CHOICES = ("ssl", "starttls", "plain")


@dataclass(frozen=True)
class Mailbox:
    """Where and how to fetch an agent's mail."""

    host: str
    user: str
    password: str = field(repr=False)
    port: int | None = None
    security: str = "ssl"  # ssl (IMAPS), starttls, or plain (loopback and tests only)
    folder: str = "INBOX"
    processed_folder: str = "InterOrg/Processed"  # "/" stands for the server's separator
    recipient: str = ""  # the agent address this mailbox receives for; default: from To/Cc
    timeout: float = 60
    # PEM file of the CAs to trust instead of the system's; default INTERORG_IMAP_CA_FILE.
    ca_file: str = ""

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.security == "ssl" else 143)


@dataclass
class Poll:
    """What one poll did."""

    archived: list[Message] = field(default_factory=list)
    moved: int = 0


def connect(mailbox: Mailbox) -> IMAPClient:
    """A logged-in client; the password goes to the server and nowhere else."""
    if mailbox.security not in SECURITY_CHOICES:
        raise ValueError(f"security must be one of {', '.join(SECURITY_CHOICES)}")
    context = ssl.create_default_context(
        cafile=mailbox.ca_file or settings.INTERORG_IMAP_CA_FILE or None
    )
    client = IMAPClient(
        mailbox.host,
        port=mailbox.effective_port,
        ssl=mailbox.security == "ssl",
        ssl_context=context,
        timeout=mailbox.timeout,
    )
    try:
        if mailbox.security == "starttls":
            client.starttls(context)
        client.login(mailbox.user, mailbox.password)
    except BaseException:
        # A failed STARTTLS handshake closed the socket already: its error is the one to tell.
        with contextlib.suppress(OSError):
            client.shutdown()
        raise
    return client


def poll(mailbox: Mailbox, after_archive=None) -> Poll:
    """Archive every message of the folder and move it to the processed folder.

    `after_archive(message)` runs after each commit, before the move (a test simulates a crash
    there). Once the archive is full (INTERORG_ARCHIVE_MAX_BYTES), the rest stays in the folder
    for a later poll, as the SMTP receiver answers 452.
    """
    result = Poll()
    client = connect(mailbox)
    try:
        processed = server_folder(client, mailbox.processed_folder)
        if not client.folder_exists(processed):
            client.create_folder(processed)
        client.select_folder(mailbox.folder)
        stored = archive.usage()
        for uid in client.search(["UNDELETED"]):
            if stored >= settings.INTERORG_ARCHIVE_MAX_BYTES:
                log.warning("message archive full: the rest of %s stays for later", mailbox.folder)
                break
            message = _archive(client, uid, mailbox)
            if message is None:
                continue
            stored += 0 if message.body_dropped else message.size
            result.archived.append(message)
            if after_archive is not None:
                after_archive(message)
            move(client, uid, processed)
            result.moved += 1
    finally:
        _logout(client)
    return result


def _archive(client: IMAPClient, uid: int, mailbox: Mailbox) -> Message | None:
    limit = settings.INTERORG_MAX_INBOUND_MESSAGE
    size = client.fetch([uid], ["RFC822.SIZE"]).get(uid, {}).get(b"RFC822.SIZE")
    if size is None:  # expunged meanwhile by someone else
        return None
    problem = ""
    # PEEK: a message we fail to archive stays as it was, unread.
    part = "BODY[]"
    if size > limit:
        # What the SMTP receiver refuses with 552: here only its header is kept, and why.
        part, problem = "BODY[HEADER]", f"The mail is {size} bytes, more than the {limit} accepted."
    raw = client.fetch([uid], [part.replace("BODY", "BODY.PEEK")]).get(uid, {}).get(part.encode())
    if raw is None:
        return None
    message = accept_mime(raw, "", mailbox.recipient, problem=problem)
    if message.status == Status.REJECTED:
        log.warning("IMAP message %s archived as %s, rejected: %s", uid, message.pk, message.error)
    else:
        log.info("IMAP message %s archived as message %s", uid, message.pk)
    return message


def server_folder(client: IMAPClient, name: str) -> str:
    """A folder path written with "/" in the server's own hierarchy separator."""
    try:
        personal = client.namespace().personal
        separator = personal[0][1] if personal else "/"
    except Exception:
        separator = "/"
    if isinstance(separator, bytes):
        separator = separator.decode()
    return name.replace("/", separator) if separator else name


def move(client: IMAPClient, uid: int, folder: str) -> None:
    """MOVE (RFC 6851) where the server has it; COPY, \\Deleted and EXPUNGE where it does not."""
    if client.has_capability("MOVE"):
        client.move([uid], folder)
        return
    client.copy([uid], folder)
    client.delete_messages([uid])
    if client.has_capability("UIDPLUS"):
        client.uid_expunge([uid])
    else:
        client.expunge()


def _logout(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception as exc:
        log.debug("IMAP logout failed: %s", one_line(exc))
        with contextlib.suppress(OSError):
            client.shutdown()
