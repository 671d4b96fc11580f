"""manage.py held: the batches held for administrators and the master's quarantine, from the
command line (the console's Held batches page; transport.holds, master.quarantine)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from directory.commands import organization_named
from directory.models import Organization
from master import quarantine
from master.models import AllowedRequestor
from transport import holds
from transport.models import Hold


class Command(BaseCommand):
    help = (
        "List the batches held for administrators (and the quarantined requestors), approve or "
        "reject one, quarantine or release a requestor of a master."
    )

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        listing = actions.add_parser("list", help="Pending held batches and quarantines.")
        listing.add_argument("organization", nargs="?", help="Only this organization's.")
        for name, what in (("approve", "Apply"), ("reject", "Discard")):
            decide = actions.add_parser(name, help=f"{what} a held batch (its id from list).")
            decide.add_argument("hold", type=int)
            decide.add_argument("--user", help="The console user the decision is recorded for.")
        lock = actions.add_parser("quarantine", help="Quarantine a requestor of a master.")
        lock.add_argument("master", help="The master's organization, such as ORG1.")
        lock.add_argument("requestor", help="The requestor's organization name, such as ORG2.")
        lock.add_argument("--reason", default="Quarantined from the command line.")
        lock.add_argument("--user", help="The console user the quarantine is recorded for.")
        free = actions.add_parser("release", help="Release a quarantined requestor.")
        free.add_argument("master")
        free.add_argument("requestor")

    def handle(self, *args, action: str, **options):
        getattr(self, f"_{action}")(**options)

    def _list(self, organization=None, **options) -> None:
        pending = holds.pending().select_related("organization").order_by("held_at", "pk")
        quarantined = AllowedRequestor.objects.filter(quarantined_at__isnull=False)
        if organization:
            org = _organization(organization)
            pending = pending.filter(organization=org)
            quarantined = quarantined.filter(master__organization=org)
        for hold in pending:
            self.stdout.write(
                f"{hold.pk}  {hold.held_at:%Y-%m-%d %H:%M}  {hold.organization.name} holds "
                f"{'an export' if hold.kind == 'export' else 'a reply'} of {hold.peer}: "
                f"{hold.deletes} of {hold.live}; {', '.join(hold.sample[:3])}"
            )
        if not pending:
            self.stdout.write("No batch is held.")
        for requestor in quarantined.select_related("master__organization"):
            self.stdout.write(
                f"{requestor.organization_name} is quarantined on "
                f"{requestor.master.organization.name} since "
                f"{requestor.quarantined_at:%Y-%m-%d %H:%M}: {requestor.quarantine_reason}"
            )

    def _approve(self, hold: int, user=None, **options) -> None:
        self._decide(hold, holds.approve, user, "Approved")

    def _reject(self, hold: int, user=None, **options) -> None:
        self._decide(hold, holds.reject, user, "Rejected")

    def _decide(self, pk: int, decide, username, done: str) -> None:
        if not Hold.objects.filter(pk=pk).exists():
            raise CommandError(f"There is no held batch {pk}; `manage.py held list` lists them.")
        try:
            hold = decide(pk, _user(username))
        except holds.HoldDecided as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{done}: the batch of {hold.peer} held by {hold.organization.name}.")

    def _quarantine(self, master, requestor, reason, user=None, **options) -> None:
        allowed = _requestor(master, requestor)
        reason = " ".join(_clean(reason).split())[:500] or "Quarantined from the command line."
        if quarantine.quarantine(allowed, reason, _user(user)):
            self.stdout.write(f"{allowed.organization_name} is quarantined on {master}.")
        else:
            self.stdout.write(f"{allowed.organization_name} was quarantined already.")

    def _release(self, master, requestor, **options) -> None:
        allowed = _requestor(master, requestor)
        try:
            count = quarantine.release(allowed)
        except quarantine.QuarantineError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{allowed.organization_name} is released; {count} message(s) applied.")


def _clean(value: str) -> str:
    if "\x00" in value:
        raise CommandError("Names may not contain NUL characters.")
    return value


def _organization(name: str) -> Organization:
    return organization_named(name)


def _requestor(master: str, name: str) -> AllowedRequestor:
    org = _organization(master)
    found = AllowedRequestor.objects.filter(
        master__organization=org, organization_name__iexact=_clean(name)
    ).first()
    if found is None:
        names = AllowedRequestor.objects.filter(master__organization=org)
        known = ", ".join(names.values_list("organization_name", flat=True)) or "none"
        raise CommandError(f"{org.name} has no requestor {name!r} (its requestors: {known}).")
    return found


def _user(username: str | None):
    if not username:
        return None
    user = get_user_model().objects.filter(username=_clean(username)).first()
    if user is None:
        raise CommandError(f"No console user named {username!r}.")
    return user
