"""The directory browser: containers, their recipients, and imported contacts with their origin.
Administrators add, change and delete the organization's own recipients here; imported
contacts belong to the requestor's import and are read-only. An organization whose directory is
an LDAP server is browsed live from the server (views/ldap_directory.py); its entries are
changed with the LDAP tools, not here."""

import uuid

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from console import permissions
from console.filters import RecipientFilter
from console.forms import ConfirmForm, ContainerForm, RecipientForm, TrustLevelForm
from console.permissions import Access
from console.views import ldap_directory
from console.views.base import org_page, page, paginate
from directory import changes, setup
from directory.models import Container, Organization, Recipient
from requestor.models import RequestorConfig

RECIPIENT_LIST_FIELDS = (
    "pk",
    "kind",
    "display_name",
    "alias",
    "primary_smtp",
    "trust_level",
    "hidden_from_others",
    "hidden_at",
    "origin_organization",
    "global_key",
    "master_usn",
    "usn",
    "container_id",
)


def export_trust_level(organization) -> int | None:
    """The trust level above which own recipients are not exported (the Export Config's), or
    None when the organization has no requestor: the browser marks the recipients above it."""
    return (
        RequestorConfig.objects.filter(organization=organization)
        .values_list("trust_level", flat=True)
        .first()
    )


@org_page()
def containers(request, organization):
    if organization.uses_ldap:
        return ldap_directory.units(request, organization)
    rows = (
        Container.objects.filter(organization=organization)
        .select_related("site")
        .annotate(
            own=Count("recipients", filter=Q(recipients__global_key__isnull=True)),
            imported=Count(
                "recipients",
                filter=Q(recipients__global_key__isnull=False, recipients__hidden_at=None),
            ),
        )
        .order_by("dn")
    )
    tree = [(container, container.dn.count("/cn=") - 1) for container in rows]
    filters = RecipientFilter(request.GET, organization=organization)
    found = None
    if request.GET.keys() - {"page"}:
        # A search across the organization's containers lists what it finds instead of the tree.
        found = filters.apply(
            Recipient.objects.filter(organization=organization)
            .select_related("container")
            .only(*RECIPIENT_LIST_FIELDS, "container__name")
        ).order_by("display_name", "pk")
        found = paginate(request, found)
    return page(
        request,
        "console/containers.html",
        organization,
        "directory",
        tree=tree,
        filters=filters,
        found=found,
    )


@org_page()
def container_detail(request, organization, pk: int):
    container = get_object_or_404(Container, pk=pk, organization=organization)
    if organization.uses_ldap and container.ldap_uuid is not None:
        return ldap_directory.unit(request, organization, container)
    filters = RecipientFilter(request.GET, organization=organization)
    # The container is this page's own: the form's container choice is not offered here.
    del filters.fields["container"]
    query = request.GET.get("q", "").strip()
    recipients = filters.apply(
        Recipient.objects.filter(container=container).only(*RECIPIENT_LIST_FIELDS)
    ).order_by("display_name", "pk")
    return page(
        request,
        "console/container.html",
        organization,
        "directory",
        container=container,
        recipients=paginate(request, recipients),
        query=query,
        filters=filters,
        export_trust=export_trust_level(organization),
    )


@org_page(Access.ADMINISTRATOR)
def container_edit(request, organization, pk: int | None = None):
    """A new container, or one renamed or moved (with everything inside it)."""
    _refuse_ldap_containers(organization)
    if pk:
        container = get_object_or_404(Container, pk=pk, organization=organization)
    else:
        container = Container(site=organization.sites.order_by("name").first())
    form = ContainerForm(request.POST or None, instance=container, organization=organization)
    if request.method == "POST" and form.is_valid():
        container = form.save()
        messages.success(
            request,
            f"{container.dn} saved. The next export sends whatever this takes into or out of "
            "the export scope.",
        )
        return redirect("console:container", org=organization.name, pk=container.pk)
    return page(
        request,
        "console/container_form.html",
        organization,
        "directory",
        form=form,
        container=container,
        cancel=reverse(
            "console:container" if container.pk else "console:containers",
            kwargs={"org": organization.name, **({"pk": container.pk} if container.pk else {})},
        ),
    )


@org_page(Access.ADMINISTRATOR)
def container_delete(request, organization, pk: int):
    _refuse_ldap_containers(organization)
    container = get_object_or_404(Container, pk=pk, organization=organization)
    back = reverse("console:container", kwargs={"org": organization.name, "pk": pk})
    if problem := setup.container_in_use(container):
        messages.error(request, f"Not deleted, it is not empty: {problem}")
        return redirect(back)
    if request.method == "POST" and ConfirmForm(request.POST).is_valid():
        try:
            setup.delete_container(container)
        except setup.InUse as exc:
            messages.error(request, exc.messages[0])
            return redirect(back)
        messages.success(request, f"{container.dn} deleted.")
        return redirect("console:containers", org=organization.name)
    return page(
        request,
        "console/confirm.html",
        organization,
        "directory",
        title=f"Delete {container.name}",
        explanation=f"The empty container {container.dn} is deleted; if it was exported, it is "
        "no longer.",
        form=ConfirmForm(),
        cancel=back,
        danger=True,
    )


