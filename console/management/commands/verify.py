"""Whether each organization's copy is verified in sync with its master, and, with --full,
every entry of both sides compared (console.crosscheck)."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from console.crosscheck import SHOWN, SideReport, cross_check
from console.status import SIDE_NAMES, State, sync_check
from requestor import verify
from requestor.models import RequestorConfig


def when(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z") if moment else "never"


class Command(BaseCommand):
    help = (
        "Show whether each organization's copy was verified in sync with its master at its last "
        "cycle (or is repairing, or diverged, and why). --full compares every entry of both "
        "sides and lists the keys that differ; --repair then asks for the full reply or full "
        "export that repairs a side that differs. Exits with 1 when anything differs."
    )

    def add_arguments(self, parser):
        parser.add_argument("organizations", nargs="*", help="Short names; all by default.")
        parser.add_argument("--full", action="store_true", help="Compare every entry.")
        parser.add_argument(
            "--repair", action="store_true", help="With --full: repair the sides that differ."
        )

    def handle(self, *args, organizations, full: bool, repair: bool, **options):
        if repair and not full:
            raise CommandError("--repair goes with --full: it repairs what the comparison finds.")
        configs = RequestorConfig.objects.select_related("organization").order_by(
            "organization__name"
        )
        if organizations:
            names = {name.lower() for name in organizations}
            configs = [c for c in configs if c.organization.name.lower() in names]
            found = {c.organization.name.lower() for c in configs}
            if names - found:
                raise CommandError(f"No requestor for: {', '.join(sorted(names - found))}.")
        problems = 0
        for config in configs:
            problems += self._status(config)
            if full:
                problems += self._full(config, repair)
        if problems:
            raise CommandError(f"{problems} problem(s) found.", returncode=1)

    def _status(self, config: RequestorConfig) -> int:
        check = sync_check(config)
        name = config.organization.name
        if check.state == verify.State.VERIFIED:
            self.stdout.write(f"{name}: verified in sync at {when(check.at)}")
            return 0
        self.stdout.write(f"{name}: {check.label}")
        for side, row in sorted(check.sides.items()):
            line = f"  {SIDE_NAMES[side]}: {row.get_state_display().lower()}"
            if row.verified_at:
                line += f", last verified at {when(row.verified_at)}"
            self.stdout.write(line)
            if row.detail:
                self.stdout.write(f"    {row.detail}")
        return int(check.state == State.DIVERGED)

    def _full(self, config: RequestorConfig, repair: bool) -> int:
        problems = 0
        for report in cross_check(config):
            self._report(report)
            if report.differs:
                problems += 1
                if repair:
                    check = verify.verification(config, report.side)
                    verify.start_repair(config, check, report.side, "Repair asked for by hand.")
                    check.save()
                    self.stdout.write("    repair asked for: it runs at the next cycle")
        return problems

    def _report(self, report: SideReport) -> None:
        title = SIDE_NAMES[report.side]
        if not report.compared:
            self.stdout.write(f"  {title}: entries not compared (the master is elsewhere)")
        else:
            verdict = "the same" if not (report.missing or report.extra or report.stale) else ""
            self.stdout.write(
                f"  {title}: {report.expected} expected, {report.held} held"
                + (f": {verdict}" if verdict else "")
            )
        for label, keys in (
            ("missing", report.missing),
            ("extra", report.extra),
            ("other version", report.stale),
        ):
            if keys:
                more = f" (and {len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
                self.stdout.write(f"    {label} ({len(keys)}): {', '.join(keys[:SHOWN])}{more}")
        for line in report.drift:
            self.stdout.write(f"    digest drift: {line}")
