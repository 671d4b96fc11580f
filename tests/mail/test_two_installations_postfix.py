"""docs/connect.md followed step by step: two installations, HQ (master ORG1) and Branch
(requestor ORG2), each with its own database, var directory and processes, connected through a
throwaway instance of Debian's Postfix that routes each agent domain to its run_smtpd.

Nothing here reaches into either installation's database from the test process: every step is
the guide's own API call or management command, run with that installation's environment.
"""

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.mail.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
# Processes started here answer within this long, or the test says what they printed.
STARTUP_SECONDS = 30
SYNC_SECONDS = 30

HQ_PEOPLE = ["Ada Hq", "Brian Hq"]
BRANCH_PEOPLE = ["Carla Branch", "Dmitri Branch"]


# --- Postfix --------------------------------------------------------------------------------

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
myhostname = relay.interorg.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
relay_domains = {domains}
transport_maps = texthash:{root}/transport
smtputf8_enable = no
maillog_file = {root}/maillog
maillog_file_prefixes = /var, /dev/stdout, {root}
"""


def _postfix_available() -> None:
    """Install Postfix the project's way when it is missing; skip, saying why, when that is not
    possible here (not root, or no apt)."""
    if os.path.exists(POSTFIX):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(
            "Postfix is not installed and cannot be here (needs root and apt-get): "
            "run bin/ensure-test-tools as root"
        )
    done = subprocess.run(
        [str(ROOT / "bin" / "ensure-test-tools")], capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0 or not os.path.exists(POSTFIX):
        pytest.skip(f"Postfix could not be installed: {done.stderr.strip() or done.stdout}")


def _master_cf(smtpd_port: int) -> str:
    """Debian's master.cf with smtpd on our loopback port and nothing chrooted (the throwaway
    queue has no copy of /etc inside it)."""
    lines = []
    for line in Path("/etc/postfix/master.cf").read_text().splitlines():
        columns = line.split()
        if line[:1] in ("#", " ", "\t") or len(columns) < 8:
            lines.append(line)
            continue
        if columns[0] == "smtp" and columns[1] == "inet":
            columns[0] = f"127.0.0.1:{smtpd_port}"
        columns[4] = "n"
        lines.append(" ".join(columns))
    return "\n".join(lines) + "\n"


@dataclass
class Postfix:
    root: Path
    port: int

    @property
    def maillog(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def running_postfix(port: int, routes: dict[str, int]):
    """Postfix on loopback `port` relaying each domain of `routes` to its local port."""
    root = Path(tempfile.mkdtemp(prefix="interorg-postfix-"))
    root.chmod(0o755)
    (root / "queue").mkdir()
    (root / "data").mkdir()
    shutil.chown(root / "data", "postfix")
    (root / "main.cf").write_text(MAIN_CF.format(root=root, domains=", ".join(routes)))
    (root / "master.cf").write_text(_master_cf(port))
    (root / "transport").write_text(
        "".join(f"{domain} smtp:[127.0.0.1]:{target}\n" for domain, target in routes.items())
    )
    postfix = Postfix(root, port)
    try:
        for action in ("set-permissions", "start"):
            done = subprocess.run(
                [POSTFIX, "-c", str(root), action], capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0, f"postfix {action}: {done.stderr}{postfix.maillog}"
        _wait_for_port(port, None, lambda: postfix.maillog)
        yield postfix
    finally:
        subprocess.run([POSTFIX, "-c", str(root), "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


# --- Installations --------------------------------------------------------------------------


def _postgres(url: str, statements: list) -> None:
    import psycopg

    admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _drop(names) -> list:
    from psycopg import sql

    return [
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        for name in names
    ]


@contextlib.contextmanager
def two_databases():
    """Two databases of the kind the tests run on: SQLite files in each installation's var
    directory (""), or PostgreSQL databases named after the test database, made afresh and
    dropped afterwards."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        yield "", ""
        return
    from psycopg import sql

    parts = urlsplit(url)
    base = parts.path.lstrip("/") or "interorg"
    names = (f"{base}_hq", f"{base}_branch")
    create = [sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)) for name in names]
    _postgres(url, _drop(names) + create)
    try:
        yield tuple(urlunsplit(parts._replace(path=f"/{name}")) for name in names)
    finally:
        _postgres(url, _drop(names))


