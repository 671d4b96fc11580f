"""What the management commands of every app share."""

from django.core.management.base import CommandError

from directory.models import Organization


def organization_named(name: str) -> Organization:
    """The organization called `name` (exactly, else in any case), or a CommandError that lists
    the organizations there are."""
    if "\x00" in name:
        raise CommandError("An organization name cannot contain NUL characters.")
    found = Organization.objects.filter(name=name).first()
    found = found or Organization.objects.filter(name__iexact=name).order_by("pk").first()
    if found is None:
        known = ", ".join(Organization.objects.values_list("name", flat=True)) or "none"
        raise CommandError(f"No organization named {name!r} (known: {known}).")
    return found
