"""SMTP both ways: queued message parts sent through the relay, and the receiver of `run_smtpd`.

Sending goes through Django's e-mail framework, so EMAIL_HOST, EMAIL_PORT, EMAIL_USE_TLS
(STARTTLS), EMAIL_USE_SSL, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD and EMAIL_TIMEOUT apply. A
message is claimed before it is sent, so two workers never send it at once; a temporary failure
keeps it queued with a growing delay, a refusal of the sender or recipient (5xx) fails it.
"""

import asyncio
import base64
import hmac
import logging
import smtplib
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import BadHeaderError
from django.core.mail.message import sanitize_address
from django.db import close_old_connections, connections
from django.db.models import Q
from django.utils import timezone

from transport import archive, registry
from transport.constants import Direction, Status
from transport.inbox import process_safely
from transport.limits import Connections, Gate, Limits
from transport.mail import (
    CONTROL_CHARACTERS,
    accept_mime,
    build_email,
    new_message_id,
    one_line,
)
from transport.models import Message
from transport.registry import is_local_address, sender_refusal

log = logging.getLogger(__name__)

# A claimed message is not due again for this long: if the worker sending it dies, another one
# sends it after that, with the same Message-ID, and the receiver drops the second copy.
CLAIM_LEASE = timedelta(minutes=15)
RETRY_FIRST = 30  # seconds; doubled after every failed attempt
RETRY_MAX = 3600


class PermanentFailure(Exception):
    """The message can never be sent as it is; the reason says why."""


# --- outbound -------------------------------------------------------------------------------


def send_queued(pk: int) -> bool:
    """Send one queued message by SMTP; True if it was sent or failed for good, False if it
    stays queued (not due, claimed by another worker, or a temporary failure)."""
    message = claim(pk)
    if message is None:
        return False
    try:
        _check(message)
        sent = build_email(message).send()
        if not sent:
            raise PermanentFailure("The e-mail backend sent nothing.")
    except Exception as exc:
        if isinstance(exc, PermanentFailure | BadHeaderError) or is_permanent(exc):
            _finish(message, status=Status.FAILED, error=describe(exc))
            return True
        _retry_later(message, describe(exc))
        return False
    _finish(message, status=Status.SENT, error="")
    log.info("message %s sent to %s as %s", pk, message.recipient, message.message_id)
    return True


def _due(now) -> Q:
    return Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)


def claim(pk: int) -> Message | None:
    """Take a due queued message for this worker: one attempt more, not due again for the
    lease, and its Message-ID fixed (once, so that every retry repeats it)."""
    now = timezone.now()
    queued = Message.objects.filter(pk=pk, direction=Direction.OUTBOUND, status=Status.QUEUED)
    message = queued.filter(_due(now)).select_related("organization").first()
    if message is None:
        return None
    message_id = message.message_id or new_message_id(message.sender)
    # Conditional on the attempts we saw: of two workers, only one gets the row.
    claimed = queued.filter(_due(now), attempts=message.attempts).update(
        attempts=message.attempts + 1, next_attempt_at=now + CLAIM_LEASE, message_id=message_id
    )
    if not claimed:
        return None
    message.attempts += 1
    message.message_id = message_id
    return message


def _check(message: Message) -> None:
    for name, value in (("sender", message.sender), ("recipient", message.recipient)):
        if CONTROL_CHARACTERS.search(value):
            raise PermanentFailure(f"The {name} address contains control characters.")
        if "@" not in value:
            raise PermanentFailure(
                f"The {name} address {one_line(value)} is not an SMTP address; a message that "
                "leaves by SMTP needs SMTP addresses at both ends (check the agent addresses)."
            )
        try:
            sanitize_address(value, settings.DEFAULT_CHARSET)
        except ValueError:
            raise PermanentFailure(f"The {name} address {one_line(value)} is not valid.") from None
    if not message.payload:
        raise PermanentFailure("The message has no payload.")


