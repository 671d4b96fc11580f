"""Names shared by the directory and its readers: kinds, roles, the General attributes."""

from django.db import models


class Kind(models.TextChoices):
    MAILBOX = "mailbox", "Mailbox"
    DISTRIBUTION_LIST = "distribution_list", "Distribution list"
    CUSTOM_RECIPIENT = "custom_recipient", "Custom recipient"


class Backend(models.TextChoices):
    BUILTIN = "builtin", "Built-in directory"
    LDAP = "ldap", "LDAP server"
    ACTIVE_DIRECTORY = "ad", "Active Directory"


class DisabledAccounts(models.TextChoices):
    """Active Directory: what a scan does with a user whose account is disabled."""

    LEAVE_OUT = "leave_out", "Leave them out"
    INCLUDE = "include", "Read them like the others"


class DeletesRead(models.TextChoices):
    """Active Directory: how a scan finds the objects deleted since the last one."""

    UNKNOWN = "", "Not checked yet"
    TOMBSTONES = "tombstones", "From the deleted objects (by USN)"
    LISTING = "listing", "By listing every recipient (the bind account cannot see deleted objects)"


class HiddenEntries(models.TextChoices):
    """Active Directory: what a scan does with a recipient hidden from the address lists."""

    HIDDEN_FROM_OTHERS = "hidden_from_others", "Read them, hidden from other organizations"
    LEAVE_OUT = "leave_out", "Leave them out"
    INCLUDE = "include", "Read them like the others"


class Role(models.TextChoices):
    MASTER = "master", "Master"
    REQUESTOR = "requestor", "Requestor"
    BOTH = "both", "Master and requestor"


# The "General" property page: the only attributes that ever leave an organization, with the
# longest value each may hold (the Exchange 5.5 directory's limits, rounded up).
GENERAL_ATTRIBUTES: dict[str, int] = {
    "display_name": 256,
    "alias": 64,
    "first_name": 64,
    "initials": 6,
    "last_name": 64,
    "title": 64,
    "company": 64,
    "department": 64,
    "office": 128,
    "assistant": 256,
    "phone": 64,
    "address": 1024,
    "city": 128,
    "state": 128,
    "postal_code": 40,
    "country": 64,
    "primary_smtp": 256,
}

CUSTOM_ATTRIBUTE_COUNT = 15
CUSTOM_ATTRIBUTE_MAX_LENGTH = 1024
TRUST_LEVEL_MAX = 100
