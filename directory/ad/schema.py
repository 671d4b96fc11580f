"""The one mapping between the General attributes and Active Directory's attributes.

A `user` with a `mail` value is a mailbox, a `group` with one a distribution list, and a
`contact` with one a custom recipient: mail to it goes to its `targetAddress` where the schema
has Exchange's attribute, else to its `mail`. The primary SMTP address is the `SMTP:` value of
`proxyAddresses` (the one Exchange sends from) when there is one, else `mail`; the secondary
`smtp:` values stay in AD (the General page has one address). Computers are users to LDAP, and
never recipients.

Contacts written by InterOrg Sync carry `adminDescription` = CONTACT_MARKER and the global key in
`adminDisplayName`: the scan never takes them for the organization's recipients, and the writer
never touches an object without the marker.
"""

from directory.constants import GENERAL_ATTRIBUTES, Kind

# General attribute -> AD attribute. `assistant` is a DN in AD (the assistant's own object):
# not read, not written. `country` is `co`, the country's name (free text, like the General
# page's); `c`, the two-letter code, is read when `co` is empty.
ATTRIBUTES: dict[str, str] = {
    "display_name": "displayName",
    "alias": "mailNickname",
    "first_name": "givenName",
    "initials": "initials",
    "last_name": "sn",
    "title": "title",
    "company": "company",
    "department": "department",
    "office": "physicalDeliveryOfficeName",
    "phone": "telephoneNumber",
    "address": "streetAddress",
    "city": "l",
    "state": "st",
    "postal_code": "postalCode",
    "country": "co",
    "primary_smtp": "mail",
}
assert set(ATTRIBUTES) <= set(GENERAL_ATTRIBUTES)

# The contract with the writer of contacts (directory.ad.publish).
MARKER_ATTRIBUTE = "adminDescription"
KEY_ATTRIBUTE = "adminDisplayName"
CONTACT_MARKER = "InterOrg Sync contact"
CONTACT_CLASSES = ["top", "person", "organizationalPerson", "contact"]
CONTACT_FILTER = f"(&(objectClass=contact)({MARKER_ATTRIBUTE}={CONTACT_MARKER}))"
# Contacts hidden for their grace period wait in this OU, directly under the base DN; the scan
# does not take it for a container of the organization.
HIDDEN_UNIT = "InterOrg Sync hidden contacts"

# Exchange's attributes, read only where the schema has them.
TARGET_ATTRIBUTE = "targetAddress"
HIDE_ATTRIBUTE = "msExchHideFromAddressLists"
EXCHANGE_ATTRIBUTES = [TARGET_ATTRIBUTE, HIDE_ATTRIBUTE]

PROXY_ATTRIBUTE = "proxyAddresses"
ADDRESS_BOOK_ATTRIBUTE = "showInAddressBook"
ACCOUNT_CONTROL_ATTRIBUTE = "userAccountControl"
ACCOUNT_DISABLE = 0x2  # userAccountControl's ACCOUNTDISABLE bit
# Binary attributes (kept as bytes by the search).
BINARY_ATTRIBUTES = ["objectGUID", "invocationId"]

# What a scan reads of a recipient (plus EXCHANGE_ATTRIBUTES the schema has).
READ_ATTRIBUTES = [
    "objectClass",
    "objectGUID",
    "uSNChanged",
    "cn",
    "sAMAccountName",
    "c",
    PROXY_ATTRIBUTE,
    ADDRESS_BOOK_ATTRIBUTE,
    ACCOUNT_CONTROL_ATTRIBUTE,
    MARKER_ATTRIBUTE,
    *ATTRIBUTES.values(),
]
# People, groups and contacts (computers are users too: left out by kind_of). Every one that
# changed is read, mail or not, marked or not: one that stopped being a recipient leaves the
# mirror.
CANDIDATE_FILTER = "(|(objectClass=user)(objectClass=group)(objectClass=contact))"
# Mail-enabled people, groups and contacts not written by us (a full comparison lists these).
RECIPIENT_FILTER = (
    f"(&{CANDIDATE_FILTER}(mail=*)(!(objectClass=computer))"
    f"(!({MARKER_ATTRIBUTE}={CONTACT_MARKER})))"
)
# The OUs that become containers by default (the domain controllers' OU is the system's), and
# the Users container.
UNIT_FILTER = (
    f"(&(objectClass=organizationalUnit)(!(isCriticalSystemObject=TRUE))(!(ou={HIDDEN_UNIT})))"
)
USERS_CONTAINER = "CN=Users"


