"""Printing of runs for the sync commands."""

from requestor.models import Run

HEADER = (
    f"{'organization':<14}{'status':<10}{'exported':>9}{'acked':>8}"
    f"{'imported':>9}{'updated':>8}{'deleted':>8}{'conflicts':>10}"
)


def run_line(run: Run) -> str:
    acked = "" if run.acknowledged is None else str(run.acknowledged)
    line = (
        f"{run.config.organization.name:<14}{run.status:<10}{run.exported:>9}{acked:>8}"
        f"{run.imported:>9}{run.updated:>8}{run.deleted:>8}{run.conflicts:>10}"
    )
    return f"{line}  {run.error}" if run.error else line
