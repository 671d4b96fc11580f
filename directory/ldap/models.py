"""django-ldapdb models of the entries of an LDAP directory, for reading them in the console.

The fields follow schema.ATTRIBUTES. The models have no server of their own: `bound()` gives a
copy tied to one organization's LdapDirectory (its connection and base DN). The sync path reads
and writes with python-ldap directly (scan.py, publish.py): it works in bulk, pipelines its
writes and escapes DN values, which ldapdb's DN building does not.
"""

import threading

import ldap
from django.db import connections
from django.db.utils import load_backend
from ldapdb.models import Model
from ldapdb.models.fields import CharField, ListField

from directory.constants import Kind
from directory.ldap import schema
from directory.models import LdapDirectory


def _general(name: str, **kwargs) -> CharField:
    return CharField(db_column=schema.ATTRIBUTES[name], blank=True, **kwargs)


class Entry(Model):
    entry_uuid = CharField("entryUUID", db_column="entryUUID", editable=False, blank=True)
    modified = CharField("modifyTimestamp", db_column="modifyTimestamp", editable=False, blank=True)
    object_class = ListField(db_column="objectClass", editable=False)
    description = CharField(db_column="description", blank=True)

    class Meta:
        abstract = True

    @property
    def is_ours(self) -> bool:
        return False


class Unit(Entry):
    """An organizationalUnit: a container."""

    object_classes = ["organizationalUnit"]
    name = CharField(db_column="ou", primary_key=True)

    class Meta:
        managed = False

    def __str__(self) -> str:
        return self.name


class Person(Entry):
    """An inetOrgPerson: a mailbox, or a custom recipient when it has a mailRoutingAddress."""

    object_classes = ["inetOrgPerson"]
    alias = _general("alias", primary_key=True)
    cn = CharField(db_column="cn")
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
    target_address = CharField(db_column=schema.TARGET_ATTRIBUTE, blank=True)
    marker = ListField(db_column=schema.MARKER_ATTRIBUTE, editable=False)
    global_key = CharField(db_column=schema.KEY_ATTRIBUTE, editable=False, blank=True)

    class Meta:
        managed = False
        ordering = ["cn"]

    def __str__(self) -> str:
        return self.display_name or self.cn

    @property
    def kind(self) -> str:
        classes = {value.lower() for value in self.object_class}
        attrs = {schema.TARGET_ATTRIBUTE: [self.target_address] if self.target_address else []}
        return schema.kind_of(classes, attrs)

    @property
    def is_ours(self) -> bool:
        """A contact this installation imported (and will overwrite or delete)."""
        return schema.CONTACT_MARKER in self.marker


class Group(Entry):
    """A groupOfNames: a distribution list when it has a mail address."""

    object_classes = ["groupOfNames"]
    name = CharField(db_column="cn", primary_key=True)
    primary_smtp = _general("primary_smtp")
    members = ListField(db_column="member")

    class Meta:
        managed = False
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def kind(self) -> str:
        return Kind.DISTRIBUTION_LIST


_bound: dict[tuple, type] = {}
_bound_lock = threading.Lock()


def _options(directory: LdapDirectory) -> dict:
    """python-ldap options of the browsing connection, as connection.open_connection sets them
    for the sync: a server that does not answer fails after the timeout, not after TCP's own,
    and TLS trusts the directory's CA file. (Insertion order matters: a new TLS context must be
    made after the CA file is set.)"""
    options = {"query_timeout": directory.timeout, ldap.OPT_NETWORK_TIMEOUT: directory.timeout}
    if directory.ca_file:
        options[ldap.OPT_X_TLS_CACERTFILE] = directory.ca_file
        options[ldap.OPT_X_TLS_NEWCTX] = 0
    return options


def database_alias(directory: LdapDirectory) -> str:
    """A connection to this directory's server under a database alias of its own.

    The connection is made on demand, per thread, and not listed in settings.DATABASES (the
    servers are data, edited in the console); a changed setting gives a new connection.
    """
    alias = f"ldap_{directory.organization_id}"
    wanted = connections.configure_settings(
        {
            "default": {},
            alias: {
                "ENGINE": "ldapdb.backends.ldap",
                "NAME": directory.uri,
                "USER": directory.bind_dn,
                "PASSWORD": directory.password,
                "TLS": directory.start_tls,
                "CONNECTION_OPTIONS": _options(directory),
            },
        }
    )[alias]
    current = getattr(connections._connections, alias, None)
    if current is None or current.settings_dict != wanted:
        if current is not None:
            current.close()
        connections[alias] = load_backend(wanted["ENGINE"]).DatabaseWrapper(wanted, alias)
    return alias


def bound(
    model: type[Entry],
    directory: LdapDirectory,
    base: str | None = None,
    scope: int = ldap.SCOPE_SUBTREE,
) -> type[Entry]:
    """`model` reading from `directory`: its server (see router.py) and under its base DN, or
    under `base` (an entry of that server, such as one unit) with `scope` (SCOPE_ONELEVEL for
    the entries directly below it).

    ldapdb takes the search base and scope from the model class, so each combination is a class
    of its own; they are cached (one per unit browsed, a handful per directory), since Django
    registers every model class for good.
    """
    alias = database_alias(directory)
    base = base or directory.base_dn
    key = (model, alias, base, scope)
    with _bound_lock:
        if key not in _bound:
            meta = type("Meta", (), {"proxy": True, "managed": False})
            name = f"{model.__name__}{len(_bound) + 1}"
            _bound[key] = type(
                name,
                (model,),
                {
                    "base_dn": base,
                    "search_scope": scope,
                    "database": alias,
                    "__module__": model.__module__,
                    "Meta": meta,
                },
            )
        return _bound[key]
