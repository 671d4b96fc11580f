"""A throwaway OpenLDAP server on a free loopback port, for the tests and the benchmark.

It needs only the Debian packages `slapd` and `ldap-utils` (no root and no system slapd): the
configuration is a slapd.conf in a temporary directory, one MDB database per suffix, written
without fsync (`dbnosync`) because the data is thrown away anyway.
"""

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SLAPD = "/usr/sbin/slapd"
SCHEMA_DIR = Path("/etc/ldap/schema")
# misc.schema brings inetLocalMailRecipient (mailRoutingAddress: where a contact's mail goes).
SCHEMAS = ("core", "cosine", "inetorgperson", "nis", "misc")
INDEXES = ("objectClass eq", "entryUUID eq", "mail eq", "uid eq", "employeeNumber eq")


class SlapdError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Slapd:
    """`with Slapd(["dc=org2,dc=example"]) as server:` starts it; `server.uri` is where it is."""

    root_password = "secret"

    def __init__(self, suffixes: list[str], port: int | None = None):
        if not Path(SLAPD).exists():
            raise SlapdError(f"{SLAPD} is missing: apt-get install slapd ldap-utils")
        self.suffixes = list(suffixes)
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="interorg-slapd-"))
        self.process: subprocess.Popen | None = None
        self._configure()

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def root_dn(self, suffix: str | None = None) -> str:
        return f"cn=admin,{suffix or self.suffixes[0]}"

    def _global_lines(self, *modules: str) -> list[str]:
        """slapd.conf's global section: the schemas, the mdb backend and `modules`, the files."""
        lines = [f"include {SCHEMA_DIR / name}.schema" for name in SCHEMAS]
        return [
            *lines,
            "modulepath /usr/lib/ldap",
            "moduleload back_mdb",
            *(f"moduleload {module}" for module in modules),
            f"pidfile {self.root / 'slapd.pid'}",
            f"argsfile {self.root / 'slapd.args'}",
            "sizelimit unlimited",
        ]

    def _configure(self) -> None:
        lines = self._global_lines()
        base_entries = []
        for index, suffix in enumerate(self.suffixes):
            data = self.root / f"data{index}"
            data.mkdir()
            lines += [
                "database mdb",
                "maxsize 1073741824",
                f'suffix "{suffix}"',
                f'rootdn "{self.root_dn(suffix)}"',
                f"rootpw {self.root_password}",
                f"directory {data}",
                "dbnosync",
                *(f"index {index}" for index in INDEXES),
            ]
            rdn_attr, rdn_value = suffix.split(",", 1)[0].split("=", 1)
            entry = [f"dn: {suffix}"]
            if rdn_attr.lower() == "dc":
                entry += ["objectClass: dcObject", "objectClass: organization", f"o: {rdn_value}"]
            else:
                entry += ["objectClass: organizationalUnit"]
            entry.append(f"{rdn_attr}: {rdn_value}")
            base_entries.append((suffix, "\n".join(entry) + "\n"))
        self.config = self.root / "slapd.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self._run(["/usr/sbin/slaptest", "-u", "-f", str(self.config)])
        for suffix, ldif in base_entries:
            self._run(["/usr/sbin/slapadd", "-f", str(self.config), "-b", suffix], ldif)

    def _run(self, command: list[str], stdin: str | None = None) -> None:
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
        if done.returncode:
            raise SlapdError(f"{' '.join(command)} failed: {done.stderr.strip()}")

    def start(self) -> "Slapd":
        command = [SLAPD, "-f", str(self.config), "-h", self.uri + "/", "-d", "0"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SlapdError(f"slapd exited: {self.process.stderr.read().strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SlapdError(f"slapd did not listen on port {self.port} within 10 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Slapd":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
