"""The Server Type page: which services an organization runs."""

from django.contrib import messages
from django.shortcuts import redirect

from console.forms import ServerTypeForm
from console.views.base import lock_for_readers, org_page, page, require_administrator


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
