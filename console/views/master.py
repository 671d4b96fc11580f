"""The InterOrg Master Configuration page: the master agent, the attachment limit and the
requestor allowlist with addresses and keys; and this organization's own public key."""

from django.contrib import messages
from django.db import transaction
from django.shortcuts import redirect

from console.forms import AllowedRequestorFormSet, MasterConfigForm
from console.views.base import lock_for_readers, org_page, page, require_administrator
from master.models import MasterConfig
from transport.models import SigningKey


def own_key(organization) -> SigningKey | None:
    """The organization's active signing key, for its public half only (never the private)."""
    return (
        SigningKey.objects.filter(organization=organization, active=True)
        .only("public_key", "fingerprint", "created_at", "organization_id")
        .first()
    )


@org_page()
def master_config(request, organization):
    require_administrator(request, organization)
    config = MasterConfig.objects.filter(organization=organization).first()
    if config is None:
        config = MasterConfig(organization=organization)
        if organization.mail_domain:
            config.address = f"master@{organization.mail_domain}"
    data = request.POST if request.method == "POST" else None
    form = MasterConfigForm(data, instance=config)
    formset = AllowedRequestorFormSet(data, instance=config, prefix="requestors")
    if data is not None and form.is_valid() and formset.is_valid():
        with transaction.atomic():
            form.save()
            formset.instance = form.instance
            formset.save()
        messages.success(request, "Master Configuration saved.")
        return redirect("console:master-config", org=organization.name)
    lock_for_readers(request, organization, form, formset)
    return page(
        request,
        "console/master_config.html",
        organization,
        "master",
        config=config,
        form=form,
        formset=formset,
        key=own_key(organization),
        requestor_rows=list(config.requestors.all()) if config.pk else [],
    )
