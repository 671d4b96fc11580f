"""W5: Active Directory, on a throwaway Samba domain controller. For each N: a scan of N users
(the first, a full comparison; then an incremental one after K changes, which must cost the same
for any N), and N imported contacts written as AD contacts, each next to the command-line
`ldapadd` of the same objects on the same DC (one process, one connection: the fastest a client
adds objects), as ratios."""

import time

from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench.ldap import _add_contacts, _rate, _values
from bench.workloads import reset
from directory.ad import publish, samba, schema
from directory.ad.scan import scan
from directory.constants import GENERAL_ATTRIBUTES, Backend
from directory.models import Container, LdapDirectory, Organization

ADDRESS = "127.0.4.1"
UNITS = ("People", "InterOrg", "Raw")
NORMAL_ACCOUNT_NO_PASSWORD = 544  # userAccountControl: an enabled user without a password


def _ldif(dn: str, attrs: dict[str, list[str]]) -> str:
    """One LDIF record; values that LDIF cannot carry as they are go base64-encoded."""
    import base64

    lines = [f"dn: {dn}"]
    for name, values in attrs.items():
        for value in values:
            if value.isascii() and value.isprintable() and not value.startswith((" ", ":", "<")):
                lines.append(f"{name}: {value}")
            else:
                lines.append(f"{name}:: {base64.b64encode(value.encode()).decode()}")
    return "\n".join(lines) + "\n\n"


def _person_dn(n: int, base_dn: str) -> str:
    return f"CN=Staff {n},OU=People,{base_dn}"


def _person(n: int, base_dn: str) -> str:
    """A user of the organization (the imported contacts' aliases are others)."""
    values = _values(n) | {"alias": f"staff{n}", "display_name": f"Staff {n}"}
    return _ldif(
        _person_dn(n, base_dn),
        {
            "objectClass": ["user"],
            "sAMAccountName": [values["alias"]],
            "userAccountControl": [str(NORMAL_ACCOUNT_NO_PASSWORD)],
            "givenName": [values["first_name"]],
            "sn": [values["last_name"]],
            "displayName": [values["display_name"]],
            "title": [values["title"]],
            "department": [values["department"]],
            "telephoneNumber": [values["phone"]],
            "l": [values["city"]],
            "mail": [f"{values['alias']}@bench.example"],
            schema.PROXY_ATTRIBUTE: [f"SMTP:{values['alias']}@bench.example"],
        },
    )


def _raw_contact(n: int, base_dn: str) -> str:
    """A contact as the import writes it (same attributes), but not ours."""
    values = {name: "" for name in GENERAL_ATTRIBUTES} | _values(n)
    entry = publish.contact_entry(
        values, values["primary_smtp"], f"RAW:{n}", "RAW", f"/o=RAW/cn={values['alias']}"
    )
    entry[schema.MARKER_ATTRIBUTE] = ["bench"]
    name = publish.contact_name(values["display_name"], values["alias"], f"RAW:{n}")
    return _ldif(f"CN={name},OU=Raw,{base_dn}", {"objectClass": ["contact"], **entry})


def _organization(dc: samba.SambaDC) -> Organization:
    organization = Organization.objects.create(
        name="ADBENCH",
        display_name="AD bench",
        mail_domain="bench.example",
        directory_backend=Backend.ACTIVE_DIRECTORY,
    )
    LdapDirectory.objects.create(
        organization=organization,
        uri=dc.uri,
        start_tls=True,
        ca_file=str(dc.ca_file),
        bind_dn=dc.bind_user,
        password=dc.password,
        base_dn=dc.base_dn,
        timeout=60,
    )
    return organization


def _timed(action):
    start = time.perf_counter()
    result = action()
    return result, time.perf_counter() - start


def w5_one(count: int, changes: int) -> dict:
    """One N: raw adds, the full scan, K changes and the incremental scan, the contacts."""
    reset()
    with samba.SambaDC(ADDRESS) as dc:
        base = dc.base_dn
        dc.ldap_tool(
            "ldapadd",
            "".join(f"dn: OU={unit},{base}\nobjectClass: organizationalUnit\n\n" for unit in UNITS),
        )
        people = "".join(_person(n, base) for n in range(count))
        _, raw_people_seconds = _timed(lambda: dc.ldap_tool("ldapadd", people))
        organization = _organization(dc)
        full, full_seconds = _timed(lambda: scan(organization.pk))

        modify = "".join(
            f"dn: {_person_dn(n, base)}\nchangetype: modify\nreplace: title\ntitle: Changed {n}\n\n"
            for n in range(0, count, max(1, count // changes))[:changes]
        )
        dc.ldap_tool("ldapmodify", modify)
        with CaptureQueriesContext(connection) as queries:
            incremental, incremental_seconds = _timed(lambda: scan(organization.pk))

        imports = Container.objects.get(organization=organization, name="InterOrg")
        _add_contacts(organization, imports, count)
        written, publish_seconds = _timed(lambda: publish.publish(organization.pk))
        raw = "".join(_raw_contact(n + count, base) for n in range(count))
        _, raw_contacts_seconds = _timed(lambda: dc.ldap_tool("ldapadd", raw))
    raw_people_rate = _rate(count, raw_people_seconds)
    raw_contacts_rate = _rate(count, raw_contacts_seconds)
    full_rate = _rate(full.created, full_seconds)
    publish_rate = _rate(written.added, publish_seconds)
    return {
        "entries": count,
        "changes": changes,
        "raw_add_seconds": raw_people_seconds,
        "raw_add_rate": raw_people_rate,
        "full_scan_seconds": full_seconds,
        "full_scan_read": full.created,
        "full_scan_rate": full_rate,
        "full_scan_reason": full.reason,
        "full_scan_to_raw_ratio": _ratio(full_rate, raw_people_rate),
        "incremental_seconds": incremental_seconds,
        "incremental_read": incremental.read,
        "incremental_updated": incremental.updated,
        "incremental_full": incremental.full,
        "incremental_queries": len(queries.captured_queries),
        "publish_seconds": publish_seconds,
        "written": written.added,
        "problems": len(written.problems),
        "publish_rate": publish_rate,
        "raw_contacts_seconds": raw_contacts_seconds,
        "raw_contacts_rate": raw_contacts_rate,
        "publish_to_raw_ratio": _ratio(publish_rate, raw_contacts_rate),
    }


def w5_ad(sizes: list[int], changes: int) -> list[dict]:
    return [w5_one(count, changes) for count in sizes]


def _ratio(ours: float | None, raw: float | None) -> float | None:
    return round(ours / raw, 3) if ours and raw else None
