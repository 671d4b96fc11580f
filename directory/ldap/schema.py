"""The one mapping between the General attributes and standard LDAP attributes.

People (`inetOrgPerson`) are mailboxes, groups (`groupOfNames`) distribution lists, and an entry
that also has `inetLocalMailRecipient` with a `mailRoutingAddress` (misc.schema) is a custom
recipient: mail to it goes to that address. Only entries with a `mail` value are recipients.
Imported contacts are written as inetOrgPerson + inetLocalMailRecipient entries that carry their
provenance: `employeeType` = CONTACT_MARKER, `employeeNumber` = the global key.
"""

import re

from directory.constants import GENERAL_ATTRIBUTES, Kind

# General attribute -> LDAP attribute. `assistant` has no standard attribute that holds a name
# (inetOrgPerson's `secretary` is a DN): it is not read from LDAP and not written to it.
ATTRIBUTES: dict[str, str] = {
    "display_name": "displayName",
    "alias": "uid",
    "first_name": "givenName",
    "initials": "initials",
    "last_name": "sn",
    "title": "title",
    "company": "o",
    "department": "departmentNumber",
    "office": "physicalDeliveryOfficeName",
    "phone": "telephoneNumber",
    "address": "street",
    "city": "l",
    "state": "st",
    "postal_code": "postalCode",
    "country": "c",
    "primary_smtp": "mail",
}
assert set(ATTRIBUTES) <= set(GENERAL_ATTRIBUTES)

TARGET_ATTRIBUTE = "mailRoutingAddress"
MARKER_ATTRIBUTE = "employeeType"
KEY_ATTRIBUTE = "employeeNumber"
CONTACT_MARKER = "InterOrg Sync contact"
CONTACT_CLASSES = ["top", "inetOrgPerson", "inetLocalMailRecipient"]
# What a scan reads of a recipient entry.
READ_ATTRIBUTES = [
    "objectClass",
    "entryUUID",
    "modifyTimestamp",
    "cn",
    TARGET_ATTRIBUTE,
    *ATTRIBUTES.values(),
]
# Everything written on an imported contact; on update, attributes of this list that the contact
# no longer has are removed.
CONTACT_ATTRIBUTES = [
    "cn",
    "description",
    TARGET_ATTRIBUTE,
    MARKER_ATTRIBUTE,
    KEY_ATTRIBUTE,
    *ATTRIBUTES.values(),
]

# Mail-enabled people and groups that are not contacts written by us.
RECIPIENT_FILTER = (
    f"(&(mail=*)(|(objectClass=inetOrgPerson)(objectClass=groupOfNames))"
    f"(!({MARKER_ATTRIBUTE}={CONTACT_MARKER})))"
)
CONTACT_FILTER = f"(&(objectClass=inetOrgPerson)({MARKER_ATTRIBUTE}={CONTACT_MARKER}))"
# Contacts hidden for their grace period wait in this unit, directly under the base DN: out of
# the import unit, where address books look, but the same entries (same entryUUID), moved back
# if their entry returns. The scan does not take it for a container of the organization.
HIDDEN_UNIT = "InterOrg Sync hidden contacts"
UNIT_FILTER = f"(&(objectClass=organizationalUnit)(!(ou={HIDDEN_UNIT})))"


def hidden_unit_dn(base_dn: str) -> str:
    return f"ou={HIDDEN_UNIT},{base_dn}"


# telephoneNumber is a PrintableString; `c` is a two-letter country code.
_NOT_PRINTABLE = re.compile(r"[^A-Za-z0-9 '()+,\-./:=?]")
_COUNTRY_CODE = re.compile(r"^[A-Za-z]{2}$")


def kind_of(object_classes: set[str], attrs: dict[str, list[str]]) -> str:
    if "groupofnames" in object_classes:
        return Kind.DISTRIBUTION_LIST
    if "inetlocalmailrecipient" in object_classes and attrs.get(TARGET_ATTRIBUTE):
        return Kind.CUSTOM_RECIPIENT
    return Kind.MAILBOX


def general_from_entry(attrs: dict[str, list[str]], kind: str) -> dict[str, str]:
    """The General attributes of an entry (first value of each, as text)."""
    values = {name: (attrs.get(ATTRIBUTES[name]) or [""])[0] for name in ATTRIBUTES}
    values["assistant"] = ""
    cn = (attrs.get("cn") or [""])[0]
    if not values["display_name"]:
        values["display_name"] = cn
    if not values["alias"]:
        # Groups have no uid: their name is their alias; people without one use the mailbox name.
        values["alias"] = cn if kind == Kind.DISTRIBUTION_LIST else ""
        values["alias"] = values["alias"] or values["primary_smtp"].partition("@")[0]
    return values


def ldap_value(name: str, value: str) -> str:
    """A General value as the LDAP attribute accepts it ("" when it cannot hold it)."""
    if name == "phone":
        return _NOT_PRINTABLE.sub("", value).strip()
    if name == "country":
        return value.upper() if _COUNTRY_CODE.match(value) else ""
    return value.strip()


def contact_entry(
    values: dict[str, str], target: str, key: str, origin: str, hidden_at=None
) -> dict[str, str]:
    """The attributes of the LDAP entry of an imported contact (without objectClass); a hidden
    one says so in its description."""
    entry = {}
    for name, attribute in ATTRIBUTES.items():
        value = ldap_value(name, values.get(name, ""))
        if value:
            entry[attribute] = value
    name = entry.get("displayName") or values.get("alias") or key
    entry["cn"] = name
    entry.setdefault("sn", name)
    entry[TARGET_ATTRIBUTE] = target or values.get("primary_smtp", "")
    entry[MARKER_ATTRIBUTE] = CONTACT_MARKER
    entry[KEY_ATTRIBUTE] = key
    entry["description"] = f"Imported by InterOrg Sync from {origin}"
    if hidden_at is not None:
        entry["description"] += (
            f"; deleted there, hidden since {hidden_at:%Y-%m-%d %H:%M} UTC, removed for good "
            "after the grace period unless it comes back"
        )
    return entry
