"""The Server Type and Directory Service pages: which services an organization runs, and
where its recipients live."""

import copy

from django.contrib import messages
from django.shortcuts import redirect

from console import directory_settings
from console.forms import DirectoryForm, ServerTypeForm
from console.views.base import lock_for_readers, org_page, page, require_administrator
from directory.models import LdapDirectory


@org_page()
def server_type(request, organization):
    require_administrator(request, organization)
    form = ServerTypeForm(request.POST or None, instance=organization)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Server type saved.")
        return redirect("console:server-type", org=organization.name)
    lock_for_readers(request, organization, form)
    return page(request, "console/server_type.html", organization, "server-type", form=form)


@org_page()
def directory_service(request, organization):
    """Built-in or LDAP, the LDAP connection settings with a Test connection button (which
    tests the values of the form without saving them), and the LDAP directory's state."""
    require_administrator(request, organization)
    stored = LdapDirectory.objects.filter(organization=organization).first()
    testing = "test" in request.POST
    # A copy: a test must not show its values as the stored ones in the state below.
    form = DirectoryForm(
        request.POST or None,
        organization=organization,
        instance=copy.copy(stored),
        testing=testing,
    )
    result = None
    if request.method == "POST" and form.is_valid():
        if testing:
            result = directory_settings.try_connection(
                form.instance, form.cleaned_data["directory_backend"]
            )
        else:
            form.save()
            messages.success(request, f"Directory of {organization.name} saved.")
            return redirect("console:directory-service", org=organization.name)
    lock_for_readers(request, organization, form)
    return page(
        request,
        "console/directory_service.html",
        organization,
        "directory-service",
        form=form,
        ldap=stored,
        result=result,
        typed_password=testing and bool(request.POST.get("password")),
        ldap_missing=directory_settings.ldap_missing(),
    )
