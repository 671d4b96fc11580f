"""Write the imported contacts from the mirror into Active Directory as `contact` objects.

The same rules as the LDAP writer (directory.ldap.publish), whose bookkeeping and pipeline this
module uses: the mirror is the truth, only objects that carry our marker (schema.CONTACT_MARKER in
adminDescription) are ever changed, moved or deleted, and a publish that fails half-way is
completed by the next one, which finds what was written by the global key (adminDisplayName).

A contact is named (its CN) after its display name, as AD's own tools name contacts. Two of our
contacts that would take the same name in one OU are told apart by their alias, then by their
key; a name held by an object we did not write is reported in the publish problems and the
object left alone. Exchange's attributes (mailNickname, targetAddress,
msExchHideFromAddressLists) are written only where the domain's schema has them.
"""

import re

import ldap
import ldap.dn
import ldap.modlist

from directory.ad import schema
from directory.constants import GENERAL_ATTRIBUTES
from directory.ldap.connection import connected, describe, search
from directory.ldap.publish import (
    ENTRY_ERRORS,
    Pipeline,
    PublishResult,
    ensure_unit,
    publish_with,
)
from directory.ldap.scan import normalize
from directory.models import LdapDirectory, Recipient

# AD's limit on a CN (the attribute's rangeUpper).
NAME_LENGTH = 64
# Attributes of Exchange's schema extension, and mailNickname (also Exchange's).
EXCHANGE_OPTIONAL = ["mailNickname", schema.TARGET_ATTRIBUTE, schema.HIDE_ATTRIBUTE]
# Everything written on a contact besides its name; on update, attributes of this list the
# contact no longer has are removed.
CONTACT_ATTRIBUTES = [
    *dict.fromkeys(
        [
            *schema.ATTRIBUTES.values(),
            schema.PROXY_ATTRIBUTE,
            "legacyExchangeDN",
            "description",
            schema.TARGET_ATTRIBUTE,
            schema.HIDE_ATTRIBUTE,
            schema.MARKER_ATTRIBUTE,
            schema.KEY_ATTRIBUTE,
        ]
    )
]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def publish(organization_id: int, force: bool = False) -> PublishResult:
    """Bring our contacts in AD in line with the mirror when it changed since the last time (or
    always with `force`). Raises DirectoryUnavailable if the domain controller fails; what was
    written stays, and the next publish completes it."""
    return publish_with(_publish, organization_id, force)


def contact_name(display_name: str, alias: str, key: str) -> str:
    """A contact's CN: its display name on one line, at most NAME_LENGTH characters."""
    name = _CONTROL.sub(" ", display_name).strip() or alias.strip() or key
    return name[:NAME_LENGTH].rstrip()


def contact_dn(name: str, parent_dn: str) -> str:
    return f"CN={ldap.dn.escape_dn_chars(name)},{parent_dn}"


def contact_entry(
    values: dict[str, str],
    target: str,
    key: str,
    origin: str,
    ex_address: str,
    hidden_at=None,
    available: frozenset[str] = frozenset(),
) -> dict[str, list[str]]:
    """The attributes of an imported contact's AD object (without objectClass and CN); the
    Exchange attributes only where `available`."""
    entry: dict[str, list[str]] = {}
    for name, attribute in schema.ATTRIBUTES.items():
        value = schema.ad_value(name, values.get(name, ""))
        # streetAddress is the one attribute of several lines.
        value = value.replace("\r", "") if name == "address" else _CONTROL.sub(" ", value)
        if value:
            entry[attribute] = [value]
    primary = values.get("primary_smtp", "")
    entry[schema.PROXY_ATTRIBUTE] = [f"SMTP:{primary}"]
    entry["legacyExchangeDN"] = [ex_address]
    entry[schema.TARGET_ATTRIBUTE] = [f"SMTP:{target or primary}"]
    entry[schema.MARKER_ATTRIBUTE] = [schema.CONTACT_MARKER]
    entry[schema.KEY_ATTRIBUTE] = [key]
    description = f"Imported by InterOrg Sync from {origin}"
    if hidden_at is not None:
        description += (
            f"; deleted there, hidden since {hidden_at:%Y-%m-%d %H:%M} UTC, removed for good "
            "after the grace period unless it comes back"
        )
        entry[schema.HIDE_ATTRIBUTE] = ["TRUE"]
    entry["description"] = [description]
    for attribute in EXCHANGE_OPTIONAL:
        if attribute not in available:
            entry.pop(attribute, None)
    return entry


