"""Fetch InterOrg mail from an agent's IMAP mailbox, once or every few seconds."""

import argparse
import logging
import os
import signal
import ssl
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections
from imapclient.exceptions import IMAPClientError

from transport.constants import Status
from transport.imap import Mailbox, poll
from transport.inbox import process_safely

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Archive the InterOrg messages waiting in an IMAP mailbox, move them to a processed "
        "folder, and process them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", required=True)
        parser.add_argument("--port", type=int, help="Default: 993 with --ssl, 143 otherwise.")
        security = parser.add_mutually_exclusive_group()
        for name, text in (
            ("ssl", "IMAP over TLS (the default)"),
            ("starttls", "plain IMAP upgraded with STARTTLS"),
            ("plain", "no TLS at all: loopback and tests only"),
        ):
            security.add_argument(
                f"--{name}", dest="security", action="store_const", const=name, help=text
            )
        parser.set_defaults(security="ssl")
        parser.add_argument(
            "--ca-file",
            default="",
            help="PEM file of the CA certificates to trust for the server's certificate, "
            "instead of the system's. Default: INTERORG_IMAP_CA_FILE.",
        )
        parser.add_argument("--user", required=True)
        parser.add_argument(
            "--password-file",
            type=Path,
            help="File holding the password (first line). Default: $INTERORG_IMAP_PASSWORD.",
        )
        parser.add_argument("--folder", default="INBOX")
        parser.add_argument("--processed-folder", default="InterOrg/Processed")
        parser.add_argument(
            "--recipient",
            default="",
            help="The agent address this mailbox receives for. Default: the To/Cc address "
            "that belongs to an agent of this installation.",
        )
        parser.add_argument("--once", action="store_true", help="Poll once and exit.")
        parser.add_argument("--interval", type=float, default=60, help="Seconds between polls.")
        parser.add_argument(
            "--process-inline",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="Process the messages here after archiving. Default: on unless "
            "INTERORG_DISPATCH_TASKS hands processing to the Celery workers.",
        )

    def handle(self, *args, **options):
        mailbox = Mailbox(
            host=options["host"],
            port=options["port"],
            security=options["security"],
            user=options["user"],
            password=self._password(options["password_file"]),
            folder=options["folder"],
            processed_folder=options["processed_folder"],
            recipient=options["recipient"],
            ca_file=self._ca_file(options["ca_file"] or settings.INTERORG_IMAP_CA_FILE),
        )
        inline = options["process_inline"]
        if inline is None:
            inline = not settings.INTERORG_DISPATCH_TASKS
        stop = threading.Event()
        if not options["once"]:
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stop.set())
        while not stop.is_set():
            try:
                self._poll(mailbox, inline, report_empty=options["once"])
            except (OSError, IMAPClientError) as exc:
                if options["once"]:
                    raise CommandError(f"{mailbox.host}:{mailbox.effective_port}: {exc}") from None
                log.warning("IMAP poll of %s failed, trying again: %s", mailbox.host, exc)
            except Exception:
                if options["once"]:
                    raise
                # Whatever went wrong (the database is down?), messages stay in the mailbox.
                log.exception("IMAP poll of %s failed, trying again", mailbox.host)
            if options["once"]:
                break
            # A long-running process: drop a database connection that broke or grew too old.
            close_old_connections()
            stop.wait(options["interval"])

    def _ca_file(self, path: str) -> str:
        """The CA file, checked once here: a wrong one is a setup error, not a failed poll."""
        if path:
            try:
                ssl.create_default_context(cafile=path)
            except (OSError, ssl.SSLError) as exc:
                raise CommandError(f"Cannot use the CA file {path}: {exc}") from None
        return path

    def _password(self, path: Path | None) -> str:
        if path is not None:
            try:
                return next(iter(path.read_text().splitlines()), "")
            except OSError as exc:
                raise CommandError(
                    f"Cannot read the password file {path}: {exc.strerror}."
                ) from None
        password = os.environ.get("INTERORG_IMAP_PASSWORD")
        if password is None:
            raise CommandError("Give --password-file or set INTERORG_IMAP_PASSWORD.")
        return password

    def _poll(self, mailbox: Mailbox, inline: bool, report_empty: bool) -> None:
        result = poll(mailbox)
        if inline:
            for message in result.archived:
                if message.status == Status.RECEIVED:
                    process_safely(message.pk)
        if not result.archived and not report_empty:
            return
        self.stdout.write(
            f"{mailbox.folder}: {len(result.archived)} archived, {result.moved} moved to "
            f"{mailbox.processed_folder}."
        )
