"""The console's Test connection for an Active Directory: which domain controller answers, how
far its USNs are, and whether it has the controls a scan relies on."""

from dataclasses import dataclass

import ldap

from directory.ad import schema
from directory.ad.scan import SHOW_DELETED
from directory.ldap.connection import connected, search
from directory.models import LdapDirectory

DIRSYNC = "1.2.840.113556.1.4.841"


@dataclass
class DomainController:
    host: str
    service_name: str
    highest_usn: int
    show_deleted: bool
    dirsync: bool
    recipients: int

    def controls(self, separator: str = "; ") -> str:
        """Which of the controls a scan relies on the DC supports, as one line."""
        return separator.join(
            f"{name} control {'supported' if supported else 'NOT supported'}"
            for name, supported in (("Show Deleted", self.show_deleted), ("DirSync", self.dirsync))
        )


def check(directory: LdapDirectory) -> DomainController:
    """Bind, read the rootDSE and the base DN, and count the recipients a full scan would read
    (paged, like a scan). Raises DirectoryUnavailable."""
    with connected(directory) as conn:
        [(_dn, root)] = conn.search_s(
            "",
            ldap.SCOPE_BASE,
            "(objectClass=*)",
            ["dnsHostName", "dsServiceName", "highestCommittedUSN", "supportedControl"],
        )
        conn.search_s(directory.base_dn, ldap.SCOPE_BASE, attrlist=["1.1"])
        controls = {value.decode() for value in root.get("supportedControl", [])}
        recipients = sum(
            1 for _ in search(conn, directory.base_dn, schema.RECIPIENT_FILTER, ["1.1"])
        )
    return DomainController(
        host=root.get("dnsHostName", [b""])[0].decode(),
        service_name=root.get("dsServiceName", [b""])[0].decode(),
        highest_usn=int(root.get("highestCommittedUSN", [b"0"])[0]),
        show_deleted=SHOW_DELETED in controls,
        dirsync=DIRSYNC in controls,
        recipients=recipients,
    )