def available_attributes(conn) -> frozenset[str]:
    """Which of EXCHANGE_OPTIONAL the domain's schema has."""
    root = conn.search_s("", ldap.SCOPE_BASE, "(objectClass=*)", ["schemaNamingContext"])
    naming = root[0][1].get("schemaNamingContext", [b""])[0].decode()
    wanted = "".join(f"(lDAPDisplayName={name})" for name in EXCHANGE_OPTIONAL)
    found = conn.search_s(
        naming,
        ldap.SCOPE_ONELEVEL,
        f"(&(objectClass=attributeSchema)(|{wanted}))",
        ["lDAPDisplayName"],
    )
    names = {attrs["lDAPDisplayName"][0].decode().lower() for _dn, attrs in found if attrs}
    return frozenset(name for name in EXCHANGE_OPTIONAL if name.lower() in names)


def _contacts(directory: LdapDirectory) -> list[tuple]:
    """The organization's imported contacts, in the order of their keys (names are given in
    that order, so the same contacts always get the same names)."""
    return list(
        Recipient.objects.filter(organization_id=directory.organization_id)
        .exclude(global_key=None)
        .order_by("global_key")
        .values_list(
            "global_key",
            "origin_organization",
            "target_address",
            "container__ldap_dn",
            "container__dn",
            "hidden_at",
            *GENERAL_ATTRIBUTES,
            named=True,
        )
    )


def _publish(directory: LdapDirectory) -> PublishResult:
    result = PublishResult()
    contacts = _contacts(directory)
    hidden_unit = schema.hidden_unit_dn(directory.base_dn)
    with connected(directory) as conn:
        available = available_attributes(conn)
        if any(contact.hidden_at is not None for contact in contacts):
            ensure_unit(conn, hidden_unit, schema.HIDDEN_UNIT)
        pipeline = Pipeline(conn, result)
        written = _written(conn, directory, pipeline)
        wanted, unplaced = _wanted(contacts, hidden_unit, available, result)
        # Deletes first: a new contact may take the name of one that went.
        for key in written.keys() - wanted.keys() - unplaced:
            dn = written.pop(key)[0]
            pipeline.submit(dn, "deleted", conn.delete_ext, dn)
        pipeline.drain()
        stuck = _rename(conn, written, wanted, result)
        for key, (dn, entry) in wanted.items():
            have = written.get(key)
            if have is None:
                attrs = {"objectClass": schema.CONTACT_CLASSES, **entry}
                modlist = ldap.modlist.addModlist(
                    {name: [value.encode() for value in values] for name, values in attrs.items()}
                )
                pipeline.submit(dn, "added", conn.add_ext, dn, modlist)
                continue
            changes = _modlist(have[1], entry)
            if changes:
                dn = stuck.get(key, dn)
                pipeline.submit(dn, "modified", conn.modify_ext, dn, changes)
        pipeline.drain()
    return result


def _written(conn, directory: LdapDirectory, pipeline: Pipeline) -> dict[str, tuple[str, dict]]:
    """Our contacts in AD by key; a stray second copy of a key is deleted."""
    written: dict[str, tuple[str, dict]] = {}
    attributes = ["cn", *CONTACT_ATTRIBUTES]
    for dn, attrs in search(conn, directory.base_dn, schema.CONTACT_FILTER, attributes):
        attrs = {name.lower(): values for name, values in attrs.items()}
        key = (attrs.get(schema.KEY_ATTRIBUTE.lower()) or [""])[0]
        if key in written:
            pipeline.submit(dn, "deleted", conn.delete_ext, dn)
            continue
        written[key] = (dn, attrs)
    return written


