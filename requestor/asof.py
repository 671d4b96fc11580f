"""An organization's address book as of a past time, and what changed since: "who removed X,
and when?".

The imported contacts at a time T are read from the import history (ImportedChange): for each
global key its latest change at or before T; the contact was in the address book if that change
left it there (added, updated, restored). The same read at the present gives the address book
now, so then and now compare like with like. The database does the work in a handful of queries
whatever the length of the history: each key's latest change is a correlated subquery on the
(organization, global key, at) index, the four lists are counted there, and only the rows of
the page shown are read whole, with the history of their keys (one more query).

What the history cannot tell, and the result says so rather than guess: the organization's own
recipients (they have no history here), contacts imported before the history began (an
installation upgraded from a version without it), and times before the retention horizon
(INTERORG_HISTORY_RETENTION_DAYS), where requestor.housekeeping.compact_imported_changes keeps
only each entry's latest state.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

from django.conf import settings
from django.db.models import Exists, F, Min, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from directory.models import Organization, Recipient
from requestor.models import ImportedChange

MAX_TIME_LENGTH = 64
MAX_QUERY_LENGTH = 256

# The lists of a result: what the address book held then, and the difference to now.
THEN, REMOVED, ADDED, CHANGED = "then", "removed", "added", "changed"
SHOWS = {
    THEN: "In the address book then",
    REMOVED: "Removed since",
    ADDED: "Added since",
    CHANGED: "Changed since",
}


class AsOfError(ValueError):
    """A time or a search that cannot be asked about; the message says what can."""


def zone_name() -> str:
    return str(timezone.get_current_timezone())


def shown(moment: datetime) -> str:
    """A time as the messages show it: in the server's time zone, the zone named."""
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M} {zone_name()}"


def parse_time(text: str) -> datetime:
    """A time as the console's picker gives it (YYYY-MM-DDTHH:MM) or in ISO 8601; without an
    offset it is a time of the server's time zone, a date alone is its start (00:00)."""
    text = (text or "").strip()
    if "\x00" in text:
        raise AsOfError("Null characters are not allowed in a time.")
    if not text:
        raise AsOfError("Give a time, such as 2025-03-14T09:30.")
    problem = (
        f"“{text[:MAX_TIME_LENGTH]}” is not a time: give one as YYYY-MM-DDTHH:MM (in "
        f"{zone_name()}), or in ISO 8601 with an offset, such as 2025-03-14T09:30:00+01:00."
    )
    if len(text) > MAX_TIME_LENGTH:
        raise AsOfError(problem)
    try:
        moment = parse_datetime(text)
        if moment is not None and timezone.is_naive(moment):
            moment = timezone.make_aware(moment)
        # Far ends of the calendar overflow in a conversion to UTC.
        if moment is not None:
            moment.astimezone(timezone.get_current_timezone())
    except (ValueError, OverflowError):
        moment = None
    if moment is None:
        raise AsOfError(problem)
    return moment


def clean_query(text: str) -> str:
    """The search by name or address: at most MAX_QUERY_LENGTH characters, no null characters."""
    text = " ".join((text or "").split())
    if "\x00" in text:
        raise AsOfError("Null characters are not allowed in a search.")
    if len(text) > MAX_QUERY_LENGTH:
        raise AsOfError(f"Search for at most {MAX_QUERY_LENGTH} characters.")
    return text


@dataclass(frozen=True)
class Limits:
    """The times an organization's address book can be shown as of."""

    starts: datetime | None  # the first change its history holds
    horizon: datetime  # now, less the retention
    now: datetime

    @property
    def earliest(self) -> datetime | None:
        return None if self.starts is None else max(self.starts, self.horizon)


def limits(organization: Organization, now: datetime | None = None) -> Limits:
    now = now or timezone.now()
    horizon = now - timedelta(days=settings.INTERORG_HISTORY_RETENTION_DAYS)
    starts = ImportedChange.objects.filter(organization=organization).aggregate(first=Min("at"))
    return Limits(starts["first"], horizon, now)


def check_time(organization: Organization, at: datetime, bounds: Limits) -> None:
    """Refuse a time the history cannot answer for exactly, saying which times it can."""
    name = organization.name
    if at > bounds.now:
        raise AsOfError(f"{shown(at)} is in the future: ask for a time up to now.")
    if at < bounds.horizon:
        raise AsOfError(
            f"The history of {name}'s address book is kept for "
            f"{settings.INTERORG_HISTORY_RETENTION_DAYS} days (older changes are compacted to "
            f"each entry's latest state): ask for a time after {shown(bounds.horizon)}."
        )
    if bounds.starts is None:
        raise AsOfError(
            f"No import into {name}'s address book has been recorded yet: its history starts "
            "with the first import (an installation upgraded from a version without this "
            "history has none from before its upgrade)."
        )
    if at < bounds.starts:
        raise AsOfError(
            f"The history of {name}'s address book starts at {shown(bounds.starts)}: nothing "
            "is recorded before (an installation upgraded from a version without this history "
            "has none from before its upgrade). Ask for a later time."
        )


