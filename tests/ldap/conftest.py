"""A throwaway slapd for the LDAP tests (one per test process), and organizations kept in it.

ORG1 keeps the built-in directory; ORG2 and ORG3 keep theirs in LDAP, under their own suffixes.
Entries are written with the OpenLDAP command-line tools (ldapadd, ldapmodify, ldapdelete), as
an administrator would.
"""

import base64
import subprocess
from dataclasses import dataclass

import ldap
import pytest

from directory.constants import Backend, Role
from directory.ldap.scan import scan
from directory.ldap.slapd import Slapd
from directory.models import Container, LdapDirectory, Organization
from master.models import AllowedRequestor, MasterConfig
from requestor.models import ExportedContainer, RequestorConfig
from tests.engine.conftest import MASTER_DN, Org, Scenario, make_org

SUFFIXES = {"ORG2": "dc=org2,dc=example", "ORG3": "dc=org3,dc=example"}


@pytest.fixture(scope="session")
def slapd():
    server = Slapd(list(SUFFIXES.values()))
    server.start()
    yield server
    server.close()


def _wipe(server: Slapd) -> None:
    conn = ldap.initialize(server.uri)
    for suffix in server.suffixes:
        conn.simple_bind_s(server.root_dn(suffix), server.root_password)
        found = conn.search_s(suffix, ldap.SCOPE_SUBTREE, attrlist=["1.1"])
        for dn, _ in sorted(found, key=lambda item: -len(ldap.dn.str2dn(item[0]))):
            if ldap.dn.str2dn(dn) != ldap.dn.str2dn(suffix):
                conn.delete_s(dn)
    conn.unbind_s()


@pytest.fixture
def server(slapd):
    """The session's slapd, running, and emptied down to the suffixes after the test."""
    if slapd.process is None:
        slapd.start()
    yield slapd
    if slapd.process is None:
        slapd.start()
    _wipe(slapd)