@dataclass
class Installation:
    """One InterOrg Sync installation: its environment, its processes, its API token."""

    name: str
    var_dir: Path
    env: dict[str, str]
    web_port: int
    smtpd_port: int
    token: str = ""
    processes: list[tuple[subprocess.Popen, Path]] = field(default_factory=list)

    def manage(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert done.returncode == 0, (
                f"{self.name}: manage.py {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout}{done.stderr}"
            )
        return done.stdout

    def start(self, *args: str) -> None:
        log = self.var_dir / f"{args[0]}.log"
        process = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.processes.append((process, log))

    def logs(self) -> str:
        return "".join(
            f"\n--- {self.name} {log.name} ---\n{log.read_text(errors='replace')}"
            for _, log in self.processes
        )

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.web_port}/api/v1/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def ok(self, method: str, path: str, body: dict | None = None) -> object:
        status, answer = self.api(method, path, body)
        assert status in (200, 201), f"{self.name}: {method} {path} -> {status}: {answer}"
        return answer

    def listing(self, path: str) -> list[dict]:
        answer = self.ok("GET", path)
        return answer["results"] if isinstance(answer, dict) else answer

    def stop(self) -> None:
        for process, _ in self.processes:
            process.terminate()
        for process, _ in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for_port(port: int, process: subprocess.Popen | None, output) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode}: {output()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port} after {STARTUP_SECONDS} s: {output()}")


def _installation(name: str, database_url: str, relay_port: int) -> Installation:
    var_dir = Path(tempfile.mkdtemp(prefix=f"interorg-{name.lower()}-"))
    smtpd_port, web_port = free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("INTERORG_", "DJANGO_", "EMAIL_", "CELERY_"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "interorg_site.settings",
            "INTERORG_VAR_DIR": str(var_dir),
            "DATABASE_URL": database_url or f"sqlite:///{var_dir / 'interorg.sqlite3'}",
            "INTERORG_SMTPD_HOST": "127.0.0.1",
            "INTERORG_SMTPD_PORT": str(smtpd_port),
            # Outgoing InterOrg mail leaves through the organization's mail server: Postfix.
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(relay_port),
            # No Celery workers: run_smtpd processes what it receives and sends the replies.
            "INTERORG_DISPATCH_TASKS": "false",
            "LOG_LEVEL": "WARNING",
        }
    )
    return Installation(name, var_dir, env, web_port, smtpd_port)


def _bring_up(inst: Installation) -> Installation:
    """The guide's prerequisites: a database, an administrator with an API token, the web
    server and run_smtpd."""
    inst.manage("migrate", "-v0")
    out = inst.manage(
        "create_console_user",
        "admin",
        "--all-organizations",
        "--role",
        "administrator",
        "--token",
    )
    inst.token = re.search(r"API token: (\S+)", out).group(1)
    inst.start("runserver", "--noreload", "--skip-checks", f"127.0.0.1:{inst.web_port}")
    inst.start("run_smtpd")
    for (process, _), port in zip(inst.processes, (inst.web_port, inst.smtpd_port), strict=True):
        _wait_for_port(port, process, inst.logs)
    return inst


def _keys_show(inst: Installation, organization: str) -> tuple[str, str]:
    out = inst.manage("keys", "show", organization)
    key = re.search(r"Public key:\s+(\S+)", out).group(1)
    fingerprint = re.search(r"Fingerprint:\s+(\S+)", out).group(1)
    return key, fingerprint


@pytest.fixture
def two_installations():
    _postfix_available()
    with two_databases() as (hq_db, branch_db):
        relay_port = free_port()
        hq = _installation("HQ", hq_db, relay_port)
        branch = _installation("Branch", branch_db, relay_port)
        routes = {"org1.example": hq.smtpd_port, "org2.example": branch.smtpd_port}
        try:
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(_bring_up, (hq, branch)))
            with running_postfix(relay_port, routes) as postfix:
                yield hq, branch, postfix
        finally:
            for inst in (hq, branch):
                inst.stop()
                shutil.rmtree(inst.var_dir, ignore_errors=True)


# --- The guide ------------------------------------------------------------------------------


