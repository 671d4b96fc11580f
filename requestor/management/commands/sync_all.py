"""Run every requestor, and the master's processing, until nothing is left to exchange."""

from django.core.management.base import BaseCommand

from requestor.cycle import sync_all
from requestor.management.commands._summary import HEADER, run_line


class Command(BaseCommand):
    help = "Sync every enabled requestor of this installation until the directories converge."

    def add_arguments(self, parser):
        parser.add_argument("--max-rounds", type=int, default=10)

    def handle(self, *args, max_rounds: int, **options):
        rounds = sync_all(max_rounds=max_rounds)
        for number, sync_round in enumerate(rounds, 1):
            self.stdout.write(f"Round {number}")
            self.stdout.write(HEADER)
            for run in sync_round.runs:
                self.stdout.write(run_line(run))
        if rounds and rounds[-1].quiet:
            self.stdout.write(self.style.SUCCESS(f"Converged after {len(rounds)} round(s)."))
        else:
            self.stdout.write(
                self.style.WARNING(
                    f"Still exchanging after {len(rounds)} round(s); replies from masters "
                    "outside this installation may still be on their way."
                )
            )