def _wanted(
    contacts: list[tuple], hidden_unit: str, available: frozenset[str], result: PublishResult
) -> tuple[dict[str, tuple[str, dict]], set[str]]:
    """Each contact's DN and attributes, by key, names unique within each OU; and the keys of
    the contacts that have no OU to go to (reported, and left as they are in AD)."""
    wanted: dict[str, tuple[str, dict]] = {}
    unplaced: set[str] = set()
    taken: set[tuple[str, str]] = set()
    for key, origin, target, parent_dn, container_dn, hidden_at, *values in contacts:
        general = dict(zip(GENERAL_ATTRIBUTES, values, strict=True))
        if hidden_at is not None:
            parent_dn = hidden_unit
        if not parent_dn:
            result.problems.append(
                f"{general['display_name']} ({key}): its container is not an Active Directory "
                "organizational unit; choose one as the import container."
            )
            unplaced.add(key)
            continue
        name = contact_name(general["display_name"], general["alias"], key)
        parent = normalize(parent_dn)
        for suffix in ("", f" ({general['alias']})", f" ({key})"):
            candidate = name[: NAME_LENGTH - len(suffix)].rstrip() + suffix
            if (parent, candidate.casefold()) not in taken:
                break
        taken.add((parent, candidate.casefold()))
        ex_address = f"{container_dn}/cn={general['alias']}"
        entry = contact_entry(general, target, key, origin, ex_address, hidden_at, available)
        wanted[key] = (contact_dn(candidate, parent_dn), entry)
    return wanted, unplaced


def _rename(conn, written: dict, wanted: dict, result: PublishResult) -> dict[str, str]:
    """Move or rename our contacts whose name or OU changed, one at a time (each must be done
    before its new name can be used); one whose new name is held by another of ours that moves
    too is tried again after it. Returns the DNs of the contacts that stay where they were
    because of a problem (reported), by key."""
    todo = [
        key
        for key in written.keys() & wanted.keys()
        if normalize(written[key][0]) != normalize(wanted[key][0])
    ]
    stuck: dict[str, str] = {}
    while todo:
        held = {normalize(written[key][0]) for key in todo}
        retry = []
        for key in sorted(todo):
            old_dn, dn = written[key][0], wanted[key][0]
            rdn, parent = dn.split(",", 1)
            try:
                conn.rename_s(old_dn, rdn, parent, delold=1)
            except ldap.ALREADY_EXISTS as exc:
                if normalize(dn) in held:
                    retry.append(key)
                else:
                    result.problems.append(f"{old_dn} -> {dn}: {describe(exc)}")
                    stuck[key] = old_dn
                continue
            except ENTRY_ERRORS as exc:
                result.problems.append(f"{old_dn} -> {dn}: {describe(exc)}")
                stuck[key] = old_dn
                continue
            result.renamed += 1
            held.discard(normalize(old_dn))
        if len(retry) == len(todo):  # names that go round in a circle: left for now
            for key in retry:
                result.problems.append(
                    f"{written[key][0]} -> {wanted[key][0]}: the name is held by another "
                    "contact being renamed"
                )
                stuck[key] = written[key][0]
            break
        todo = retry
    return stuck


def _modlist(have: dict[str, list[str]], want: dict[str, list[str]]) -> list:
    changes = []
    for name in CONTACT_ATTRIBUTES:
        old, new = have.get(name.lower(), []), want.get(name)
        if new is None:
            if old:
                changes.append((ldap.MOD_DELETE, name, None))
        elif sorted(old) != sorted(new):
            changes.append((ldap.MOD_REPLACE, name, [value.encode() for value in new]))
    return changes
