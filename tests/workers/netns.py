"""Worker hosts for tests: Linux network namespaces, each its own machine on a small LAN.

The test process plays the database and broker host: a bridge `iosE-br0` holds 10.231.0.1, and
a forwarder started here relays 10.231.0.1:5432 and :6379 to PostgreSQL and Redis, which listen
on 127.0.0.1 only. Each worker host is a namespace with its own loopback, its own address on the
bridge, its own hostname (a UTS namespace of its own), its own var/ folder, and reaches the
database and the broker over the LAN only, as it would from another machine.

Every name starts with `iosE-` and every address lies in 10.231.0.0/24; `Lan.remove()` takes
everything down again, also what an interrupted earlier run left behind.

Run as `python -m tests.workers.netns forward LISTEN=TARGET ...` this module is the forwarder.
"""

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "iosE-"
BRIDGE = f"{PREFIX}br0"
SERVER_ADDRESS = "10.231.0.1"
NETMASK = 24
FIRST_HOST = 11
IP = shutil.which("ip") or "/usr/sbin/ip"


def unavailable() -> str | None:
    """Why namespaces cannot be made here (not root, no `ip`), or None."""
    if os.geteuid() != 0:
        return "needs root to make network namespaces (ip netns)"
    if not Path(IP).exists() or not shutil.which("unshare"):
        return "needs iproute2's `ip` and util-linux's `unshare`"
    probe = subprocess.run([IP, "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`ip netns` does not work here: {probe.stderr.strip()}"
    return None


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([IP, *args], capture_output=True, text=True)
    if check and done.returncode:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
    return done


def in_namespace(namespace: str, *args: str) -> subprocess.CompletedProcess:
    return ip("netns", "exec", namespace, *args)


@dataclass
class Host:
    """A worker machine: a namespace on the LAN, with a hostname and an address of its own."""

    name: str
    address: str

    @property
    def veth(self) -> str:
        return f"{self.name}-v"  # the LAN side of its cable; inside, the end is called eth0

    def run(self, args: list[str]) -> list[str]:
        """The command line that runs `args` on this host: in its namespace, under its own
        hostname (a UTS namespace of its own)."""
        set_hostname = 'hostname "$1" && shift && exec "$@"'
        shell = ["sh", "-c", set_hostname, "sh", self.name, *args]
        return [IP, "netns", "exec", self.name, "unshare", "--uts", *shell]

    def pids(self) -> list[int]:
        listed = ip("netns", "pids", self.name, check=False).stdout.split()
        return [int(pid) for pid in listed]

    def kill(self, timeout: float = 10) -> list[int]:
        """SIGKILL to everything running on the host, at once; return when all of it is dead
        (its kernel has closed its connections). Return the pids killed."""
        killed = self.pids()
        for pid in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while any(_alive(pid) for pid in killed):
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes of {self.name} outlived SIGKILL")
            time.sleep(0.05)
        return killed

    def unplug(self) -> None:
        """Its cable pulled: nothing it sends reaches the LAN any more, not even a FIN."""
        ip("link", "del", self.veth, check=False)

    def remove(self) -> list[int]:
        """The host gone for good: everything on it killed, its cable and namespace removed."""
        killed = self.kill()
        self.unplug()
        ip("netns", "del", self.name, check=False)
        return killed


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie (whose sockets are closed already)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class Lan:
    """The bridge, the hosts on it, and the forwarder to the real database and broker."""

    folder: Path
    hosts: list[Host] = field(default_factory=list)
    forwarder: subprocess.Popen | None = None

    def up(self, hosts: int, forward: dict[int, int]) -> "Lan":
        """A bridge with `hosts` namespaces on it; `forward` maps ports of SERVER_ADDRESS to
        ports of 127.0.0.1 on this machine."""
        self.remove()
        ip("link", "add", BRIDGE, "type", "bridge")
        ip("addr", "add", f"{SERVER_ADDRESS}/{NETMASK}", "dev", BRIDGE)
        ip("link", "set", BRIDGE, "up")
        for number in range(1, hosts + 1):
            self.hosts.append(self._host(number))
        self._start_forwarder(forward)
        return self

    def _host(self, number: int) -> Host:
        host = Host(f"{PREFIX}h{number}", f"10.231.0.{FIRST_HOST + number - 1}")
        ip("netns", "add", host.name)
        ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.name)
        ip("link", "set", host.veth, "master", BRIDGE)
        ip("link", "set", host.veth, "up")
        in_namespace(host.name, IP, "addr", "add", f"{host.address}/{NETMASK}", "dev", "eth0")
        in_namespace(host.name, IP, "link", "set", "eth0", "up")
        in_namespace(host.name, IP, "link", "set", "lo", "up")
        return host

    def _start_forwarder(self, forward: dict[int, int]) -> None:
        log = self.folder / "forwarder.log"
        pairs = [f"{SERVER_ADDRESS}:{port}=127.0.0.1:{target}" for port, target in forward.items()]
        with log.open("wb") as out:
            self.forwarder = subprocess.Popen(
                [sys.executable, "-m", "tests.workers.netns", "forward", *pairs],
                cwd=Path(__file__).resolve().parents[2],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        for _ in range(100):
            if "forwarding" in log.read_text(errors="replace"):
                return
            if self.forwarder.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"the forwarder did not start: {log.read_text(errors='replace')}")

    def connections(self) -> Counter:
        """(client address, target port) of the connections the forwarder relayed, counted."""
        log = (self.folder / "forwarder.log").read_text(errors="replace")
        found = re.findall(r"connection from ([\d.]+) to [\d.]+:(\d+)", log)
        return Counter((address, int(port)) for address, port in found)

    def remove(self) -> None:
        """Take everything of ours down: processes in our namespaces, the namespaces, the
        bridge and the forwarder; also what an interrupted earlier run left."""
        if self.forwarder is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.forwarder.pid, signal.SIGKILL)
            self.forwarder.wait(timeout=10)
            self.forwarder = None
        for name in ip("netns", "list", check=False).stdout.split():
            if name.startswith(PREFIX):
                Host(name, "").remove()
        for line in ip("-o", "link", "show", check=False).stdout.splitlines():
            link = line.split(":")[1].strip().split("@")[0]
            if link.startswith(PREFIX):
                ip("link", "del", link, check=False)
        self.hosts = []


# --- the forwarder --------------------------------------------------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        # One side gone, the other is closed at once: the database sees a worker that died
        # as a closed connection and rolls its transaction back.
        writer.close()


async def _relay(target: tuple[str, int], reader, writer) -> None:
    peer = writer.get_extra_info("peername")[0]
    print(f"connection from {peer} to {target[0]}:{target[1]}", flush=True)
    try:
        up_reader, up_writer = await asyncio.open_connection(*target)
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _forward(pairs: list[str]) -> None:
    servers = []
    for pair in pairs:
        listen, target = (side.rsplit(":", 1) for side in pair.split("="))
        destination = (target[0], int(target[1]))
        servers.append(
            await asyncio.start_server(
                lambda r, w, d=destination: _relay(d, r, w), listen[0], int(listen[1])
            )
        )
    print("forwarding", " ".join(pairs), flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


if __name__ == "__main__" and sys.argv[1:2] == ["forward"]:
    asyncio.run(_forward(sys.argv[2:]))
