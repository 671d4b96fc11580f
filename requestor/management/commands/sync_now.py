"""Run one organization's requestor cycle now (the Schedule page's Execute Now), or, with
--dry-run, show what it would do and change nothing (the Schedule page's Preview next cycle)."""

from django.core.management.base import BaseCommand, CommandError

from directory.commands import organization_named
from requestor.cycle import SyncError, run_cycle_now
from requestor.management.commands._preview import preview_lines
from requestor.management.commands._summary import HEADER, run_line
from requestor.models import RequestorConfig, Run
from requestor.preview import preview_cycle
from transport.inbox import pump


class Command(BaseCommand):
    help = (
        "Export an organization's changes to its master now and apply the reply; with "
        "--dry-run, show what that would do and change nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("organization", help="Short name of the organization, such as ORG2.")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Show what the cycle would export and import, each change with its reason; "
            "change nothing.",
        )

    def handle(self, *args, organization: str, dry_run: bool = False, **options):
        org = organization_named(organization)
        config = RequestorConfig.objects.filter(organization=org).first()
        if config is None:
            raise CommandError(f"{org.name} runs no requestor; configure one first.")
        if dry_run:
            try:
                preview = preview_cycle(config.pk)
            except SyncError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write("\n".join(preview_lines(preview)))
            return
        try:
            run = run_cycle_now(config.pk)
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
