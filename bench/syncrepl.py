"""The peer: OpenLDAP's syncrepl copying a directory, measured beside W1 on the same machine.

A syncprov provider holds N inetOrgPerson entries with W1's attribute set (the same generator,
mapped as directory.ldap.schema maps the General attributes); an empty consumer (mdb with
`dbnosync`, equality indexes on objectClass, entryCSN and entryUUID, refreshAndPersist) is
started, and the time runs from its start until it holds all N. Both listen on 127.0.0.1 only.
"""

import io
import socket
import time

import ldap
import ldif

from bench import topology
from directory.ldap import schema
from directory.ldap.slapd import Slapd, SlapdError

SUFFIX = "dc=peer,dc=example"
UNIT = f"ou=People,{SUFFIX}"
# The ports the two servers may take (the first two free ones).
PORTS = range(39100, 39200)
INDEXES = ("objectClass eq", "entryCSN eq", "entryUUID eq")
# How long the consumer may take before the workload gives up on it.
TIMEOUT_SECONDS = 1800
POLL_SECONDS = 0.02


class PeerSlapd(Slapd):
    """A throwaway slapd as directory.ldap.slapd runs them, configured as a syncrepl provider
    (`provider_uri` None) or as an empty consumer of one."""

    def __init__(self, port: int, provider_uri: str | None = None):
        self.provider_uri = provider_uri
        super().__init__([SUFFIX], port=port)

    def _configure(self) -> None:
        data = self.root / "data0"
        data.mkdir()
        lines = self._global_lines(*(["syncprov"] if self.provider_uri is None else []))
        lines += [
            "database mdb",
            "maxsize 4294967296",
            f'suffix "{SUFFIX}"',
            f'rootdn "{self.root_dn()}"',
            f"rootpw {self.root_password}",
            f"directory {data}",
            "dbnosync",
            *(f"index {index}" for index in INDEXES),
        ]
        if self.provider_uri is None:
            lines += ["overlay syncprov", "syncprov-checkpoint 1000 10"]
        else:
            lines.append(
                f"syncrepl rid=001 provider={self.provider_uri} type=refreshAndPersist "
                f'searchbase="{SUFFIX}" scope=sub bindmethod=simple '
                f'binddn="{self.root_dn()}" credentials={self.root_password} retry="1 +"'
            )
        self.config = self.root / "slapd.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self._run(["/usr/sbin/slaptest", "-u", "-f", str(self.config)])

    def load(self, entries: str) -> None:
        """Write LDIF entries offline (before start), as an administrator's slapadd would."""
        self._run(["/usr/sbin/slapadd", "-q", "-f", str(self.config), "-b", SUFFIX], entries)


def people_ldif(count: int, organizations: int = 3) -> tuple[str, str]:
    """`count` people with W1's attributes (bench.topology), spread over its organizations, as
    LDIF; and the DN of the last one."""
    out = io.StringIO()
    writer = ldif.LDIFWriter(out, cols=10_000)
    writer.unparse(
        SUFFIX, {"objectClass": [b"dcObject", b"organization"], "dc": [b"peer"], "o": [b"peer"]}
    )
    writer.unparse(UNIT, {"objectClass": [b"organizationalUnit"], "ou": [b"People"]})
    per_org = -(-count // organizations)
    dn = UNIT
    for number in range(1, organizations + 1):
        for person in topology.people(number, min(per_org, count - (number - 1) * per_org)):
            dn = f"mail={person['primary_smtp']},{UNIT}"
            writer.unparse(dn, _entry(person))
    return out.getvalue(), dn


def _entry(person: dict) -> dict[str, list[bytes]]:
    attrs = {"objectClass": [b"top", b"inetOrgPerson"], "cn": [person["display_name"].encode()]}
    for name, attribute in schema.ATTRIBUTES.items():
        value = person.get(name)
        if value and name != "country":
            attrs[attribute] = [value.encode()]
    # inetOrgPerson has no `c`: the country's name travels in `description`, the same bytes.
    attrs["description"] = [person["country"].encode()]
    attrs["employeeNumber"] = [person["custom_attribute_1"].encode()]
    return attrs


def syncrepl(count: int, organizations: int = 3, timeout: float = TIMEOUT_SECONDS) -> dict:
    """Time an empty consumer's refresh of `count` entries from a syncprov provider (given up
    after `timeout` seconds: `held` then says how many arrived)."""
    provider_port, consumer_port = _free_ports(2)
    provider = PeerSlapd(provider_port)
    consumer = None
    try:
        entries, last = people_ldif(count, organizations)
        provider.load(entries)
        provider.start()
        consumer = PeerSlapd(consumer_port, provider_uri=provider.uri)
        start = time.perf_counter()
        consumer.start()
        seconds, held = _wait_for(consumer, last, count, start, start + timeout)
    finally:
        for server in (consumer, provider):
            if server is not None:
                server.close()
    return {
        "workload": "syncrepl peer",
        "entries": count,
        "held": held,
        "seconds": seconds,
        "rate": round(held / seconds, 1) if seconds else None,
    }


def _free_ports(count: int) -> list[int]:
    free = []
    for port in PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        free.append(port)
        if len(free) == count:
            return free
    raise SlapdError(f"no {count} free ports in {PORTS.start}-{PORTS.stop - 1} on 127.0.0.1")


def _wait_for(
    consumer: PeerSlapd, last: str, count: int, start: float, deadline: float
) -> tuple[float, int]:
    """Seconds from `start` until the consumer holds all `count` people, and how many it holds.
    The last entry written is looked for (a base search costs the consumer nothing), then the
    whole count is checked; should it fall short, the count is asked again until it is full."""
    conn = ldap.initialize(consumer.uri, bytes_mode=False)
    conn.simple_bind_s(consumer.root_dn(), consumer.root_password)
    try:
        while time.perf_counter() < deadline:
            try:
                conn.search_s(last, ldap.SCOPE_BASE, attrlist=["1.1"])
                break
            except ldap.NO_SUCH_OBJECT:
                time.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - start
        while True:
            held = _held(conn)
            if held >= count or time.perf_counter() > deadline:
                return seconds, held
            time.sleep(POLL_SECONDS)
            seconds = time.perf_counter() - start
    except ldap.LDAPError as exc:
        raise SlapdError(f"the consumer did not answer: {exc}") from None
    finally:
        conn.unbind_s()


def _held(conn) -> int:
    try:
        return len(conn.search_s(UNIT, ldap.SCOPE_ONELEVEL, attrlist=["1.1"]))
    except ldap.NO_SUCH_OBJECT:  # not even the unit has arrived
        return 0
