"""Run one organization's requestor cycle now (the Schedule page's Execute Now)."""

from django.core.management.base import BaseCommand, CommandError

from directory.models import Organization
from requestor.cycle import SyncError, run_cycle
from requestor.management.commands._summary import HEADER, run_line
from requestor.models import RequestorConfig, Run
from transport.inbox import pump


class Command(BaseCommand):
    help = "Export an organization's changes to its master now and apply the reply."

    def add_arguments(self, parser):
        parser.add_argument("organization", help="Short name of the organization, such as ORG2.")

    def handle(self, *args, organization: str, **options):
        org = Organization.objects.filter(name__iexact=organization).first()
        if org is None:
            known = ", ".join(Organization.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"No organization named {organization!r} (known: {known}).")
        config = RequestorConfig.objects.filter(organization=org).first()
        if config is None:
            raise CommandError(f"{org.name} runs no requestor; configure one first.")
        try:
            run = run_cycle(config.pk)
        except SyncError as exc:
            raise CommandError(str(exc)) from None
        # When the master is in this installation the reply comes back at once.
        pump()
        run = Run.objects.select_related("config__organization").get(pk=run.pk)
        self.stdout.write(HEADER)
        self.stdout.write(run_line(run))
        if run.status == "waiting":
            self.stdout.write(f"Waiting for the reply from {config.master_address}.")
        if run.status == "failed":
            raise CommandError(f"The cycle failed: {run.error}")
