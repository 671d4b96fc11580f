"""manage.py history ORG ADDRESS_OR_NAME_OR_KEY: the history of an entry across organizations
(console.history): every version the master stamped and every organization's import of it."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from console import history
from directory.commands import organization_named


class Command(BaseCommand):
    help = (
        "Print the history of a person (a primary SMTP address, part of a display name, or a "
        "global key such as ORG3:<guid>, searched in the organization given): its source "
        "recipient, every version the master stamped (USN, time, attributes changed, message "
        "and run) and every organization's import of it (added, updated, hidden, restored, "
        "removed, set aside), and where retention cut the history."
    )

    def add_arguments(self, parser):
        parser.add_argument("organization", help="Short name of the organization, such as ORG2.")
        parser.add_argument(
            "query", nargs="+", help="An address, (part of) a display name, or a global key."
        )

    def handle(self, *args, organization: str, query: list[str], **options):
        org = organization_named(organization)
        try:
            lookup = history.look_up(org, " ".join(query))
        except history.QueryError as exc:
            raise CommandError(str(exc)) from None
        if lookup.history is not None:
            self._write(lookup.history)
        elif lookup.matches:
            more = " (and more)" if lookup.more else ""
            self.stdout.write(
                f"{len(lookup.matches)} entries match {lookup.query!r}{more}: narrow the "
                "question, or ask for one of them by its global key."
            )
            for match in lookup.matches:
                self.stdout.write(f"  {match.key}  {match.display_name} <{match.address}>")
        else:
            self.stdout.write(
                f"Nothing matches {lookup.query!r}. Searched: {'; '.join(lookup.searched)}."
            )

    def _write(self, entry: history.History) -> None:
        address = f" <{entry.address}>" if entry.address else ""
        self.stdout.write(f"History of {entry.display_name or entry.key}{address}")
        self.stdout.write(f"Global key {entry.key}, from {entry.origin}.")
        source = entry.source
        if source is not None:
            self.stdout.write(
                f"Source: {source.get_kind_display()} {source.display_name} "
                f"<{source.primary_smtp}> in {source.container.dn} (GUID {source.guid})."
            )
        elif entry.origin_note:
            self.stdout.write(f"Source: {entry.origin_note}")
        for contact in entry.contacts:
            state = f"hidden since {_when(contact.hidden_at)}" if contact.hidden_at else "shown"
            self.stdout.write(
                f"Contact in {contact.organization.name}: {contact.display_name} "
                f"<{contact.primary_smtp}>, {state}."
            )
        self.stdout.write("")
        if not entry.events:
            self.stdout.write("No versions or imports of it are kept.")
        for event in entry.events:
            where = "master " + event.organization if event.place == history.MASTER else ""
            self.stdout.write(f"{_when(event.at)}  {where or event.organization:<12}  {event.text}")
            details = [link.label for link in event.links if link.view == "message"]
            run = event.run
            if run is not None:
                owner = entry.origin if event.place == history.MASTER else event.organization
                who = f" by {run.requested_by.get_username()}" if run.requested_by else ""
                details.append(f"run {run.pk} of {owner} ({run.get_trigger_display()}{who})")
            if details:
                self.stdout.write(f"{'':35}{'; '.join(details)}")
        for line in [cut.text for cut in entry.cuts] + entry.notes:
            self.stdout.write(f"Note: {line}")


def _when(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S")
