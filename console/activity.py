"""The dashboard's history in numbers: per organization and per hour (last 24 hours) or per day
(last 30 days), the entries its runs exported and imported, the messages it sent and received,
how long its cycles took, how far behind its master it was, the repairs its runs carried and the
batches held for its administrators.

Grouped and summed by the database (TruncHour / TruncDay), one query per source: the number of
queries does not grow with the number of runs, messages or organizations. Read-only; shared by
the dashboard (charts and their table), its JSON endpoints and the API's consumers.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Max, Q, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from requestor.constants import RunStatus
from requestor.models import Run
from transport.constants import Direction
from transport.models import Hold, Message


@dataclass(frozen=True)
class Window:
    name: str
    label: str
    step: str  # "hour" or "day"
    buckets: int

    @property
    def trunc(self):
        return TruncHour if self.step == "hour" else TruncDay


WINDOWS = {
    "24h": Window("24h", "last 24 hours", "hour", 24),
    "30d": Window("30d", "last 30 days", "day", 30),
}
DEFAULT_WINDOW = "24h"

# The series of each organization, in the order the table shows them, with their labels.
SERIES = {
    "runs": "Runs",
    "failed": "Failed runs",
    "exported": "Exported",
    "imported": "Imported",
    "updated": "Updated",
    "deleted": "Deleted",
    "sent": "Messages sent",
    "received": "Messages received",
    "duration": "Cycle duration (s)",
    "lag": "Lag (master USNs)",
    "repairs": "Repairs",
    "held": "Held batches",
}
# Kept empty (null) rather than zero where no run finished or answered in the bucket: a cycle
# that did not happen took no time, which is not the same as taking none.
GAPS = {"duration", "lag"}


class BadWindow(ValueError):
    pass


def window_of(name: str | None) -> Window:
    name = name or DEFAULT_WINDOW
    if name not in WINDOWS:
        raise BadWindow(f"Unknown window {name!r}: use one of {', '.join(WINDOWS)}.")
    return WINDOWS[name]


def bucket_starts(window: Window, now: datetime) -> list[datetime]:
    """The start of each bucket, oldest first, in the current time zone (the one the database
    truncates in): the current hour or day is the last."""
    local = timezone.localtime(now)
    if window.step == "hour":
        current = local.replace(minute=0, second=0, microsecond=0)
        # Counted back in absolute time: a day with a clock change still has 24 hourly buckets.
        return [
            timezone.localtime(current - timedelta(hours=k))
            for k in range(window.buckets - 1, -1, -1)
        ]
    tz = timezone.get_current_timezone()
    today = local.date()
    return [
        datetime.combine(today - timedelta(days=k), datetime.min.time(), tzinfo=tz)
        for k in range(window.buckets - 1, -1, -1)
    ]


def _key(moment: datetime) -> int:
    return int(moment.timestamp())


def history(organizations, window: Window, now: datetime | None = None) -> dict:
    """The series of every organization in `organizations` (a list of Organization rows) over
    `window`, as plain JSON types. Three queries whatever the amount of history."""
    now = now or timezone.now()
    starts = bucket_starts(window, now)
    since = starts[0]
    index = {_key(start): n for n, start in enumerate(starts)}
    ids = [org.pk for org in organizations]
    series = {
        org_id: {name: [None if name in GAPS else 0] * len(starts) for name in SERIES}
        for org_id in ids
    }

    def put(org_id, bucket, name, value) -> None:
        position = index.get(_key(bucket)) if bucket is not None else None
        if org_id in series and position is not None and value is not None:
            series[org_id][name][position] = value

    trunc = window.trunc
    duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    runs = (
        Run.objects.filter(config__organization_id__in=ids, started_at__gte=since)
        .order_by()
        .annotate(bucket=trunc("started_at"))
        .values("config__organization_id", "bucket")
        .annotate(
            runs=Count("id"),
            failed=Count("id", filter=Q(status=RunStatus.FAILED)),
            exported=Sum("exported"),
            imported=Sum("imported"),
            updated=Sum("updated"),
            deleted=Sum("deleted"),
            duration=Avg(duration, filter=Q(finished_at__isnull=False)),
            lag=Max("master_lag"),
            repairs=Count("id", filter=~Q(repair="")),
        )
    )
    for row in runs:
        org_id, bucket = row["config__organization_id"], row["bucket"]
        for name in ("runs", "failed", "exported", "imported", "updated", "deleted", "repairs"):
            put(org_id, bucket, name, row[name] or 0)
        if row["duration"] is not None:
            put(org_id, bucket, "duration", round(row["duration"].total_seconds(), 1))
        put(org_id, bucket, "lag", row["lag"])

    messages = (
        Message.objects.filter(organization_id__in=ids, created_at__gte=since)
        .order_by()
        .annotate(bucket=trunc("created_at"))
        .values("organization_id", "bucket")
        .annotate(
            sent=Count("id", filter=Q(direction=Direction.OUTBOUND)),
            received=Count("id", filter=Q(direction=Direction.INBOUND)),
        )
    )
    for row in messages:
        put(row["organization_id"], row["bucket"], "sent", row["sent"])
        put(row["organization_id"], row["bucket"], "received", row["received"])

    holds = (
        Hold.objects.filter(organization_id__in=ids, held_at__gte=since)
        .order_by()
        .annotate(bucket=trunc("held_at"))
        .values("organization_id", "bucket")
        .annotate(held=Count("id"))
    )
    for row in holds:
        put(row["organization_id"], row["bucket"], "held", row["held"])

    return {
        "window": window.name,
        "label": window.label,
        "step": window.step,
        "generated_at": now.isoformat(),
        "buckets": [start.isoformat() for start in starts],
        "t": [_key(start) for start in starts],
        "series_labels": SERIES,
        "organizations": [
            {
                "name": org.name,
                "display_name": org.display_name,
                "series": series[org.pk],
                "totals": totals(series[org.pk]),
            }
            for org in organizations
        ],
    }


def totals(series: dict[str, list]) -> dict:
    """Sums over the window; for duration the mean of the buckets that had one, for lag the
    highest."""
    out = {}
    for name, values in series.items():
        present = [v for v in values if v is not None]
        if name == "lag":
            out[name] = max(present) if present else None
        elif name == "duration":
            out[name] = round(sum(present) / len(present), 1) if present else None
        else:
            out[name] = sum(present)
    return out


def table_rows(data: dict) -> list[dict]:
    """Per organization, the buckets as rows (for the dashboard's table of the same numbers)."""
    names = list(SERIES)
    return [
        {
            "name": org["name"],
            "rows": [
                {
                    "at": datetime.fromisoformat(at),
                    "values": [org["series"][name][n] for name in names],
                }
                for n, at in enumerate(data["buckets"])
            ],
            "totals": [org["totals"][name] for name in names],
        }
        for org in data["organizations"]
    ]
