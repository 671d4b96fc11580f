"""Connections to an organization's LDAP server, and errors an administrator can act on."""

from contextlib import contextmanager, suppress

import ldap
from django.utils import timezone

from directory.backends import DirectoryUnavailable
from directory.models import LdapDirectory


def describe(exc: ldap.LDAPError) -> str:
    """python-ldap's error as one readable line ("Can't contact LDAP server (...)")."""
    details = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    text = details.get("desc") or exc.__class__.__name__
    if details.get("info"):
        text += f" ({details['info']})"
    return text


def unavailable(directory: LdapDirectory, exc: ldap.LDAPError) -> DirectoryUnavailable:
    if isinstance(exc, ldap.SERVER_DOWN | ldap.TIMEOUT | ldap.CONNECT_ERROR):
        what = "cannot be reached"
    elif isinstance(exc, ldap.INVALID_CREDENTIALS):
        what = "refused the bind DN and password"
    elif isinstance(exc, ldap.NO_SUCH_OBJECT):
        what = f"has no entry {directory.base_dn!r} (the base DN)"
    else:
        what = "failed"
    return DirectoryUnavailable(f"LDAP server {directory.uri} {what}: {describe(exc)}")


def open_connection(directory: LdapDirectory) -> ldap.ldapobject.LDAPObject:
    conn = ldap.initialize(directory.uri, bytes_mode=False)
    conn.protocol_version = ldap.VERSION3
    conn.set_option(ldap.OPT_REFERRALS, 0)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, directory.timeout)
    conn.set_option(ldap.OPT_TIMEOUT, directory.timeout)
    conn.timeout = directory.timeout
    if directory.ca_file:
        conn.set_option(ldap.OPT_X_TLS_CACERTFILE, directory.ca_file)
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
    if directory.start_tls:
        conn.start_tls_s()
    conn.simple_bind_s(directory.bind_dn, directory.password)
    return conn


@contextmanager
def connected(directory: LdapDirectory):
    """A bound connection; any LDAP failure inside becomes DirectoryUnavailable."""
    conn = None
    try:
        conn = open_connection(directory)
        yield conn
    except ldap.LDAPError as exc:
        raise unavailable(directory, exc) from exc
    finally:
        if conn is not None:
            with suppress(ldap.LDAPError):
                conn.unbind_s()


@contextmanager
def recording_failure(organization_id: int):
    """A DirectoryUnavailable raised inside is also recorded on the organization's directory
    (outside the failed transaction), for the console and the dashboard."""
    try:
        yield
    except DirectoryUnavailable as exc:
        LdapDirectory.objects.filter(organization_id=organization_id).update(
            last_error=str(exc), last_error_at=timezone.now()
        )
        raise


def check(directory: LdapDirectory) -> int:
    """Bind and read the base DN; the number of recipients under it (for the console's test).
    The search is paged, like a scan's, so a server's size limit does not fail it."""
    from directory.ldap import schema

    with connected(directory) as conn:
        conn.search_s(directory.base_dn, ldap.SCOPE_BASE, attrlist=["1.1"])
        return sum(1 for _ in search(conn, directory.base_dn, schema.RECIPIENT_FILTER, ["1.1"]))


def search(
    conn,
    base: str,
    filterstr: str,
    attrs: list[str],
    scope=ldap.SCOPE_SUBTREE,
    *,
    binary: tuple[str, ...] = (),
    controls: tuple = (),
):
    """Every (dn, attributes) found, in pages of 1,000: attribute values decoded as text, but
    those named in `binary` (lower case) kept as bytes; `controls` are sent with each page."""
    control = ldap.controls.SimplePagedResultsControl(True, size=1000, cookie="")
    while True:
        msgid = conn.search_ext(base, scope, filterstr, attrs, serverctrls=[control, *controls])
        _type, data, _msgid, answered = conn.result3(msgid)
        for dn, entry in data:
            if dn is None:  # a referral
                continue
            yield (
                dn,
                {
                    name: values
                    if name.lower() in binary
                    else [value.decode("utf-8", "replace") for value in values]
                    for name, values in entry.items()
                },
            )
        cookie = next((c.cookie for c in answered if c.controlType == control.controlType), b"")
        if not cookie:
            return
        control.cookie = cookie
