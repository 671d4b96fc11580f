"""Where an organization's directory lives: the built-in tables, or an LDAP server mirrored in
them (directory.ldap). The sync engine calls these hooks and nothing else of LDAP."""

import logging

from django.db import transaction

from directory.models import LdapDirectory, Organization

log = logging.getLogger(__name__)


class DirectoryUnavailable(Exception):
    """The organization's directory cannot be used right now; nothing was changed, and the next
    run picks up where this one stopped."""


def ldap_missing() -> str:
    """Why LDAP directories cannot be used here ("" when they can)."""
    try:
        import ldap  # noqa: F401
        import ldapdb  # noqa: F401
    except ImportError as exc:
        return (
            f"LDAP directories need python-ldap and django-ldapdb, which are not installed on "
            f"this server ({exc}): install them with pip install 'interorg-sync[ldap]', then "
            "restart the console and the workers."
        )
    return ""


def modules(organization: Organization | None = None):
    """The scan and publish modules of the organization's kind of directory: Active
    Directory's (read by its own USNs, written as AD contacts) or plain LDAP's."""
    if ldap_missing():
        raise DirectoryUnavailable(ldap_missing())
    if organization is not None and organization.uses_ad:
        from directory.ad import publish, scan
    else:
        from directory.ldap import publish, scan

    return scan, publish


def refresh(organization: Organization) -> None:
    """Before an export: write what is pending to LDAP, then read LDAP's changes into the
    mirror. Nothing to do for the built-in directory. Raises DirectoryUnavailable."""
    if not organization.uses_ldap:
        return
    _server_of(organization)
    modules(organization)[1].publish(organization.pk)
    _scan(organization)


def read(organization: Organization) -> None:
    """Only read LDAP's changes into the mirror, writing nothing to LDAP (a preview of the next
    cycle does this inside a transaction it rolls back). Nothing to do for the built-in
    directory. Raises DirectoryUnavailable."""
    if not organization.uses_ldap:
        return
    _server_of(organization)
    _scan(organization)


def _scan(organization: Organization) -> None:
    result = modules(organization)[0].scan(organization.pk)
    if result.problems:
        log.warning(
            "%s: the LDAP scan left out %d entries, first: %s",
            organization,
            len(result.problems),
            result.problems[0],
        )


def _server_of(organization: Organization) -> None:
    if not LdapDirectory.objects.filter(organization=organization).exists():
        raise DirectoryUnavailable(
            f"{organization} keeps its directory in LDAP, but no LDAP server is set: enter it "
            "on the organization's Directory page."
        )


def contacts_changed(organization: Organization) -> None:
    """After contacts were imported into the mirror: write them to LDAP once committed. If LDAP
    is down, they stay pending and the next cycle writes them."""
    if organization.uses_ldap:
        transaction.on_commit(lambda: publish_quietly(organization.pk))


def publish_quietly(organization_id: int) -> None:
    try:
        organization = Organization.objects.get(pk=organization_id)
        modules(organization)[1].publish(organization_id)
    except DirectoryUnavailable as exc:
        log.warning("contacts not written to LDAP yet: %s", exc)
