"""Receive InterOrg mail over SMTP until SIGINT or SIGTERM."""

import argparse
import logging
import signal
import threading
import time

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from transport.smtp import Receiver


class Command(BaseCommand):
    help = (
        "Listen for InterOrg mail over SMTP: refuse addresses that are not agents of this "
        "installation, archive each message before answering 250, then process it (and, "
        "without Celery workers, send the replies and retry deliveries itself). Limits, "
        "STARTTLS and AUTH come from the INTERORG_SMTPD_* settings."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", help="Address to listen on (INTERORG_SMTPD_HOST).")
        parser.add_argument("--port", type=int, help="Port to listen on (INTERORG_SMTPD_PORT).")
        parser.add_argument(
            "--process-inline",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="Process each message here after archiving it. Default: on unless "
            "INTERORG_DISPATCH_TASKS hands processing to the Celery workers.",
        )

    def handle(self, *args, host, port, process_inline, **options):
        # aiosmtpd logs every connection at INFO; our own log says what happened to each message.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        try:
            receiver = Receiver(host, port, process_inline=process_inline)
        except ImproperlyConfigured as exc:  # a certificate that cannot be loaded
            raise CommandError(str(exc)) from None
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        try:
            receiver.start()
        except OSError as exc:
            raise CommandError(
                f"Cannot listen on {receiver.host}:{receiver.port}: {exc}. "
                "Choose another --port or stop what uses it."
            ) from None
        mode = "processing inline" if receiver.handler.process_inline else "archiving only"
        where = f"{receiver.host}:{receiver.port}"
        self.stdout.write(f"Listening for InterOrg mail on {where} ({mode}).")
        self.stdout.flush()
        try:
            # Without workers (processing inline) this process is also what sends the replies
            # and retries deliveries: at start, after each message, and every sweep interval.
            next_sweep = 0.0
            while not stop.is_set():
                if time.monotonic() >= next_sweep:
                    receiver.sweep()
                    next_sweep = time.monotonic() + settings.INTERORG_SWEEP_SECONDS
                stop.wait(1)
        finally:
            receiver.stop()
        self.stdout.write("Stopped.")
