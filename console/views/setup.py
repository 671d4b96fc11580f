"""Setting up without the demo: sites added, renamed and deleted; a new organization added by
an administrator of the installation, and the pairing information its administrator hands to
the other installation. Every change goes through directory.setup, as the API's and the
admin's do."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from console import permissions
from console.forms import ConfirmForm
from console.permissions import Access
from console.setup_forms import OrganizationSetupForm, SiteForm
from console.views.base import org_page, page
from directory import setup
from directory.models import Site


def _refuse_ldap(organization) -> None:
    if organization.uses_ldap:
        raise PermissionDenied(
            f"The sites and containers of {organization.name} are the organizational units of "
            "its LDAP server: add, rename and delete them there."
        )


@org_page(Access.ADMINISTRATOR)
def site_edit(request, organization, pk: int | None = None):
    """A new site, or one renamed (its containers' DNs follow)."""
    _refuse_ldap(organization)
    site = get_object_or_404(Site, pk=pk, organization=organization) if pk else Site()
    form = SiteForm(request.POST or None, instance=site, organization=organization)
    if request.method == "POST" and form.is_valid():
        site = form.save()
        messages.success(request, f"{site.dn} saved.")
        return redirect("console:containers", org=organization.name)
    return page(
        request,
        "console/site_form.html",
        organization,
        "directory",
        form=form,
        site=site,
        cancel=reverse("console:containers", kwargs={"org": organization.name}),
    )


@org_page(Access.ADMINISTRATOR)
def site_delete(request, organization, pk: int):
    _refuse_ldap(organization)
    site = get_object_or_404(Site, pk=pk, organization=organization)
    back = reverse("console:containers", kwargs={"org": organization.name})
    if problem := setup.site_in_use(site):
        messages.error(request, problem)
        return redirect(back)
    if request.method == "POST" and ConfirmForm(request.POST).is_valid():
        setup.delete_site(site)
        messages.success(request, f"{site.dn} deleted.")
        return redirect(back)
    return page(
        request,
        "console/confirm.html",
        organization,
        "directory",
        title=f"Delete {site.name}",
        explanation=f"The empty site {site.dn} is deleted.",
        form=ConfirmForm(),
        cancel=back,
        danger=True,
    )


def organization_add(request):
    """A new organization: only an administrator of the whole installation (superusers, the
    InterOrg administrators group) may add one; no organization role exists for it yet."""
    if not permissions.is_installation_administrator(request.user):
        raise PermissionDenied(
            "Only administrators of the whole installation (superusers and the InterOrg "
            "administrators group) add organizations."
        )
    form = OrganizationSetupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        made = form.create()
        if made is not None:
            messages.success(request, f"{made.organization.name} added.")
            return redirect("console:pairing", org=made.organization.name)
    return render(
        request,
        "console/organization_form.html",
        {"form": form, "cancel": reverse("console:dashboard")},
    )


@org_page()
def pairing_page(request, organization):
    """What the administrator of the other installation needs: agent addresses and the
    fingerprint of the organization's signing key (as `manage.py keys show ORG` prints)."""
    return page(
        request,
        "console/pairing.html",
        organization,
        "overview",
        pairing=setup.pairing(organization),
    )
