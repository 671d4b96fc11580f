"""Where an organization's directory lives (built-in, an LDAP server or Active Directory) and how
to reach the server: the rules shared by the console's Directory Service page and the API.

The connection settings are kept even while the organization uses the built-in directory, so
an administrator can enter and test them before switching.
"""

import copy
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction

from directory.backends import DirectoryUnavailable, ldap_missing
from directory.constants import Backend
from directory.models import LdapDirectory, Organization

# The kinds of directory kept in a server, mirrored in the built-in tables.
SERVER_BACKENDS = (Backend.LDAP, Backend.ACTIVE_DIRECTORY)

# A test from the console waits at most this long whatever the directory's own timeout (up to
# ten minutes for a slow server): a web request must not hang.
TEST_TIMEOUT = 15


def validate(directory: LdapDirectory, backend: str) -> None:
    """Raise ValidationError (by field) unless `directory` can be saved for `backend`: the
    model's own validation (the organizational units among it), and python-ldap installed when
    LDAP or Active Directory is chosen."""
    errors: dict[str, list[str]] = {}
    if backend in SERVER_BACKENDS and ldap_missing():
        errors["directory_backend"] = [ldap_missing()]
    try:
        directory.full_clean(exclude=["organization"])
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            errors.setdefault(field, []).extend(messages)
    if errors:
        raise ValidationError(errors)


def keeps_settings(directory: LdapDirectory, backend: str) -> bool:
    """Whether there are server settings to validate and keep: always for LDAP and Active
    Directory; for the built-in directory, only once some have been entered."""
    return backend in SERVER_BACKENDS or bool(
        directory.pk or directory.uri or directory.base_dn or directory.bind_dn
    )


def save(organization: Organization, backend: str, directory: LdapDirectory) -> None:
    """Store the choice of directory and the (validated) LDAP settings together."""
    with transaction.atomic():
        if keeps_settings(directory, backend):
            directory.organization = organization
            directory.save()
        if organization.directory_backend != backend:
            organization.directory_backend = backend
            organization.save(update_fields=["directory_backend"])


@dataclass
class ConnectionCheck:
    ok: bool
    detail: str
    recipients: int | None = None
    # Active Directory: the domain controller that answered, and the controls a scan uses.
    dc_host: str | None = None
    dc_service_name: str | None = None
    highest_usn: int | None = None
    show_deleted: bool | None = None
    dirsync: bool | None = None


def try_connection(directory: LdapDirectory, backend: str = Backend.LDAP) -> ConnectionCheck:
    """Bind and count the recipients under the base DN, as the next scan would (for Active
    Directory, with the domain controller's identity, USN and controls); the failure as the
    message a scan would record. Nothing is saved."""
    if ldap_missing():
        return ConnectionCheck(False, ldap_missing())
    from directory.ldap.connection import check

    trial = copy.copy(directory)
    trial.timeout = min(directory.timeout or TEST_TIMEOUT, TEST_TIMEOUT)
    try:
        if backend == Backend.ACTIVE_DIRECTORY:
            return _try_domain_controller(trial)
        count = check(trial)
    except DirectoryUnavailable as exc:
        return ConnectionCheck(False, str(exc))
    except (ValueError, OSError) as exc:  # python-ldap refusing an option (a CA file, say)
        return ConnectionCheck(False, f"LDAP server {directory.uri} could not be used: {exc}")
    who = directory.bind_dn or "anonymous"
    found = "1 recipient" if count == 1 else f"{count} recipients"
    return ConnectionCheck(
        True, f"Connected to {directory.uri} as {who}: {found} under {directory.base_dn}.", count
    )


def _try_domain_controller(directory: LdapDirectory) -> ConnectionCheck:
    from directory.ad.check import check

    dc = check(directory)
    found = "1 recipient" if dc.recipients == 1 else f"{dc.recipients} recipients"
    who = directory.bind_dn or "anonymous"
    return ConnectionCheck(
        True,
        f"Connected to domain controller {dc.host or directory.uri} as {who}: {found} under "
        f"{directory.base_dn}. Highest committed USN {dc.highest_usn}; {dc.controls()}. NTDS "
        f"Settings: {dc.service_name}.",
        dc.recipients,
        dc_host=dc.host,
        dc_service_name=dc.service_name,
        highest_usn=dc.highest_usn,
        show_deleted=dc.show_deleted,
        dirsync=dc.dirsync,
    )
