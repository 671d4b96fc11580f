"""A throwaway Active Directory domain controller (Samba), for the tests and the benchmark.

It needs Debian's `samba` and `samba-ad-provision` packages and root (a DC listens on the fixed
LDAP ports 389 and 636, so each one gets a loopback address of its own, added to `lo`). The
domain is provisioned once per realm into a template directory and copied for each server,
which is much faster than provisioning again. Only the LDAP service runs (no SMB, Kerberos or
DNS); simple binds are taken over StartTLS or LDAPS, with a certificate made here for the
server's address, signed by a CA whose PEM file is `ca_file`.

    with SambaDC("127.0.1.10") as dc:
        dc.uri, dc.base_dn, dc.bind_user, dc.password, dc.ca_file

`snapshot()` and `restore()` copy the DC's database aside and back, as restoring a DC from a
backup does; `samba-tool domain backup`'s restore is not used because it gives the restored DC
a new identity only when asked to, and the point here is to see what a restore looks like to a
reader of the directory: a new `invocationId` and USNs that go back.
"""

import atexit
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

SAMBA = "/usr/sbin/samba"
SAMBA_TOOL = "/usr/bin/samba-tool"
TEMPLATES = Path(tempfile.gettempdir()) / "interorg-samba-templates"
PASSWORD = "Passw0rd!x"
SOCKETS = shutil.ignore_patterns("ldapi")  # the running DC's sockets are not data


class SambaError(RuntimeError):
    pass


def missing() -> str:
    """Why a Samba DC cannot be started here ("" when it can)."""
    if not (Path(SAMBA).exists() and Path(SAMBA_TOOL).exists()):
        return (
            "Samba is not installed: apt-get install samba samba-ad-provision "
            "samba-dsdb-modules (make test-tools does it)"
        )
    if os.geteuid() != 0:
        return "a Samba domain controller for the tests needs root (it listens on port 389)"
    return ""


