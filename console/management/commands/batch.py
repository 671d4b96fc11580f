"""manage.py batch UUID: a batch as one story (console.batch): the origin's run, the master's
guard, what the master stamped, and what each organization imported of it."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from console import batch as batches


class Command(BaseCommand):
    help = (
        "Tell everything one export batch did, everywhere in this installation: the origin's "
        "run and who started it, the master's guard and who decided it, what the master "
        "stamped, and what each organization added, updated, hid, restored, removed or set "
        "aside of it. A reply's batch lists the export batches it carries."
    )

    def add_arguments(self, parser):
        parser.add_argument("batch", help="The batch's UUID, as shown on a run or a message.")

    def handle(self, *args, batch: str, **options):
        try:
            result = batches.story(batches.parse_batch(batch))
        except (ValueError, batches.BatchNotFound) as exc:
            raise CommandError(str(exc)) from None
        what = "Export batch" if result.kind == "export" else "Reply batch"
        self.stdout.write(f"{what} {result.batch}")
        for line in result.lines:
            self.stdout.write(f"  {line}")
        if result.master is not None and result.master.count:
            self._stamped(result.master)
        for imported in result.imports:
            self._imported(imported)

    def _stamped(self, stamped: batches.Stamped) -> None:
        self.stdout.write("")
        self.stdout.write(f"{stamped.organization.name} (master) stamped:")
        for title, count, rows in (
            ("upsert", stamped.upserts, stamped.upserted),
            ("delete", stamped.deletes, stamped.deleted),
        ):
            if count:
                self.stdout.write(f"  {count} {title}{'' if count == 1 else 's'}")
                self._names(rows, count)

    def _imported(self, imported: batches.Imported) -> None:
        if not imported.groups:
            return
        self.stdout.write("")
        self.stdout.write(f"{imported.organization.name}:")
        for group in imported.groups:
            runs = ", ".join(f"run {pk}" for pk in group.runs) or "no run"
            when = timezone.localtime(group.first_at).strftime("%Y-%m-%d %H:%M:%S")
            self.stdout.write(f"  {group.count} {group.label} at {when} ({runs})")
            self._names(group.sample, group.count)

    def _names(self, rows: list[batches.Named], count: int) -> None:
        for named in rows:
            detail = f" ({named.detail})" if named.detail else ""
            usn = f"USN {named.usn}: " if named.usn is not None else ""
            self.stdout.write(f"    {usn}{named.name}{detail}")
        if count > len(rows):
            self.stdout.write(f"    … {count - len(rows)} more")
