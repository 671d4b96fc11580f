"""manage.py explain ORG ADDRESS_OR_NAME: why an entry is, or is not, in an organization's
address book, step by step (console.explain)."""

from django.core.management.base import BaseCommand, CommandError

from console import explain
from directory.commands import organization_named


class Command(BaseCommand):
    help = (
        "Explain why a person (a primary SMTP address, part of a display name, or a global key "
        "such as ORG3:<guid>) is, or is not, in an organization's address book: its origin, "
        "that origin's export scope, its entry at the master, this organization's requestor, "
        "Import Config and conflicts, and its contact here; each step says what to change."
    )

    def add_arguments(self, parser):
        parser.add_argument("organization", help="Short name of the organization, such as ORG2.")
        parser.add_argument("query", nargs="+", help="An address, or (part of) a display name.")

    def handle(self, *args, organization: str, query: list[str], **options):
        org = organization_named(organization)
        try:
            result = explain.explain(org, " ".join(query))
        except explain.ExplainError as exc:
            raise CommandError(str(exc)) from None
        self._write(result)

    def _write(self, result: explain.Explanation) -> None:
        name = result.organization.name
        self.stdout.write(f"Why is {result.query!r} (not) in the address book of {name}?")
        self.stdout.write(f"Searched: {'; '.join(result.searched)}.")
        if not result.matches:
            self.stdout.write("Not found: nothing there matches. Check the spelling, or ask by")
            self.stdout.write("the primary SMTP address, or by part of the display name.")
            return
        if result.narrow:
            more = " (and more)" if result.more else ""
            self.stdout.write(
                f"{len(result.matches)} matches{more}: narrow the question, or ask for one of "
                "them by its global key."
            )
            for match in result.matches:
                self.stdout.write(
                    f"  {match.key}  {match.display_name} <{match.address}>  "
                    f"({', '.join(match.found_in)})"
                )
            return
        for number, trace in enumerate(result.traces, 1):
            self._trace(trace, number, len(result.traces))

    def _trace(self, trace: explain.Trace, number: int, count: int) -> None:
        match = trace.match
        self.stdout.write("")
        self.stdout.write(
            f"[{number}/{count}] {match.display_name or match.key} <{match.address}>, "
            f"from {match.origin}"
        )
        for index, step in enumerate(trace.steps, 1):
            self.stdout.write(f"  {index}. {step.title} [{step.label}]")
            self.stdout.write(f"     {step.found}")
            if step.fix and step.status in (explain.Status.BLOCKS, explain.Status.WAITING):
                self.stdout.write(f"     To change: {step.fix}")
        verdict = trace.verdict
        self.stdout.write(f"  Verdict: {verdict.text} {verdict.reason}".rstrip())
        if verdict.fix:
            self.stdout.write(f"  To make it sync: {verdict.fix}")
