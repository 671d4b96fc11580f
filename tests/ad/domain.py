"""An Active Directory organization kept in a test domain controller, for the tests of the
writer, the console and the whole sync: its OUs, its imported contacts, and what AD holds, read
back with python-ldap and samba-tool as an administrator would."""

import ldap

from directory.ad import publish, schema
from directory.ad.scan import scan
from directory.constants import Backend, Kind
from directory.factories import ContainerFactory, OrganizationFactory, RecipientFactory
from directory.models import Container, LdapDirectory, Recipient


class Domain:
    """An AD organization in the test DC: import OU `OU=InterOrg`, a second OU `OU=Partners`,
    each mapped to a container: made here, or with `scanned` by a scan of the domain (which
    maps every OU and the Users container, as an administrator's first scan does)."""

    def __init__(self, dc, scanned: bool = False):
        self.dc = dc
        self.imports = f"OU=InterOrg,{dc.base_dn}"
        self.partners = f"OU=Partners,{dc.base_dn}"
        dc.ldap_tool(
            "ldapadd",
            "".join(
                f"dn: {dn}\nobjectClass: organizationalUnit\n\n"
                for dn in (self.imports, self.partners)
            ),
        )
        self.organization = OrganizationFactory(
            name="BRANCH", directory_backend=Backend.ACTIVE_DIRECTORY
        )
        self.directory = LdapDirectory.objects.create(
            organization=self.organization,
            uri=dc.uri,
            start_tls=True,
            ca_file=str(dc.ca_file),
            bind_dn=dc.bind_user,
            password=dc.password,
            base_dn=dc.base_dn,
            timeout=5,
        )
        if scanned:
            scan(self.organization.pk)
            self.container = Container.objects.get(ldap_dn__iexact=self.imports)
            self.other = Container.objects.get(ldap_dn__iexact=self.partners)
            return
        self.container = ContainerFactory(
            site__organization=self.organization, name="InterOrg", ldap_dn=self.imports
        )
        self.other = ContainerFactory(
            site=self.container.site, name="Partners", ldap_dn=self.partners
        )

    def contact(self, alias: str, name: str, origin: str = "ORG1", **values) -> Recipient:
        values.setdefault("primary_smtp", f"{alias}@{origin.lower()}.example")
        return RecipientFactory(
            container=values.pop("container", self.container),
            kind=Kind.CUSTOM_RECIPIENT,
            alias=alias,
            display_name=name,
            first_name=name.split()[0],
            last_name=name.split()[-1],
            global_key=f"{origin}:{alias}",
            origin_organization=origin,
            **values,
        )

    def publish(self, force: bool = False) -> publish.PublishResult:
        return publish.publish(self.organization.pk, force=force)

    def search(self, base: str, filterstr: str = "(objectClass=contact)") -> dict[str, dict]:
        """Objects under `base` as {dn: {attribute: [values]}}, read with python-ldap."""
        conn = ldap.initialize(self.dc.uri, bytes_mode=False)
        conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(self.dc.ca_file))
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        conn.start_tls_s()
        conn.simple_bind_s(self.dc.bind_user, self.dc.password)
        found = conn.search_s(base, ldap.SCOPE_SUBTREE, filterstr, ["*"])
        conn.unbind_s()
        return {
            dn: {
                name: [v.hex() if name in schema.BINARY_ATTRIBUTES else v.decode() for v in values]
                for name, values in attrs.items()
            }
            for dn, attrs in found
            if dn
        }

    def ours(self) -> dict[str, dict]:
        """Our contacts anywhere in the domain, by key."""
        found = self.search(self.dc.base_dn, schema.CONTACT_FILTER)
        return {attrs[schema.KEY_ATTRIBUTE][0]: {"dn": dn, **attrs} for dn, attrs in found.items()}

    def contact_list(self) -> set[str]:
        """`samba-tool contact list --full-dn`: what an administrator sees."""
        return set(self.dc.samba_tool("contact", "list", "--full-dn").splitlines())


# Exchange's attributes that InterOrg Sync reads or writes where the schema has them, with their
# Exchange OIDs and syntaxes (Unicode string; Boolean).
EXCHANGE_SCHEMA = (
    ("ms-Exch-Target-Address", "targetAddress", "1.2.840.113556.1.2.352", "2.5.5.12", 64),
    ("ms-Exch-Mail-Nickname", "mailNickname", "1.2.840.113556.1.2.447", "2.5.5.12", 64),
    (
        "ms-Exch-Hide-From-Address-Lists",
        "msExchHideFromAddressLists",
        "1.2.840.113556.1.2.7000.102.73",
        "2.5.5.8",
        1,
    ),
)


def extend_with_exchange(dc) -> None:
    """Add Exchange's attributes to the DC's schema (as Exchange's setup does, here only the
    three we use) and allow them on mail recipients (`mailRecipient`, which `contact`, `user`
    and `group` include). The DC is restarted with schema updates allowed."""
    dc.stop()
    text = dc.conf.read_text()
    dc.conf.write_text(
        text.replace("[global]\n", "[global]\n\tdsdb:schema update allowed = true\n", 1)
    )
    dc.start()
    schema_dn = f"CN=Schema,CN=Configuration,{dc.base_dn}"
    dc.ldap_tool(
        "ldapadd",
        "".join(
            f"dn: CN={cn},{schema_dn}\nobjectClass: attributeSchema\nlDAPDisplayName: {name}\n"
            f"attributeID: {oid}\nattributeSyntax: {syntax}\noMSyntax: {om}\n"
            f"isSingleValued: TRUE\nadminDisplayName: {cn}\n\n"
            for cn, name, oid, syntax, om in EXCHANGE_SCHEMA
        ),
    )
    update_now = "dn:\nchangetype: modify\nadd: schemaUpdateNow\nschemaUpdateNow: 1\n\n"
    dc.ldap_tool("ldapmodify", update_now)
    may_contain = "".join(f"mayContain: {name}\n" for _cn, name, *_ in EXCHANGE_SCHEMA)
    dc.ldap_tool(
        "ldapmodify",
        f"dn: CN=Mail-Recipient,{schema_dn}\nchangetype: modify\nadd: mayContain\n{may_contain}\n",
    )
    dc.ldap_tool("ldapmodify", update_now)