def test_following_connect_md_two_installations_converge_through_postfix(two_installations):
    hq, branch, postfix = two_installations

    # 1. Create the organization in each installation (the API; the answer is the pairing).
    hq_pairing = hq.ok(
        "POST",
        "organizations/setup/",
        {
            "name": "ORG1",
            "mail_domain": "org1.example",
            "role": "both",
            "site": "Site1",
            "containers": ["Recipients", "InterOrg Contacts"],
            "master_agent_address": "interorg-org1@org1.example",
            "requestor_address": "interorg-org1-req@org1.example",
            "master_address": "/o=ORG1/ou=Site1/cn=Recipients/cn=MASTER",
        },
    )
    branch_pairing = branch.ok(
        "POST",
        "organizations/setup/",
        {
            "name": "ORG2",
            "mail_domain": "org2.example",
            "role": "requestor",
            "site": "Site1",
            "containers": ["Recipients", "InterOrg Contacts"],
            "requestor_address": "interorg-org2@org2.example",
            "master_address": "interorg-org1@org1.example",
        },
    )

    # 2. Exchange addresses and fingerprints: `keys show` prints what the pairing answered.
    org1_key, org1_fingerprint = _keys_show(hq, "ORG1")
    org2_key, org2_fingerprint = _keys_show(branch, "ORG2")
    assert (org1_key, org1_fingerprint) == (hq_pairing["public_key"], hq_pairing["fingerprint"])
    assert (org2_key, org2_fingerprint) == (
        branch_pairing["public_key"],
        branch_pairing["fingerprint"],
    )
    (master,) = hq.listing("master-configs/")
    allowed = hq.ok(
        "POST",
        "allowed-requestors/",
        {
            "master": master["id"],
            "address": "interorg-org2@org2.example",
            "organization_name": "ORG2",
            "public_key": org2_key,
        },
    )
    assert allowed["key_fingerprint"] == org2_fingerprint
    # HQ's own requestor is on its master's list too (by DN: no key to paste in one installation).
    hq.ok(
        "POST",
        "allowed-requestors/",
        {
            "master": master["id"],
            "address": "/o=ORG1/ou=Site1/cn=Recipients/cn=REQUESTOR",
            "organization_name": "ORG1",
        },
    )
    (branch_requestor,) = branch.listing("requestor-configs/")
    branch.ok(
        "PATCH", f"requestor-configs/{branch_requestor['id']}/", {"master_public_key": org1_key}
    )

    # (What each organization exports, and the people it holds.)
    for inst, organization, people in ((hq, "ORG1", HQ_PEOPLE), (branch, "ORG2", BRANCH_PEOPLE)):
        containers = {
            c["name"]: c for c in inst.listing(f"containers/?organization={organization}")
        }
        (requestor,) = inst.listing(f"requestor-configs/?organization={organization}")
        inst.ok(
            "POST",
            "exported-containers/",
            {"config": requestor["id"], "container": containers["Recipients"]["id"]},
        )
        domain = f"{organization.lower()}.example"
        for person in people:
            alias = person.split()[0].lower()
            inst.ok(
                "POST",
                "recipients/",
                {
                    "container": containers["Recipients"]["id"],
                    "kind": "mailbox",
                    "display_name": person,
                    "alias": alias,
                    "primary_smtp": f"{alias}@{domain}",
                },
            )

    # 4. Verify. HQ's own requestor brings ORG1's people to its master first.
    hq.manage("sync_now", "ORG1")
    out = branch.manage("sync_now", "ORG2")
    assert "ORG2" in out

    def contacts(inst: Installation, organization: str) -> set[str]:
        return {
            r["display_name"]
            for r in inst.listing(f"recipients/?organization={organization}&page_size=500")
            if r["imported"]
        }

    deadline = time.monotonic() + SYNC_SECONDS
    while contacts(branch, "ORG2") != set(HQ_PEOPLE) and time.monotonic() < deadline:
        time.sleep(0.25)
    diagnostics = postfix.maillog + hq.logs() + branch.logs()
    assert contacts(branch, "ORG2") == set(HQ_PEOPLE), diagnostics

    # The master holds the Branch's entries: HQ's next cycle imports them into ORG1.
    hq.manage("sync_now", "ORG1")
    assert contacts(hq, "ORG1") == set(BRANCH_PEOPLE), diagnostics
    (run,) = branch.listing("runs/?organization=ORG2")[:1]
    assert run["status"] == "ok", run

    # Both messages went through Postfix: the export to HQ's run_smtpd, the reply to Branch's.
    sent = re.findall(
        r"to=<([^>]+)>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:(\d+),.* status=sent", postfix.maillog
    )
    assert ("interorg-org1@org1.example", str(hq.smtpd_port)) in sent, postfix.maillog
    assert ("interorg-org2@org2.example", str(branch.smtpd_port)) in sent, postfix.maillog
    assert "status=deferred" not in postfix.maillog and "status=bounced" not in postfix.maillog
