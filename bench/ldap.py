"""W4: LDAP. Writing imported contacts into a slapd, next to python-ldap's bare add rate on the
same server, and reading entries from it into the organization's mirror."""

import time

import ldap
import ldap.modlist
from django.db import transaction

from bench.workloads import reset
from directory import changes
from directory.constants import Backend, Kind
from directory.ldap import schema
from directory.ldap.publish import publish
from directory.ldap.scan import scan
from directory.ldap.slapd import Slapd
from directory.models import Container, LdapDirectory, Organization, Recipient, allocate_usns

SUFFIX = "dc=bench,dc=example"
UNITS = ("InterOrg", "People")


def _values(n: int) -> dict[str, str]:
    return {
        "display_name": f"Person {n}",
        "alias": f"person{n}",
        "first_name": "Person",
        "last_name": str(n),
        "title": "Engineer",
        "department": "Operations",
        "phone": f"+1 555 {n:07d}",
        "city": "Springfield",
        "primary_smtp": f"person{n}@origin.example",
    }


def _organization(server: Slapd) -> Organization:
    organization = Organization.objects.create(
        name="LDAPBENCH", display_name="LDAP bench", directory_backend=Backend.LDAP
    )
    LdapDirectory.objects.create(
        organization=organization,
        uri=server.uri,
        bind_dn=server.root_dn(),
        password=server.root_password,
        base_dn=SUFFIX,
    )
    return organization


def _add_contacts(organization: Organization, container: Container, count: int) -> None:
    """The mirror as an import of `count` new contacts leaves it, before they go to LDAP."""
    with transaction.atomic():
        _insert_contacts(organization, container, count)


def _insert_contacts(organization: Organization, container: Container, count: int) -> None:
    first = allocate_usns(organization.pk, count, own=False)
    made = [
        Recipient(
            organization=organization,
            container=container,
            kind=Kind.CUSTOM_RECIPIENT,
            global_key=f"ORIGIN:{n}",
            origin_organization="ORIGIN",
            master_usn=n + 1,
            target_address=_values(n)["primary_smtp"],
            usn=first + n,
            **_values(n),
        )
        for n in range(count)
    ]
    fields = ["organization_id", "container_id", "kind", "global_key", "origin_organization"]
    fields += ["master_usn", "target_address", "usn", *_values(0)]
    rows = ([getattr(r, name) for name in fields] for r in made)
    changes.insert_recipients(organization.pk, fields, rows, copy=False)


def w4_ldap(count: int) -> dict:
    """Contacts written by the import path vs. bare add_s calls of entries of the same shape."""
    reset()
    with Slapd([SUFFIX]) as server:
        conn = ldap.initialize(server.uri, bytes_mode=False)
        conn.simple_bind_s(server.root_dn(), server.root_password)
        for unit in UNITS:
            conn.add_s(
                f"ou={unit},{SUFFIX}",
                [("objectClass", [b"organizationalUnit"]), ("ou", [unit.encode()])],
            )
        organization = _organization(server)
        scan(organization.pk)
        imports = Container.objects.get(organization=organization, name="InterOrg")
        _add_contacts(organization, imports, count)

        start = time.perf_counter()
        result = publish(organization.pk)
        publish_seconds = time.perf_counter() - start

        # The same entries, without our marker (so the scan reads them as people), one add_s
        # after the other: what a plain python-ldap client does.
        entries = []
        for n in range(count):
            values = _values(n + count)
            entry = schema.contact_entry(values, values["primary_smtp"], f"RAW:{n}", "RAW")
            entry[schema.MARKER_ATTRIBUTE] = "bench"
            attrs = {"objectClass": [c.encode() for c in schema.CONTACT_CLASSES]}
            attrs.update({name: [value.encode()] for name, value in entry.items()})
            dn = f"uid={values['alias']},ou=People,{SUFFIX}"
            entries.append((dn, ldap.modlist.addModlist(attrs)))
        start = time.perf_counter()
        for dn, modlist in entries:
            conn.add_s(dn, modlist)
        raw_seconds = time.perf_counter() - start
        conn.unbind_s()

        start = time.perf_counter()
        scanned = scan(organization.pk)
        scan_seconds = time.perf_counter() - start
    publish_rate = _rate(result.added, publish_seconds)
    raw_rate = _rate(count, raw_seconds)
    return {
        "workload": "W4 LDAP",
        "entries": count,
        "written": result.added,
        "problems": len(result.problems),
        "publish_seconds": publish_seconds,
        "publish_rate": publish_rate,
        "raw_add_seconds": raw_seconds,
        "raw_add_rate": raw_rate,
        "publish_to_raw_ratio": round(publish_rate / raw_rate, 3) if raw_rate else None,
        "scanned": scanned.created,
        "scan_seconds": scan_seconds,
        "scan_rate": _rate(scanned.created, scan_seconds),
    }


def _rate(count: int, seconds: float) -> float | None:
    return round(count / seconds, 1) if seconds else None
