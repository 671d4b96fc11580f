"""django-ldapdb models of Active Directory's objects, for reading them in the console.

Users and contacts (AD's `person` category: computers, which are users too, are not in it),
groups, organizational units and the Users container. The fields follow schema.ATTRIBUTES; an
attribute the domain's schema lacks (Exchange's mailNickname, targetAddress) is read as empty.
Like directory.ldap.models, they have no server of their own: `bound()` ties one to an
organization's LdapDirectory. They are read only: the sync writes with python-ldap (publish.py).
"""

import uuid

from django.db.models import Manager, lookups
from ldapdb.models import Model
from ldapdb.models.fields import CharField, ListField

from directory.ad import schema
from directory.ldap.models import bound  # noqa: F401 (the browser binds these models with it)

# The fields the directory browser's search looks in (part of a value, any case).
PEOPLE_SEARCH = ("cn", "display_name", "account", "primary_smtp")
GROUP_SEARCH = ("name", "primary_smtp")


class GuidField(CharField):
    """objectGUID: 16 bytes in AD, shown and compared as the usual GUID text."""

    binary_field = True

    def from_ldap(self, value, connection) -> str:
        return str(uuid.UUID(bytes_le=value[0])) if value else ""


@GuidField.register_lookup
class GuidExact(lookups.Lookup):
    """objectGUID = a GUID, as the filter wants it: its bytes, each escaped."""

    lookup_name = "exact"

    def as_sql(self, compiler, connection):
        value = uuid.UUID(str(self.rhs)).bytes_le
        return self.lhs.target.column + "=" + "".join(f"\\{byte:02x}" for byte in value), []


def _general(name: str, **kwargs) -> CharField:
    return CharField(db_column=schema.ATTRIBUTES[name], blank=True, **kwargs)


class AdEntry(Model):
    entry_uuid = GuidField("objectGUID", db_column="objectGUID", editable=False, blank=True)
    usn_changed = CharField("uSNChanged", db_column="uSNChanged", editable=False, blank=True)
    modified = CharField("whenChanged", db_column="whenChanged", editable=False, blank=True)
    object_class = ListField(db_column="objectClass", editable=False)
    description = CharField(db_column="description", blank=True)

    class Meta:
        abstract = True
        app_label = "ldap_entries"

    @property
    def is_ours(self) -> bool:
        return False


class AdUnit(AdEntry):
    """An organizationalUnit: a container."""

    object_classes = ["organizationalUnit"]
    name = CharField(db_column="ou", primary_key=True)

    class Meta:
        managed = False
        app_label = "ldap_entries"

    def __str__(self) -> str:
        return self.name


class AdContainer(AdEntry):
    """A `container` object, such as CN=Users: a container of the organization when mapped."""

    object_classes = ["container"]
    name = CharField(db_column="cn", primary_key=True)

    class Meta:
        managed = False
        app_label = "ldap_entries"

    def __str__(self) -> str:
        return self.name


class PeopleManager(Manager):
    def get_queryset(self):
        # objectCategory=person: users and contacts, not computers.
        return super().get_queryset().filter(category="person")


class AdPerson(AdEntry):
    """A user (a mailbox) or a contact (a custom recipient, or one of our imported contacts)."""

    object_classes = ["person"]
    cn = CharField(db_column="cn", primary_key=True)
    category = CharField(db_column="objectCategory", editable=False, blank=True)
    account = CharField(db_column="sAMAccountName", editable=False, blank=True)
    alias = _general("alias")
    display_name = _general("display_name")
    first_name = _general("first_name")
    initials = _general("initials")
    last_name = _general("last_name")
    title = _general("title")
    company = _general("company")
    department = _general("department")
    office = _general("office")
    phone = _general("phone")
    address = _general("address")
    city = _general("city")
    state = _general("state")
    postal_code = _general("postal_code")
    country = _general("country")
    primary_smtp = _general("primary_smtp")
    proxy_addresses = ListField(db_column=schema.PROXY_ATTRIBUTE, editable=False)
    target_address = CharField(db_column=schema.TARGET_ATTRIBUTE, blank=True)
    legacy_dn = CharField(db_column="legacyExchangeDN", editable=False, blank=True)
    account_control = CharField(
        db_column=schema.ACCOUNT_CONTROL_ATTRIBUTE, editable=False, blank=True
    )
    marker = ListField(db_column=schema.MARKER_ATTRIBUTE, editable=False)
    global_key = CharField(db_column=schema.KEY_ATTRIBUTE, editable=False, blank=True)

    objects = PeopleManager()

    class Meta:
        managed = False
        app_label = "ldap_entries"
        ordering = ["cn"]

    def __str__(self) -> str:
        return self.display_name or self.cn

    @property
    def name(self) -> str:
        """What names the object for an administrator: its account, else its CN."""
        return self.account or self.cn

    @property
    def kind(self) -> str:
        return schema.kind_of({value.lower() for value in self.object_class}) or ""

    @property
    def is_ours(self) -> bool:
        """A contact this installation imported (and will overwrite or delete)."""
        return schema.CONTACT_MARKER in self.marker

    @property
    def is_disabled(self) -> bool:
        return schema.is_disabled({schema.ACCOUNT_CONTROL_ATTRIBUTE: [self.account_control]})


class AdGroup(AdEntry):
    """A group: a distribution list when it has a mail address."""

    object_classes = ["group"]
    name = CharField(db_column="cn", primary_key=True)
    account = CharField(db_column="sAMAccountName", editable=False, blank=True)
    primary_smtp = _general("primary_smtp")
    proxy_addresses = ListField(db_column=schema.PROXY_ATTRIBUTE, editable=False)
    members = ListField(db_column="member")

    class Meta:
        managed = False
        app_label = "ldap_entries"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def kind(self) -> str:
        return schema.kind_of({"group"}) or ""


# The names the directory browser looks for (those of directory.ldap.models); the classes have
# their own, since both modules' models are in one Django app.
Unit, Person, Group = AdUnit, AdPerson, AdGroup
