from django.apps import AppConfig


class LdapEntriesConfig(AppConfig):
    """The django-ldapdb models of LDAP entries. Installed only with the `ldap` extra; it has no
    migrations, since its models live in LDAP servers."""

    name = "directory.ldap"
    label = "ldap_entries"
    verbose_name = "LDAP entries"