def _refuse_ldap_containers(organization) -> None:
    if organization.uses_ldap:
        raise PermissionDenied(
            f"The containers of {organization.name} are the organizational units of its LDAP "
            "server: add, rename and move them there. The next cycle reads the change."
        )


def _recipient(organization, pk: int) -> Recipient:
    return get_object_or_404(
        Recipient.objects.select_related("container"), pk=pk, organization=organization
    )


@org_page()
def recipient_detail(request, organization, pk: int):
    recipient = _recipient(organization, pk)
    if organization.uses_ldap and recipient.container.ldap_uuid is not None:
        return ldap_directory.entry(request, organization, recipient)
    members = recipient.members.only("pk", "display_name", "primary_smtp")
    return page(
        request,
        "console/recipient.html",
        organization,
        "directory",
        recipient=recipient,
        members=members,
        export_trust=export_trust_level(organization),
        **origin_of(request.user, recipient),
    )


def origin_of(user, recipient: Recipient) -> dict:
    """For an imported contact: its origin organization and the recipient its entry comes
    from, when that organization is in this installation and the user may see it."""
    if not recipient.is_imported:
        return {}
    origin = Organization.objects.filter(name=recipient.origin_organization).first()
    if origin is None or not permissions.can_view(user, origin):
        return {"origin": None, "origin_recipient": None}
    _, _, guid = (recipient.global_key or "").partition(":")
    try:
        source = Recipient.objects.filter(organization=origin, guid=uuid.UUID(guid)).first()
    except ValueError:
        source = None
    return {"origin": origin, "origin_recipient": source}


def _refuse_imported(recipient: Recipient) -> None:
    if recipient.is_imported:
        raise PermissionDenied(
            "Imported contacts are kept by the requestor's import; change them in their "
            f"origin organization ({recipient.origin_organization})."
        )


def _refuse_ldap(organization) -> None:
    if organization.uses_ldap:
        raise PermissionDenied(
            f"The recipients of {organization.name} live in its LDAP server: add, change and "
            "delete them with your LDAP tools. The next cycle reads the change from LDAP."
        )


@org_page(Access.ADMINISTRATOR)
def recipient_edit(request, organization, pk: int | None = None, container: int | None = None):
    _refuse_ldap(organization)
    recipient = _recipient(organization, pk) if pk else Recipient()
    if pk:
        _refuse_imported(recipient)
    elif container:
        recipient.container = get_object_or_404(Container, pk=container, organization=organization)
    form = RecipientForm(request.POST or None, instance=recipient, organization=organization)
    if request.method == "POST" and form.is_valid():
        recipient = form.save()
        messages.success(request, f"{recipient.display_name} saved.")
        return redirect("console:recipient", org=organization.name, pk=recipient.pk)
    return page(
        request,
        "console/recipient_form.html",
        organization,
        "directory",
        form=form,
        recipient=recipient,
    )


@org_page(Access.ADMINISTRATOR)
def recipient_delete(request, organization, pk: int):
    _refuse_ldap(organization)
    recipient = _recipient(organization, pk)
    _refuse_imported(recipient)
    if request.method == "POST" and ConfirmForm(request.POST).is_valid():
        container = recipient.container
        changes.delete_recipients([recipient])
        messages.success(request, f"{recipient.display_name} deleted.")
        return redirect("console:container", org=organization.name, pk=container.pk)
    return page(
        request,
        "console/confirm.html",
        organization,
        "directory",
        title=f"Delete {recipient.display_name}",
        explanation="The recipient is deleted here, and the deletion is exported to the "
        "other organizations at the next cycle.",
        form=ConfirmForm(),
        cancel=recipient_url(organization, recipient),
        danger=True,
    )


@org_page(Access.ADMINISTRATOR)
def trust_level(request, organization, pk: int):
    """Set one recipient's trust level and hidden flag (the only things kept beside an LDAP
    entry, in the mirror); back to the page the form was on."""
    recipient = _recipient(organization, pk)
    _refuse_imported(recipient)
    if request.method != "POST":
        return redirect(recipient_url(organization, recipient))
    form = TrustLevelForm(request.POST, instance=recipient)
    if form.is_valid():
        form.save()
        hidden = " (hidden from other organizations)" if recipient.hidden_from_others else ""
        messages.success(
            request,
            f"Trust level of {recipient.display_name} set to {recipient.trust_level}{hidden}; "
            "the next export takes it into account.",
        )
    else:
        errors = "; ".join(form.errors.get("trust_level", ["Give a number."]))
        messages.error(request, f"Trust level of {recipient.display_name} not changed: {errors}")
    return redirect(_back(request, recipient_url(organization, recipient)))


def _back(request, default: str) -> str:
    """The `next` URL of a form if it is a page of this site, else `default`."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


def recipient_url(organization, recipient) -> str:
    return reverse("console:recipient", kwargs={"org": organization.name, "pk": recipient.pk})