def is_permanent(exc: Exception) -> bool:
    """A 5xx refusal of the recipient(s), the sender or the data: sending again cannot help."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return bool(codes) and all(500 <= code < 600 for code in codes)
    if isinstance(exc, smtplib.SMTPSenderRefused | smtplib.SMTPDataError):
        return 500 <= exc.smtp_code < 600
    return False


def describe(exc: Exception) -> str:
    """The failure as the console shows it, without the relay password."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        text = "; ".join(
            f"{address} refused: {code} {_text(reply)}"
            for address, (code, reply) in exc.recipients.items()
        )
    elif isinstance(exc, smtplib.SMTPResponseException):
        text = f"{exc.__class__.__name__}: {exc.smtp_code} {_text(exc.smtp_error)}"
    elif isinstance(exc, PermanentFailure):
        text = str(exc)
    else:
        text = f"{exc.__class__.__name__}: {exc}"
    relay = f"{settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
    return _without_secrets(f"{one_line(text, 900)} (relay {relay})")


def _text(reply) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)


def _without_secrets(text: str) -> str:
    password = settings.EMAIL_HOST_PASSWORD
    if not password:
        return text
    user = settings.EMAIL_HOST_USER
    plain = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    for secret in (password, plain):
        text = text.replace(secret, "********")
    return text


def _finish(message: Message, status: str, error: str) -> None:
    now = timezone.now()
    _update(message, status=status, error=error, processed_at=now, next_attempt_at=None)
    if status == Status.FAILED:
        log.warning("message %s to %s failed: %s", message.pk, message.recipient, error)
        message.status, message.error = status, error
        registry.delivery_failed(message)


def _retry_later(message: Message, error: str) -> None:
    delay = min(RETRY_FIRST * 2 ** (message.attempts - 1), RETRY_MAX)
    _update(message, error=error, next_attempt_at=timezone.now() + timedelta(seconds=delay))
    log.warning(
        "message %s to %s: attempt %s failed, next in %s s: %s",
        message.pk,
        message.recipient,
        message.attempts,
        delay,
        error,
    )


def _update(message: Message, **fields) -> None:
    # Only while the claim is still ours: a worker that took over after the lease decides.
    Message.objects.filter(pk=message.pk, status=Status.QUEUED, attempts=message.attempts).update(
        **fields
    )


# --- inbound --------------------------------------------------------------------------------

# The archive's size is counted in the database at most this often; between two counts the
# receiver adds what it let in itself.
ARCHIVE_RECOUNT_SECONDS = 10
ARCHIVE_FULL = "452 4.3.1 The message archive is full; try again later"


def _with_db(func, *args):
    """Run database work in a worker thread the way Django runs a request."""
    close_old_connections()
    try:
        return func(*args)
    finally:
        close_old_connections()


def _declared_size(mail_options: list[str]) -> int:
    for option in mail_options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return 0


def _check_recipient(address: str, sender: str) -> tuple[bool, bool]:
    """(an agent here receives at `address`, it takes mail from `sender`)."""
    if not is_local_address(address):
        return False, False
    return True, sender_refusal(sender, address) is None