def hidden_unit_dn(base_dn: str) -> str:
    return f"OU={HIDDEN_UNIT},{base_dn}"


def users_container_dn(base_dn: str) -> str:
    return f"{USERS_CONTAINER},{base_dn}"


def kind_of(object_classes: set[str]) -> str | None:
    """The kind of recipient an object of these (lower-case) classes is; None for none."""
    if "computer" in object_classes:
        return None
    if "group" in object_classes:
        return Kind.DISTRIBUTION_LIST
    if "contact" in object_classes:
        return Kind.CUSTOM_RECIPIENT
    if "user" in object_classes:
        return Kind.MAILBOX
    return None


def is_ours(attrs: dict[str, list[str]]) -> bool:
    """An object written by InterOrg Sync's import (never a recipient of the organization)."""
    return CONTACT_MARKER in attrs.get(MARKER_ATTRIBUTE, [])


def is_disabled(attrs: dict[str, list[str]]) -> bool:
    """A user whose account is disabled (userAccountControl's ACCOUNTDISABLE bit)."""
    try:
        return bool(int((attrs.get(ACCOUNT_CONTROL_ATTRIBUTE) or ["0"])[0]) & ACCOUNT_DISABLE)
    except ValueError:
        return False


def is_hidden(attrs: dict[str, list[str]], address_book_only: bool) -> bool:
    """Hidden from the address lists: msExchHideFromAddressLists TRUE (where the schema has it),
    or, when the domain's address books list every visible recipient (`address_book_only`),
    an empty showInAddressBook."""
    if (attrs.get(HIDE_ATTRIBUTE) or [""])[0].upper() == "TRUE":
        return True
    return address_book_only and not attrs.get(ADDRESS_BOOK_ATTRIBUTE)


def primary_address(attrs: dict[str, list[str]]) -> str:
    """The `SMTP:` proxy address (the primary one, upper-case prefix), else `mail`."""
    for value in attrs.get(PROXY_ATTRIBUTE, []):
        if value.startswith("SMTP:"):
            return value[5:]
    return (attrs.get("mail") or [""])[0]


def target_of(attrs: dict[str, list[str]]) -> str:
    """Where mail to a contact goes: its targetAddress (without `SMTP:`), else its mail."""
    target = (attrs.get(TARGET_ATTRIBUTE) or [""])[0]
    if target[:5].lower() == "smtp:":
        return target[5:]
    return target or (attrs.get("mail") or [""])[0]


def general_from_entry(attrs: dict[str, list[str]], kind: str) -> dict[str, str]:
    """The General attributes of an object (first value of each, as text)."""
    values = {name: (attrs.get(ATTRIBUTES[name]) or [""])[0] for name in ATTRIBUTES}
    values["assistant"] = ""
    values["primary_smtp"] = primary_address(attrs)
    values["country"] = values["country"] or (attrs.get("c") or [""])[0]
    cn = (attrs.get("cn") or [""])[0]
    values["display_name"] = values["display_name"] or cn
    # mailNickname (Exchange's alias), else the account name, else the group's or contact's
    # name, else the mailbox part of the address.
    values["alias"] = (
        values["alias"]
        or (attrs.get("sAMAccountName") or [""])[0]
        or (cn if kind != Kind.MAILBOX else "")
        or values["primary_smtp"].partition("@")[0]
    )
    return values


def ad_value(name: str, value: str) -> str:
    """A General value as the AD attribute holds it: every one of ATTRIBUTES is a Unicode
    string in AD's schema, so only the surrounding spaces go."""
    return value.strip()