@dataclass
class Entry:
    """One entry of a list: the contact as of the time asked (`then`), its latest change
    (`now`), and the change that made the difference (`change`): the one that took it out of
    the address book, brought it in, or changed it last."""

    key: str
    origin: str
    display_name: str
    primary_smtp: str
    then: ImportedChange | None
    now: ImportedChange | None
    change: ImportedChange | None

    @property
    def present_now(self) -> bool:
        return self.now is not None and self.now.present

    @property
    def state_now(self) -> str:
        """In the address book now (unchanged or changed), or how it left it."""
        if self.now is None:
            return "not recorded"
        if self.now.present:
            same = self.then is not None and self.then.pk == self.now.pk
            return "unchanged" if same else "in the address book"
        return self.now.get_op_display()


@dataclass
class AddressBookAsOf:
    """What an organization's address book held at `at`, and the difference to `now`; each list
    filtered by `query` (part of a display name or address) when one is given."""

    organization: Organization
    at: datetime
    query: str
    limits: Limits

    @property
    def now(self) -> datetime:
        return self.limits.now

    def _changes(self) -> QuerySet:
        return ImportedChange.objects.filter(organization_id=self.organization.pk)

    def _latest(self, at: datetime) -> QuerySet:
        """Each key's latest change at or before `at`, where that change left the contact in
        the address book."""
        rows = self._changes().filter(at__lte=at)
        later = rows.filter(global_key=OuterRef("global_key")).order_by("-at", "-pk")
        return rows.filter(pk=Subquery(later.values("pk")[:1]), op__in=ImportedChange.PRESENT)

    def _search(self, rows: QuerySet, *also: str) -> QuerySet:
        if not self.query:
            return rows
        found = Q(display_name__icontains=self.query) | Q(primary_smtp__icontains=self.query)
        for name in also:
            found |= Q(**{f"{name}__icontains": self.query})
        return rows.filter(found)

    def entries(self, show: str) -> QuerySet:
        """The rows of a list, ordered: the state then (then, removed) or now (added, changed)."""
        if show not in SHOWS:
            raise AsOfError(f"Show one of {', '.join(SHOWS)}.")
        then, now = self._latest(self.at), self._latest(self.now)
        if show == THEN:
            rows = self._search(then)
        elif show == REMOVED:
            rows = self._search(then.exclude(global_key__in=now.values("global_key")))
        elif show == ADDED:
            rows = self._search(now.exclude(global_key__in=then.values("global_key")))
        else:
            before = self._changes().filter(at__lte=self.at, global_key=OuterRef("global_key"))
            before = before.order_by("-at", "-pk")
            rows = self._search(
                now.filter(global_key__in=then.values("global_key"))
                .annotate(
                    then_name=Subquery(before.values("display_name")[:1]),
                    then_smtp=Subquery(before.values("primary_smtp")[:1]),
                    smtp_now=Lower("primary_smtp"),
                    smtp_then=Lower(F("then_smtp")),
                )
                .exclude(display_name=F("then_name"), smtp_now=F("smtp_then")),
                "then_name",
                "then_smtp",
            )
        return rows.order_by("display_name", "global_key", "pk")

    @cached_property
    def counts(self) -> dict[str, int]:
        return {show: self.entries(show).count() for show in SHOWS}

    @cached_property
    def own_recipients(self) -> int:
        """The organization's own recipients now (no history of them is kept here)."""
        return Recipient.objects.filter(
            organization=self.organization, global_key__isnull=True
        ).count()

    @cached_property
    def untracked(self) -> int:
        """Contacts in the address book now that the history holds no change of: imported
        before it began."""
        logged = self._changes().filter(global_key=OuterRef("global_key"))
        return (
            Recipient.objects.filter(
                organization=self.organization, global_key__isnull=False, hidden_at__isnull=True
            )
            .exclude(Exists(logged))
            .count()
        )

    def explain(self, rows) -> list[Entry]:
        """The rows of one page of a list as entries, with their state then and now and the
        change that made the difference, read in one query for the whole page."""
        rows = list(rows)
        history: dict[str, list[ImportedChange]] = {row.global_key: [] for row in rows}
        if history:
            for change in (
                self._changes()
                .filter(global_key__in=list(history), at__lte=self.now)
                .select_related("run__requested_by")
                .order_by("at", "pk")
            ):
                history[change.global_key].append(change)
        return [self._entry(row, history[row.global_key]) for row in rows]

    def _entry(self, row: ImportedChange, changes: list[ImportedChange]) -> Entry:
        before = [change for change in changes if change.at <= self.at]
        after = [change for change in changes if change.at > self.at]
        then = before[-1] if before else None
        now = changes[-1] if changes else None
        # The first change of the last stretch in the state it is in now: what took it out
        # of the address book, or brought it in, after the time asked.
        change = None
        for each in after:
            if change is None or change.present != each.present:
                change = each
        if change is not None and (then is not None and then.present) == change.present:
            change = after[-1]  # in the same state as then: its latest change
        return Entry(
            row.global_key, row.origin, row.display_name, row.primary_smtp, then, now, change
        )


def address_book(
    organization: Organization, at: datetime, query: str = "", bounds: Limits | None = None
) -> AddressBookAsOf:
    """An organization's address book as of `at` (within the retention, not before its history
    starts, not in the future; `bounds` from `limits()`, read now if not given); raises
    AsOfError saying which times can be asked."""
    bounds = bounds or limits(organization)
    check_time(organization, at, bounds)
    return AddressBookAsOf(organization, at, clean_query(query), bounds)