class Handler:
    """aiosmtpd handler: only agent addresses of this installation are accepted, and a message
    is in the archive before the client hears 250; processing follows (inline or by a task).

    Before that, the limits (transport.limits) and the archive's size cap may answer 4xx. A
    sender the recipient's agent does not take is known at RCPT; its mail is recorded without
    its body (transport.archive) and counts against the limit of unknown senders."""

    def __init__(self, process_inline: bool):
        self.process_inline = process_inline
        self.gate = Gate(Limits.from_settings())
        self.closed = False
        self._archive_bytes = 0
        self._archive_counted_at: float | None = None
        # SMTP sessions run concurrently on the event loop; their database work goes to one
        # thread: inbound InterOrg mail is a few messages per cycle, and SQLite wants one writer.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smtpd-db")
        # Processing inline, and sending what it queued (replies), happen on a thread of their
        # own: a slow relay or a large payload never keeps another client waiting for 250.
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smtpd-work")
        self._sweep_lock = threading.Lock()
        self._sweep_queued = False

    async def _db(self, func, *args):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, _with_db, func, *args)

    async def _archive_full(self, adding: int) -> bool:
        now = time.monotonic()
        if (
            self._archive_counted_at is None
            or now - self._archive_counted_at >= ARCHIVE_RECOUNT_SECONDS
        ):
            self._archive_bytes = await self._db(archive.usage)
            self._archive_counted_at = now
        full = self._archive_bytes + adding > settings.INTERORG_ARCHIVE_MAX_BYTES
        if full:
            log.warning(
                "message archive full (%s of %s bytes): mail refused with 452",
                self._archive_bytes,
                settings.INTERORG_ARCHIVE_MAX_BYTES,
            )
        return full

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        size = _declared_size(mail_options)
        refusal = self.gate.at_mail(address, size)
        if refusal:
            log.info("mail from %s refused: %s", one_line(address), refusal)
            return refusal
        try:
            if await self._archive_full(0):
                return ARCHIVE_FULL
        except Exception:
            log.exception("could not count the message archive")
            return "451 4.3.0 Cannot take mail now; try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.allowed_sender = False
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        try:
            local, allowed = await self._db(_check_recipient, address, envelope.mail_from)
        except Exception:
            log.exception("could not check recipient %s", one_line(address))
            return "451 4.3.0 Cannot check the recipient now; try again later"
        if not local:
            return "550 5.1.1 No InterOrg agent of this installation has this address"
        if not allowed and not envelope.allowed_sender:
            refusal = self.gate.for_unknown()
            if refusal:
                return refusal
        envelope.allowed_sender = envelope.allowed_sender or allowed
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        sender, size = envelope.mail_from, len(envelope.original_content)
        unknown = not envelope.allowed_sender
        refusal = self.gate.at_data(sender, size, unknown)
        if refusal:
            log.info("mail from %s refused: %s", one_line(sender), refusal)
            return refusal
        # A stranger's mail leaves no body behind; anyone else's may, once per recipient.
        adding = 0 if unknown else size * len(envelope.rcpt_tos)
        try:
            if await self._archive_full(adding):
                return ARCHIVE_FULL
            messages = await self._db(
                _archive, envelope.original_content, sender, list(envelope.rcpt_tos)
            )
        except Exception:
            log.exception("could not archive mail from %s", one_line(sender))
            return "451 4.3.0 The message could not be stored; try again later"
        self.gate.record(sender, size, unknown)
        self._archive_bytes += adding
        if self.process_inline:
            for message in messages:
                if message.status == Status.RECEIVED:
                    self.worker.submit(_with_db, process_safely, message.pk)
            self.sweep()
        return "250 2.0.0 OK: archived as " + ", ".join(f"message {m.pk}" for m in messages)

    def sweep(self) -> None:
        """Without Celery workers nothing else sends what processing queued (a master's
        replies) or retries a delivery that failed: queue the sweep the workers' beat would run
        (transport.tasks.sweep_messages), unless one is already waiting."""
        with self._sweep_lock:
            if self._sweep_queued or self.closed:
                return
            self._sweep_queued = True
        self.worker.submit(self._sweep)

    def _sweep(self) -> None:
        from transport.tasks import sweep_messages

        with self._sweep_lock:
            self._sweep_queued = False
        try:
            _with_db(sweep_messages)
        except Exception:
            # Left queued or received in the database: the next sweep tries again.
            log.exception("could not deliver and process the messages waiting")

    def close(self) -> None:
        """Let queued work finish, then close the threads' database connections."""
        if not self.closed:
            self.closed = True
            for executor in (self.worker, self.executor):
                executor.submit(connections.close_all)
                executor.shutdown(wait=True)


def _archive(raw: bytes, mail_from: str, recipients: list[str]) -> list[Message]:
    return [accept_mime(raw, mail_from, recipient) for recipient in recipients]


class Session(SMTP):
    """One SMTP connection; beyond INTERORG_SMTPD_MAX_CONNECTIONS open at once, a new one hears
    421 and is closed before anything else happens."""

    def __init__(self, handler, *, slots: Connections, **kwargs):
        super().__init__(handler, **kwargs)
        self.slots = slots
        self.counted = False
        self.turned_away = False

    def connection_made(self, transport) -> None:
        # Called again after STARTTLS, on the same connection: counted once.
        if self.transport is None and not self.counted:
            if not self.slots.take():
                self.turned_away = True
                log.warning("connection from %s refused: too many open", _peer(transport))
                transport.write(b"421 4.7.0 Too many connections; try again later\r\n")
                transport.close()
                return
            self.counted = True
        super().connection_made(transport)

    def connection_lost(self, error) -> None:
        if self.turned_away:
            return  # the SMTP session never started
        if self.counted:
            self.counted = False
            self.slots.give_back()
        super().connection_lost(error)