@dataclass
class Tool:
    """The OpenLDAP command-line tools, bound as the administrator of one suffix."""

    server: Slapd
    suffix: str

    def run(self, program: str, ldif: str = "", *args: str) -> str:
        command = [
            program,
            "-x",
            "-H",
            self.server.uri,
            "-D",
            self.server.root_dn(self.suffix),
            "-w",
            self.server.root_password,
            *args,
        ]
        done = subprocess.run(command, input=ldif, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{program} failed: {done.stderr}"
        return done.stdout

    def add(self, ldif: str) -> None:
        self.run("ldapadd", ldif)

    def modify(self, ldif: str) -> None:
        self.run("ldapmodify", ldif)

    def delete(self, *dns: str) -> None:
        self.run("ldapdelete", "", *dns)

    def rename(self, dn: str, new_rdn: str, new_superior: str | None = None) -> None:
        args = ["-r", dn, new_rdn] + (["-s", new_superior] if new_superior else [])
        self.run("ldapmodrdn", "", *args)

    def search(self, base: str | None, filterstr: str, *attrs: str) -> list[tuple[str, dict]]:
        """Entries as (dn, {attribute: [values]}), read with python-ldap for exact values."""
        conn = ldap.initialize(self.server.uri, bytes_mode=False)
        conn.simple_bind_s(self.server.root_dn(self.suffix), self.server.root_password)
        found = conn.search_s(base or self.suffix, ldap.SCOPE_SUBTREE, filterstr, list(attrs))
        conn.unbind_s()
        return [
            (dn, {name: [v.decode() for v in values] for name, values in entry.items()})
            for dn, entry in found
        ]


def entry_ldif(dn: str, attrs: dict[str, list[str]]) -> str:
    """An LDIF record with every value base64-encoded, as LDIF wants for non-ASCII text."""

    def line(name: str, value: str) -> str:
        return f"{name}:: {base64.b64encode(value.encode()).decode()}"

    lines = [line("dn", dn)]
    lines += [line(name, value) for name, values in attrs.items() for value in values]
    return "\n".join(lines) + "\n\n"


def person_ldif(dn: str, uid: str, mail: str, name: str, **extra: str) -> str:
    lines = [
        f"dn: {dn}",
        "objectClass: inetOrgPerson",
        f"uid: {uid}",
        f"cn: {name}",
        f"sn: {name.split()[-1]}",
        f"displayName: {name}",
        f"mail: {mail}",
    ]
    lines += [f"{attribute}: {value}" for attribute, value in extra.items()]
    return "\n".join(lines) + "\n\n"


@dataclass
class LdapOrg:
    """An LDAP organization of the scenario: its Org (mirror side) and its LDAP tools."""

    org: object
    tool: Tool

    @property
    def suffix(self) -> str:
        return self.tool.suffix

    @property
    def people(self) -> str:
        return f"ou=People,{self.suffix}"

    @property
    def imports(self) -> str:
        return f"ou=InterOrg,{self.suffix}"

    def add_person(self, uid: str, name: str, **extra) -> str:
        dn = f"uid={uid},{self.people}"
        domain = self.org.organization.mail_domain
        self.tool.add(person_ldif(dn, uid, f"{uid}@{domain}", name, **extra))
        return dn

    def contacts(self) -> dict[str, dict]:
        """The contacts written to this organization's LDAP, by mail."""
        found = self.tool.search(self.imports, "(objectClass=inetOrgPerson)", "*")
        return {attrs["mail"][0]: {"dn": dn, **attrs} for dn, attrs in found}


def make_ldap_org(number: int, server: Slapd, **options) -> LdapOrg:
    """An LDAP organization with ou=People (exported), ou=Groups and ou=InterOrg (imports)."""
    name = f"ORG{number}"
    suffix = SUFFIXES[name]
    tool = Tool(server, suffix)
    tool.add(
        "".join(
            f"dn: ou={unit},{suffix}\nobjectClass: organizationalUnit\nou: {unit}\n\n"
            for unit in ("People", "Groups", "InterOrg")
        )
    )
    organization = Organization.objects.create(
        name=name,
        display_name=f"Organization {number}",
        role=Role.REQUESTOR,
        mail_domain=f"{name}.example".lower(),
        directory_backend=Backend.LDAP,
    )
    LdapDirectory.objects.create(
        organization=organization,
        uri=server.uri,
        bind_dn=server.root_dn(suffix),
        password=server.root_password,
        base_dn=suffix,
        timeout=3,
    )
    scan(organization.pk)
    units = {c.name: c for c in Container.objects.filter(organization=organization)}
    config = RequestorConfig.objects.create(
        organization=organization,
        address=f"requestor@{organization.mail_domain}",
        dn=f"/o={name}/ou=LDAP/cn=REQUESTOR",
        master_address=MASTER_DN,
        import_container=units["InterOrg"],
        **options,
    )
    for unit in ("People", "Groups"):
        ExportedContainer.objects.create(
            config=config,
            container=units[unit],
            mailboxes=True,
            distribution_lists=True,
            custom_recipients=True,
        )
    org = Org(organization, units["People"], units["Groups"], units["InterOrg"], config)
    return LdapOrg(org, tool)


@dataclass
class Mixed:
    """ORG1 built-in (master and requestor), ORG2 and ORG3 in LDAP."""

    scenario: Scenario
    org2: LdapOrg
    org3: LdapOrg


@pytest.fixture
def mixed(db, server) -> Mixed:
    org1 = make_org(1, Role.BOTH)
    org2 = make_ldap_org(2, server, append_display_name=" (ORG2)")
    org3 = make_ldap_org(3, server, modify_smtp_domain="org3.com")
    master = MasterConfig.objects.create(
        organization=org1.organization, address="master@org1.example", dn=MASTER_DN
    )
    for org in (org1, org2.org, org3.org):
        AllowedRequestor.objects.create(
            master=master, address=org.config.dn, organization_name=org.name
        )
    for _ in range(3):
        org1.add()
    return Mixed(Scenario(master, {"ORG1": org1, "ORG2": org2.org, "ORG3": org3.org}), org2, org3)