def _run(command: list[str], stdin: str | None = None, env: dict | None = None) -> str:
    done = subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if done.returncode:
        raise SambaError(f"{' '.join(command[:3])}… failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def _template(realm: str) -> Path:
    """A provisioned domain for `realm`, made once per machine (about 4 s) and copied after."""
    folder = TEMPLATES / realm.lower()
    if (folder / "done").exists():
        return folder
    TEMPLATES.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{realm.lower()}-", dir=TEMPLATES))
    _run(
        [
            SAMBA_TOOL,
            "domain",
            "provision",
            f"--targetdir={work}",
            f"--realm={realm}",
            f"--domain={realm.split('.')[0]}",
            "--server-role=dc",
            "--dns-backend=NONE",
            f"--adminpass={PASSWORD}",
            "--host-name=dc1",
            "--option=interfaces=127.0.0.1",
            "--option=bind interfaces only=yes",
        ]
    )
    (work / "done").write_text(str(work))
    try:
        work.rename(folder)
    except OSError:  # another process made it first
        shutil.rmtree(work, ignore_errors=True)
    return folder


def _certificates(folder: Path, address: str, host: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for `address` and `host`, as PEM files in `folder`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)

    def build(subject, issuer, public_key, signing_key, *, ca: bool, names=()):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test domain CA")])
    ca = build(ca_name, ca_name, ca_key.public_key(), ca_key, ca=True)
    server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    names = [x509.IPAddress(ipaddress.ip_address(address)), x509.DNSName(host)]
    cert = build(server_name, ca_name, key.public_key(), ca_key, ca=False, names=names)
    pem = serialization.Encoding.PEM
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(cert.public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(
            pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    paths[2].chmod(0o600)
    return paths


class SambaDC:
    """A domain controller of `realm` listening on `address` (a loopback address of its own)."""

    def __init__(self, address: str, realm: str = "BRANCH.EXAMPLE"):
        why = missing()
        if why:
            raise SambaError(why)
        self.address, self.realm = address, realm.upper()
        self.domain = self.realm.split(".")[0]
        self.base_dn = ",".join(f"DC={part}" for part in self.realm.lower().split("."))
        self.bind_user = f"Administrator@{self.realm.lower()}"
        self.password = PASSWORD
        self.root = Path(tempfile.mkdtemp(prefix="interorg-samba-"))
        self.data = self.root / "dc"
        self.process: subprocess.Popen | None = None
        self._added_address = False
        shutil.copytree(_template(self.realm), self.data, symlinks=True)
        self.ca_file, cert, key = _certificates(self.root, address, f"dc1.{self.realm.lower()}")
        self._configure(cert, key)
        atexit.register(self.close)

    @property
    def uri(self) -> str:
        return f"ldap://{self.address}"

    @property
    def ldaps_uri(self) -> str:
        return f"ldaps://{self.address}"

    @property
    def conf(self) -> Path:
        return self.data / "etc" / "smb.conf"

    def _configure(self, cert: Path, key: Path) -> None:
        text = self.conf.read_text()
        template = re.search(r"private dir = (.*)/private", text).group(1).strip()
        text = text.replace(template, str(self.data))
        text = re.sub(r"interfaces = .*", f"interfaces = {self.address}", text)
        text = re.sub(r"\n\s*log file = .*", "", text)
        settings = {
            "server services": "ldap",
            "log file": str(self.root / "log.%m"),
            "tls enabled": "yes",
            "tls certfile": str(cert),
            "tls keyfile": str(key),
            "tls cafile": str(self.ca_file),
            "pid directory": str(self.root),
            # A throwaway DC: no fsync at each commit, as Samba's own test suite runs (about
            # 25 times the write rate here: 435 adds/s instead of 17).
            "ldb:nosync": "true",
        }
        extra = "".join(f"\t{name} = {value}\n" for name, value in settings.items())
        text = re.sub(r"\tserver services = .*\n", "", text)
        text = text.replace("[global]\n", "[global]\n" + extra, 1)
        self.conf.write_text(text)

    def _ensure_address(self) -> None:
        """Samba listens only on addresses an interface has (binding to any of 127/8 works,
        but Samba looks at the interfaces' own list)."""
        if f" {self.address}/" in _run(["ip", "-o", "addr", "show", "dev", "lo"]):
            return
        _run(["ip", "addr", "add", f"{self.address}/32", "dev", "lo"])
        self._added_address = True

    def start(self) -> "SambaDC":
        self._ensure_address()
        log = (self.root / "samba.out").open("ab")
        self.process = subprocess.Popen(
            [SAMBA, "-s", str(self.conf), "-i", "-M", "single", "--debug-stdout"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = (self.root / "samba.out").read_text(errors="replace")[-2000:]
                self.process = None
                raise SambaError(f"samba exited: {tail}")
            try:
                with socket.create_connection((self.address, 389), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise SambaError(f"samba did not listen on {self.address}:389 within 60 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        if self._added_address:
            subprocess.run(
                ["ip", "addr", "del", f"{self.address}/32", "dev", "lo"],
                capture_output=True,
                check=False,
            )
            self._added_address = False
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "SambaDC":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # A copy of the database, put back later: a DC restored from a backup.

    def snapshot(self, name: str = "backup") -> None:
        """Copy the DC's databases aside (the DC is stopped for the copy and started again)."""
        running = self.process is not None
        self.stop()
        target = self.root / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(self.data / "private", target, symlinks=True, ignore=SOCKETS)
        if running:
            self.start()

    def restore(self, name: str = "backup", new_identity: bool = True) -> None:
        """Stop, put the copy taken by snapshot() back, and start: the DC restored from a
        backup. A restore done by the book gives the DC a new invocationId (`new_identity`);
        without it, the copy comes back as it was, USNs going back and all."""
        running = self.process is not None
        self.stop()
        shutil.rmtree(self.data / "private")
        shutil.copytree(self.root / name, self.data / "private", symlinks=True)
        if new_identity:
            self._new_invocation_id()
        if running:
            self.start()

    def _new_invocation_id(self) -> None:
        """Give the stopped DC's NTDS Settings object a new invocationId, in its database
        file, with Samba's own ldb bindings (the system Python's)."""
        _run(["/usr/bin/python3", "-c", NEW_INVOCATION_ID, str(self.data / "private")])

    # The administrator's tools, as someone managing the domain would use them.

    def samba_tool(self, *args: str) -> str:
        return _run(
            [
                SAMBA_TOOL,
                *args,
                "-H",
                self.uri,
                f"-U{self.bind_user}",
                f"--password={self.password}",
                "--option=client ldap sasl wrapping=seal",
            ]
        )

    def ldap_tool(self, program: str, ldif: str = "", *args: str) -> str:
        """ldapadd, ldapmodify, ldapdelete, ldapsearch or ldapmodrdn over StartTLS."""
        return _run(
            [
                program,
                "-x",
                "-ZZ",
                "-H",
                self.uri,
                "-D",
                self.bind_user,
                "-w",
                self.password,
                *args,
            ],
            ldif,
            env={"LDAPTLS_CACERT": str(self.ca_file)},
        )


NEW_INVOCATION_ID = """
import sys, uuid
from pathlib import Path
import ldb
changed = 0
for path in sorted(Path(sys.argv[1], "sam.ldb.d").glob("*.ldb")):
    db = ldb.Ldb(str(path), options=["modules:"])
    for found in db.search(expression="(objectClass=nTDSDSA)", attrs=["invocationId"]):
        message = ldb.Message(found.dn)
        message["invocationId"] = ldb.MessageElement(
            uuid.uuid4().bytes_le, ldb.FLAG_MOD_REPLACE, "invocationId")
        db.modify(message)
        changed += 1
sys.exit(0 if changed else "no NTDS Settings object found")
"""