def _peer(transport) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if peer else "?"


class _Controller(Controller):
    def __init__(self, handler, *, slots: Connections, **kwargs):
        self.slots = slots
        super().__init__(handler, **kwargs)

    def factory(self):
        return Session(self.handler, slots=self.slots, **self.SMTP_kwargs)


class Password:
    """aiosmtpd authenticator: AUTH PLAIN or LOGIN as INTERORG_SMTPD_AUTH_USER with
    INTERORG_SMTPD_AUTH_PASSWORD (offered only after STARTTLS)."""

    def __init__(self, user: str, password: str):
        self.user, self.password = user.encode(), password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        # Both compared whatever the first gives: no timing tells which was wrong.
        user_ok = hmac.compare_digest(auth_data.login, self.user)
        password_ok = hmac.compare_digest(auth_data.password, self.password)
        if not (user_ok and password_ok):
            log.warning("SMTP AUTH failed from %s", _peer(server.transport))
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True)


def tls_context() -> ssl.SSLContext | None:
    """The server context for STARTTLS, from INTERORG_SMTPD_TLS_CERT_FILE and _KEY_FILE."""
    cert, key = settings.INTERORG_SMTPD_TLS_CERT_FILE, settings.INTERORG_SMTPD_TLS_KEY_FILE
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ImproperlyConfigured(
            f"Cannot load the SMTP receiver's certificate {cert} with the key {key}: {exc}"
        ) from None
    return context


def security_options() -> dict:
    """aiosmtpd's STARTTLS and AUTH options, from the settings."""
    context = tls_context()
    user = settings.INTERORG_SMTPD_AUTH_USER
    options = {
        "tls_context": context,
        "require_starttls": bool(context) and settings.INTERORG_SMTPD_REQUIRE_STARTTLS,
        "auth_require_tls": True,
    }
    if user:
        options["auth_required"] = True
        options["authenticator"] = Password(user, settings.INTERORG_SMTPD_AUTH_PASSWORD)
    else:
        # No account to log in to: offer no AUTH at all.
        options["auth_exclude_mechanism"] = ["LOGIN", "PLAIN"]
    return options


class Receiver:
    """The SMTP receiver `run_smtpd` runs (and tests start): an aiosmtpd Controller on
    INTERORG_SMTPD_HOST:INTERORG_SMTPD_PORT refusing mail larger than
    INTERORG_MAX_INBOUND_MESSAGE with 552, with the limits, STARTTLS and AUTH the settings
    give (the README's Security section lists them)."""

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        process_inline: bool | None = None,
        data_size_limit: int | None = None,
    ):
        self.host = host or settings.INTERORG_SMTPD_HOST
        self.port = port or settings.INTERORG_SMTPD_PORT
        if process_inline is None:
            process_inline = not settings.INTERORG_DISPATCH_TASKS
        security = security_options()
        self.handler = Handler(process_inline)
        self.controller = _Controller(
            self.handler,
            slots=Connections(settings.INTERORG_SMTPD_MAX_CONNECTIONS),
            hostname=self.host,
            port=self.port,
            data_size_limit=data_size_limit or settings.INTERORG_MAX_INBOUND_MESSAGE,
            # Once here rather than per connection: getfqdn() may wait for DNS.
            server_hostname=socket.getfqdn(),
            ident="InterOrg Sync",
            **security,
        )

    def start(self) -> "Receiver":
        try:
            self._probe()
            self.controller.start()
        except BaseException:
            self.handler.close()
            raise
        return self

    def _probe(self) -> None:
        """aiosmtpd reports a port in use only after its start-up timeout: fail at once."""
        family, kind, proto, _, address = socket.getaddrinfo(
            self.host, self.port, type=socket.SOCK_STREAM
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)

    def sweep(self) -> None:
        """Deliver and process what waits in the database (Handler.sweep), when this receiver
        processes inline; `run_smtpd` calls it at start and every INTERORG_SWEEP_SECONDS."""
        if self.handler.process_inline:
            self.handler.sweep()

    def stop(self) -> None:
        """Stop listening (sessions in progress end without 250, so senders retry), then let
        the archiving and processing already started finish."""
        try:
            self.controller.stop()
        finally:
            self.handler.close()

    def __enter__(self) -> "Receiver":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
