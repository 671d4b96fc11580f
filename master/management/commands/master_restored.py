"""Tell a master that its database was restored from a backup: it starts a new epoch."""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from master.models import MasterConfig
from master.processing import start_new_epoch


class Command(BaseCommand):
    help = (
        "Run once after restoring the master's database from a backup, before the workers "
        "start again: the master starts a new epoch, and every requestor gets a full reply at "
        "its next cycle (contacts the master no longer lists are removed). The master would "
        "find out from the requestors' reports too; this makes it certain and immediate."
    )

    def add_arguments(self, parser):
        parser.add_argument("organization", help="The master's organization, such as ORG1.")

    def handle(self, *args, organization: str, **options):
        with transaction.atomic():
            master = (
                MasterConfig.objects.select_for_update(no_key=True)
                .filter(organization__name__iexact=organization)
                .first()
            )
            if master is None:
                known = ", ".join(MasterConfig.objects.values_list("organization__name", flat=True))
                raise CommandError(
                    f"{organization!r} runs no master here (masters: {known or 'none'})."
                )
            old = master.epoch
            start_new_epoch(master)
            master.save(update_fields=["epoch"])
        self.stdout.write(f"Master of {master.organization}: epoch {old} -> {master.epoch}.")
        self.stdout.write(
            f"Each of its {master.requestors.count()} requestors gets a full reply at its next "
            "cycle; nothing else is needed."
        )
