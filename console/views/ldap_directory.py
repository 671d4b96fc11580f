"""The directory browser of an organization whose directory is an LDAP server: its units, the
people and groups of each read live from the server, and one entry beside its mirror recipient.

Nothing is changed in LDAP here (administrators use their LDAP tools); only the trust level,
which LDAP has no attribute for, is set in the mirror. When the server cannot be reached, the
pages say so and show what the mirror holds.
"""

from console import ldap_browser
from console.forms import TrustLevelForm
from console.views.base import page, paginate
from directory.backends import DirectoryUnavailable

PER_PAGE = 50


def units(request, organization):
    rows, problem, directory = [], "", None
    try:
        directory = ldap_browser.directory_of(organization)
        rows = ldap_browser.units(directory)
    except DirectoryUnavailable as exc:
        problem = str(exc)
    return page(
        request,
        "console/ldap_units.html",
        organization,
        "directory",
        rows=rows,
        problem=problem,
        ldap=directory,
    )


def unit(request, organization, container):
    query = request.GET.get("q", "").strip().replace("\x00", "")
    entries, dn, problem, directory = None, container.ldap_dn, "", None
    try:
        directory = ldap_browser.directory_of(organization)
        dn = ldap_browser.unit_dn(directory, container)
        if dn is not None:
            with ldap_browser.reading(directory):
                entries = paginate(
                    request, ldap_browser.unit_entries(directory, dn, query), PER_PAGE
                )
                entries.object_list = ldap_browser.with_mirror(organization, entries.object_list)
    except DirectoryUnavailable as exc:
        problem = str(exc)
    return page(
        request,
        "console/ldap_unit.html",
        organization,
        "directory",
        container=container,
        dn=dn or container.ldap_dn,
        gone=dn is None and not problem,
        entries=entries,
        query=query,
        problem=problem,
        ldap=directory,
    )


def entry(request, organization, recipient):
    found, problem = None, ""
    try:
        found = ldap_browser.entry_of(ldap_browser.directory_of(organization), recipient)
    except DirectoryUnavailable as exc:
        problem = str(exc)
    return page(
        request,
        "console/ldap_recipient.html",
        organization,
        "directory",
        recipient=recipient,
        entry=found,
        attributes=ldap_browser.attributes(found) if found else [],
        problem=problem,
        trust_form=None if recipient.is_imported else TrustLevelForm(instance=recipient),
    )
