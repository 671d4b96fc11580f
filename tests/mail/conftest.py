"""Mail over real sockets: a recording SMTP server, the project's receiver, a throwaway Dovecot.

Threads and processes other than the test's touch the database here, so the tests use
`transactional_db` (committed data, no wrapping transaction).
"""

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from django.test import override_settings

from master.models import AllowedRequestor
from requestor.cycle import run_cycle
from requestor.models import RequestorConfig
from tests.engine.conftest import build_scenario
from transport.constants import Direction, Status
from transport.mail import build_email
from transport.models import Message
from transport.smtp import Receiver, claim

MASTER_SMTP = "master@org1.example"


@pytest.fixture(autouse=True)
def no_tasks(settings):
    """These tests deliver and process themselves; no Celery task is sent on commit."""
    settings.INTERORG_DISPATCH_TASKS = False


def free_port() -> int:
    """A loopback port nothing listens on (the OS picks it; it is closed again at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool = False
    authenticated: bool = False


@dataclass
class RecordingHandler:
    """An SMTP server that records what it gets; `rcpt_reply`/`data_reply` make it refuse."""

    received: list[Received] = field(default_factory=list)
    rcpt_reply: str | None = None
    data_reply: str | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_reply:
            return self.data_reply
        self.received.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.original_content,
                tls=session.ssl is not None,
                authenticated=bool(session.authenticated),
            )
        )
        return "250 OK"


@pytest.fixture
def relay_port():
    return free_port()


@pytest.fixture
def smtp_settings(relay_port):
    """Django's SMTP backend pointed at the loopback port (pytest-django switches to locmem)."""
    with override_settings(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=relay_port,
        EMAIL_USE_TLS=False,
        EMAIL_USE_SSL=False,
        EMAIL_HOST_USER="",
        EMAIL_HOST_PASSWORD="",
        EMAIL_TIMEOUT=10,
    ):
        yield


class Relay:
    """A recording SMTP server on a loopback port; not listening until `start()`."""

    def __init__(self, port: int):
        self.handler = RecordingHandler()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=port)
        self.running = False

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def start(self) -> "Relay":
        self.controller.start()
        self.running = True
        return self

    def stop(self) -> None:
        if self.running:
            self.controller.stop()
            self.running = False


@pytest.fixture
def relay(relay_port, smtp_settings):
    """The relay EMAIL_HOST/EMAIL_PORT point at, down until the test starts it."""
    relay = Relay(relay_port)
    yield relay
    relay.stop()


@pytest.fixture
def receiver(relay_port, smtp_settings, transactional_db):
    """The project's SMTP receiver on the port outbound mail goes to; archiving only (the test
    processes), unless it starts its own."""
    with Receiver("127.0.0.1", relay_port, process_inline=False) as server:
        yield server


def smtp_scenario():
    """The engine's three organizations, with ORG2 and ORG3 talking to the master by SMTP."""
    scenario = build_scenario(people_per_org=2)
    for name in ("ORG2", "ORG3"):
        org = scenario[name]
        RequestorConfig.objects.filter(pk=org.config.pk).update(master_address=MASTER_SMTP)
        AllowedRequestor.objects.filter(master=scenario.master, organization_name=name).update(
            address=org.config.address
        )
        org.refresh()
    return scenario


def export_mail(org) -> tuple[bytes, Message]:
    """The MIME bytes of `org`'s next export as it would go out, and its outbound archive
    entry (taken off the queue, so that nothing else sends it)."""
    run_cycle(org.config.pk)
    message = claim(
        Message.objects.filter(direction=Direction.OUTBOUND, status=Status.QUEUED).latest("id").pk
    )
    Message.objects.filter(pk=message.pk).update(status=Status.SENT)
    return build_email(message).message().as_bytes(linesep="\r\n"), message


# --- Dovecot --------------------------------------------------------------------------------

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
IMAP_USER, IMAP_PASSWORD = "agent", "s3cret-imap"

DOVECOT_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
# No slowdown after the test of a wrong password.
auth_failure_delay = 0
default_login_user = {login_user}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
first_valid_uid = 1
first_valid_gid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={root}/home/%u
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


@dataclass
class Dovecot:
    host: str
    port: int
    user: str
    password: str


def _dovecot_users() -> dict[str, str]:
    """Who Dovecot's processes run as: its own system users as root, else the current user."""
    if os.geteuid() == 0:
        mail = pwd.getpwnam("dovecot")
        return {
            "login_user": "dovenull",
            "internal_user": "dovecot",
            "internal_group": "dovecot",
            "mail_user": "dovecot",
            "mail_group": "dovecot",
            "uid": mail.pw_uid,
            "gid": mail.pw_gid,
        }
    me = pwd.getpwuid(os.geteuid())
    group = me.pw_name
    return {
        "login_user": me.pw_name,
        "internal_user": me.pw_name,
        "internal_group": group,
        "mail_user": me.pw_name,
        "mail_group": group,
        "uid": me.pw_uid,
        "gid": me.pw_gid,
    }


@pytest.fixture(scope="session")
def dovecot():
    """A throwaway Dovecot IMAP server on a free loopback port, for the whole session."""
    with running_dovecot() as server:
        yield server


@contextlib.contextmanager
def running_dovecot(ssl: str = "ssl = no"):
    """Dovecot on a free loopback port; `ssl` replaces its `ssl = no` line."""
    if not os.path.exists(DOVECOT):
        pytest.skip("Dovecot is not installed; run bin/ensure-test-tools (dovecot-imapd)")
    root = Path(tempfile.mkdtemp(prefix="interorg-dovecot-"))
    users = _dovecot_users()
    port = free_port()
    (root / "users").write_text(f"{IMAP_USER}:{{PLAIN}}{IMAP_PASSWORD}::::::\n")
    (root / "home").mkdir()
    os.chown(root / "home", users["uid"], users["gid"])
    root.chmod(0o755)
    conf = root / "dovecot.conf"
    text = DOVECOT_CONF.format(root=root, port=port, **users)
    conf.write_text(text.replace("ssl = no", ssl))
    process = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(conf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_port(port, process, root / "dovecot.log")
        yield Dovecot("127.0.0.1", port, IMAP_USER, IMAP_PASSWORD)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace")
            detail = log.read_text() if log.exists() else ""
            raise RuntimeError(f"dovecot exited with {process.returncode}: {output}{detail}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"dovecot did not listen on port {port} within 15 s")
