"""An Active Directory organization kept in a test domain controller, as its administrator
manages it (samba-tool, ldapadd, ldapmodify, ldapmodrdn, ldapdelete), and what AD holds of its
recipients, read independently of the scan."""

import uuid

import ldap

from directory.ad.scan import scan
from directory.constants import Backend, Kind
from directory.factories import OrganizationFactory
from directory.models import LdapDirectory, Recipient

PASSWORD = "Passw0rd!x1"


class Administered:
    """One organization whose directory is the DC `dc`, and its administrator's tools."""

    def __init__(self, dc, name: str = "BRANCH", **settings):
        self.dc = dc
        self.organization = OrganizationFactory(
            name=name, directory_backend=Backend.ACTIVE_DIRECTORY
        )
        self.directory = LdapDirectory.objects.create(
            organization=self.organization, **{**self.server_settings(dc), **settings}
        )

    @staticmethod
    def server_settings(dc) -> dict:
        return {
            "uri": dc.uri,
            "start_tls": True,
            "ca_file": str(dc.ca_file),
            "bind_dn": dc.bind_user,
            "password": dc.password,
            "base_dn": dc.base_dn,
            "timeout": 10,
        }

    def scan(self):
        result = scan(self.organization.pk)
        self.directory.refresh_from_db()
        return result

    def dn(self, rdn: str) -> str:
        return f"{rdn},{self.dc.base_dn}"

    # The administrator's changes.

    def add(self, ldif: str) -> None:
        self.dc.ldap_tool("ldapadd", ldif)

    def modify(self, dn: str, *changes: str) -> None:
        """ldapmodify of `dn` with changes such as "replace: mail\nmail: a@b.example"."""
        self.dc.ldap_tool("ldapmodify", f"dn: {dn}\nchangetype: modify\n" + "\n-\n".join(changes))

    def delete(self, *dns: str) -> None:
        self.dc.ldap_tool("ldapdelete", "", *dns)

    def rename(self, dn: str, new_rdn: str, new_superior: str | None = None) -> None:
        args = ["-r", dn, new_rdn] + (["-s", new_superior] if new_superior else [])
        self.dc.ldap_tool("ldapmodrdn", "", *args)

    def unit(self, name: str, parent: str | None = None) -> str:
        dn = f"OU={name},{parent or self.dc.base_dn}"
        self.add(f"dn: {dn}\nobjectClass: organizationalUnit\n\n")
        return dn

    def user(self, account: str, mail: str | None = None, unit: str | None = None, *args) -> str:
        """A user made with samba-tool; its DN (samba-tool names it after the person, if
        given)."""
        options = [f"--mail-address={mail}"] if mail else []
        if unit:
            options.append(f"--userou={unit.removesuffix(',' + self.dc.base_dn)}")
        self.dc.samba_tool("user", "create", account, PASSWORD, *options, *args)
        [(dn, _entry)] = self.read(self.dc.base_dn, f"(sAMAccountName={account})", ["1.1"])
        return dn

    def group(self, name: str, mail: str, unit: str | None = None) -> str:
        options = [f"--mail-address={mail}"]
        if unit:
            options.append(f"--groupou={unit.removesuffix(',' + self.dc.base_dn)}")
        self.dc.samba_tool("group", "add", name, *options)
        return f"CN={name},{unit or self.dn('CN=Users')}"

    def contact(self, name: str, mail: str, unit: str, **attrs: str) -> str:
        dn = f"CN={name},{unit}"
        lines = [f"dn: {dn}", "objectClass: contact", f"mail: {mail}", f"displayName: {name}"]
        lines += [f"{attribute}: {value}" for attribute, value in attrs.items()]
        self.add("\n".join(lines) + "\n\n")
        return dn

    # What AD holds, read with python-ldap.

    def read(self, base: str, filterstr: str, attrs: list[str], scope=ldap.SCOPE_SUBTREE):
        conn = ldap.initialize(self.dc.uri, bytes_mode=False)
        conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(self.dc.ca_file))
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        conn.start_tls_s()
        conn.simple_bind_s(self.dc.bind_user, self.dc.password)
        try:
            found = conn.search_s(base, scope, filterstr, attrs)
            return [(dn, entry) for dn, entry in found if dn is not None]
        finally:
            conn.unbind_s()

    def guid(self, dn: str) -> uuid.UUID:
        [(_dn, entry)] = self.read(dn, "(objectClass=*)", ["objectGUID"], ldap.SCOPE_BASE)
        return uuid.UUID(bytes_le=entry["objectGUID"][0])

    def highest_usn(self) -> int:
        [(_dn, root)] = self.read("", "(objectClass=*)", ["highestCommittedUSN"], ldap.SCOPE_BASE)
        return int(root["highestCommittedUSN"][0])

    def expected(self) -> dict[uuid.UUID, tuple[str, str, str]]:
        """The recipients AD holds (enabled, mail-enabled users, groups and contacts in the
        Users container or an OU, not written by InterOrg Sync): objectGUID -> (kind, display
        name or cn, mail)."""
        found = self.read(
            self.dc.base_dn,
            "(&(mail=*)(|(objectClass=user)(objectClass=group)(objectClass=contact))"
            "(!(adminDescription=InterOrg Sync contact)))",
            ["objectClass", "objectGUID", "cn", "displayName", "mail", "userAccountControl"],
        )
        kinds = {
            b"user": Kind.MAILBOX,
            b"group": Kind.DISTRIBUTION_LIST,
            b"contact": Kind.CUSTOM_RECIPIENT,
        }
        expected = {}
        for dn, entry in found:
            classes = set(entry["objectClass"])
            if b"computer" in classes or int(entry.get("userAccountControl", [b"0"])[0]) & 2:
                continue
            if not (",OU=" in dn or dn.endswith(f",CN=Users,{self.dc.base_dn}")):
                continue
            [kind] = [kinds[name] for name in classes if name in kinds]
            name = (entry.get("displayName") or entry["cn"])[0].decode()
            guid = uuid.UUID(bytes_le=entry["objectGUID"][0])
            expected[guid] = (kind, name, entry["mail"][0].decode())
        return expected

    def expected_in(self, unit: str) -> dict[uuid.UUID, tuple[str, str, str]]:
        """What expected() holds of the objects under `unit`."""
        found = self.read(unit, "(mail=*)", ["objectGUID"])
        inside = {uuid.UUID(bytes_le=entry["objectGUID"][0]) for _dn, entry in found}
        return {guid: row for guid, row in self.expected().items() if guid in inside}

    def mirror(self) -> dict[uuid.UUID, tuple[str, str, str]]:
        return {
            guid: (kind, name, mail)
            for guid, kind, name, mail in Recipient.objects.filter(
                organization=self.organization, global_key__isnull=True
            ).values_list("guid", "kind", "display_name", "primary_smtp")
        }

    def recipient(self, dn: str) -> Recipient:
        return Recipient.objects.get(organization=self.organization, guid=self.guid(dn))
