"""The history of an entry across organizations: what happened to one person, and when.

An entry (a global key, "ORG3:<source GUID>") has a source recipient in its origin organization,
versions the master stamped (the ledger: each accepted change with its USN, the export message
that carried it and so the origin's run of that batch), and, in every organization that imports
it, the changes each import made to its contact (requestor.models.ImportedChange: added,
updated, hidden, restored, removed, set aside). `history()` reads all of them for one key and
returns them as one timeline, oldest first.

Retention cuts it: the ledger keeps every change for the master's tombstone lifetime, then each
entry's latest version only (master.housekeeping.compact_ledger); the import history keeps
INTERORG_HISTORY_RETENTION_DAYS, then each entry's latest state per organization
(requestor.housekeeping.compact_imported_changes). Where the history may miss older steps, it
says so (`History.cuts`) instead of guessing: the earliest version kept of a ledger that may have
been compacted is "the earliest version kept", not "created".

Who may see what (as in console.explain): `can_read(organization_id)` tells which organizations
the asking user may read. The master's versions are shown to readers of the master's
organization, each organization's imports and contact to its readers, the source recipient and
the origin's runs to readers of the origin; the rest is named in `History.not_shown`.

Every part is read in bulk by the key: the number of queries does not grow with the number of
versions, imports or organizations.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from console import explain
from console.explain import Link
from directory.constants import GENERAL_ATTRIBUTES
from directory.models import Organization, Recipient, Tombstone
from master.models import LedgerEntry, MasterConfig
from requestor.models import ImportedChange, Run
from transport.constants import Direction, MessageKind, Op
from transport.models import Message

MASTER = "master"
IMPORT = "import"

QueryError = explain.ExplainError


class Change:
    """What a version at the master was, compared with the one before it (imports use
    ImportedChange.Op: added, updated, hidden, restored, removed, set_aside)."""

    CREATED = "created"
    UPDATED = "updated"
    RESTATED = "restated"  # stamped again, no General attribute changed
    RETURNED = "returned"  # live again after a delete
    DELETED = "deleted"
    EARLIEST = "earliest"  # the earliest version kept; the ledger may have dropped older ones

    LABELS = {
        CREATED: "created",
        UPDATED: "updated",
        RESTATED: "stamped again",
        RETURNED: "back",
        DELETED: "deleted",
        EARLIEST: "earliest version kept",
    }


IMPORT_LABELS = dict(ImportedChange.Op.choices)


def _everything(organization_id: int) -> bool:
    return True


def _when(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M")


def attribute_label(name: str) -> str:
    """The General attribute's name as the property page shows it."""
    try:
        return str(Recipient._meta.get_field(name).verbose_name)
    except Exception:  # a name an older version wrote, no longer a field
        return name


@dataclass
class Event:
    """One step of the entry's history: a version the master stamped, or one organization's
    import of it."""

    at: datetime
    place: str  # MASTER or IMPORT
    organization: str  # the master's organization, or the importing one
    change: str
    text: str
    attributes: list[str] = field(default_factory=list)
    master_usn: int | None = None
    source_usn: int | None = None
    origin: str = ""
    display_name: str = ""
    address: str = ""
    detail: str = ""
    batch: uuid.UUID | None = None
    run: Run | None = None  # the origin's run (a version) or the importing one's (an import)
    links: list[Link] = field(default_factory=list)

    @property
    def label(self) -> str:
        if self.place == MASTER:
            return Change.LABELS[self.change]
        return IMPORT_LABELS.get(self.change, self.change)

    @property
    def attribute_labels(self) -> list[str]:
        return [attribute_label(name) for name in self.attributes]


@dataclass
class Cut:
    """Where retention may have cut the history of one place: complete from `since` on."""

    place: str
    organization: str
    days: int
    since: datetime
    text: str


@dataclass
class History:
    """The timeline of one entry, as far as the asking user may read it."""

    key: str
    origin: str
    display_name: str = ""
    address: str = ""
    source: Recipient | None = None  # its recipient in its (local, readable) origin
    origin_note: str = ""  # what is known of the source when it is not shown
    deleted_at: datetime | None = None  # when its (readable) origin deleted the source
    contacts: list[Recipient] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    cuts: list[Cut] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    not_shown: list[str] = field(default_factory=list)  # organizations the user cannot read

    @property
    def found(self) -> bool:
        """Whether the user may see anything of it."""
        return bool(self.events or self.source or self.deleted_at or self.contacts)

    @property
    def guid(self) -> uuid.UUID | None:
        try:
            return uuid.UUID(self.key.partition(":")[2])
        except ValueError:
            return None


@dataclass
class Lookup:
    """The answer to "the history of …" asked in an organization: the history of the one entry
    meant, or the matches to pick from."""

    organization: Organization
    query: str
    searched: list[str]
    matches: list[explain.Match]
    more: bool = False
    history: History | None = None

    @property
    def narrow(self) -> bool:
        return self.history is None and len(self.matches) > 1


def key_of(recipient: Recipient) -> str:
    """The global key of a contact, or the one an organization's own recipient is exported
    under."""
    return recipient.global_key or f"{recipient.organization.name}:{recipient.guid}"


def look_up(
    organization: Organization, query: str, can_read: Callable[[int], bool] | None = None
) -> Lookup:
    """The history of the entry `query` (a global key, an address or part of a display name)
    names, searched in `organization` as the explainer searches; the matches when it names
    several. QueryError says what is wrong with a question that cannot be asked."""
    can_read = can_read or _everything
    query = explain.clean_query(query)
    key = explain.parse_key(query)
    if key is not None:
        entry = history(key, can_read)
        searched = [f"the global key {key}"]
        return Lookup(organization, query, searched, [], history=entry if entry.found else None)
    found = explain.find(organization, query, can_read)
    entry = history(found.matches[0].key, can_read) if len(found.matches) == 1 else None
    return Lookup(organization, query, found.searched, found.matches, found.more, entry)


def recipient_history(
    recipient: Recipient, can_read: Callable[[int], bool] | None = None
) -> History:
    """The history of a recipient (its own entry) or of a contact (the entry it stands for)."""
    return history(key_of(recipient), can_read)


def history(
    key: str, can_read: Callable[[int], bool] | None = None, now: datetime | None = None
) -> History:
    """The timeline of the entry with global key `key`: its source, every version the masters
    of this installation stamped, and every import of it, oldest first."""
    reader = _Reader(key, can_read or _everything, now or timezone.now())
    reader.read_source()
    reader.read_versions()
    reader.read_imports()
    return reader.finish()


class _Reader:
    """Reads the parts of one entry's history, each in one query."""

    def __init__(self, key: str, can_read: Callable[[int], bool], now: datetime):
        self.can_read, self.now = can_read, now
        self.names = dict(Organization.objects.values_list("pk", "name"))
        origin, _, guid = key.partition(":")
        self.origin_id = next(
            (pk for pk, name in self.names.items() if name.lower() == origin.lower()), None
        )
        if self.origin_id is not None:
            # Keys carry the origin's name as it is spelled: ask "org3:…", read "ORG3:…".
            origin = self.names[self.origin_id]
        self.key = f"{origin}:{guid}"
        self.result = History(self.key, origin)
        self.latest: dict = {}  # the latest attributes seen: (at, display name, address)

    def hidden(self, organization_id: int) -> None:
        name = self.names[organization_id]
        if name not in self.result.not_shown:
            self.result.not_shown.append(name)

    def describe(self, at: datetime, display_name: str, address: str) -> None:
        if display_name and (not self.latest or at >= self.latest["at"]):
            self.latest = {"at": at, "display_name": display_name, "address": address}

    # --- The source recipient ------------------------------------------------------------------

    def read_source(self) -> None:
        result, origin = self.result, self.result.origin
        if self.origin_id is None:
            result.origin_note = (
                f"{origin} is not an organization of this installation: its directory is not "
                "visible from here."
            )
            return
        name = self.names[self.origin_id]
        if not self.can_read(self.origin_id):
            result.origin_note = f"Not shown: you cannot read {name}."
            self.hidden(self.origin_id)
            return
        guid = result.guid
        if guid is None:
            return
        result.source = (
            Recipient.objects.select_related("container", "organization")
            .filter(organization_id=self.origin_id, guid=guid, global_key__isnull=True)
            .first()
        )
        if result.source is not None:
            return
        tombstone = (
            Tombstone.objects.filter(organization_id=self.origin_id, guid=guid)
            .order_by("-usn")
            .first()
        )
        if tombstone is None:
            result.origin_note = f"{name} holds no recipient with the GUID {guid}."
            return
        result.deleted_at = tombstone.deleted_at
        result.origin_note = (
            f"Deleted in {name} on {_when(tombstone.deleted_at)} (local USN {tombstone.usn})."
        )

    # --- The master's versions -----------------------------------------------------------------

    def read_versions(self) -> None:
        first_row = LedgerEntry.objects.filter(master=OuterRef("pk")).order_by("usn")
        masters = {
            master.pk: master
            for master in MasterConfig.objects.annotate(
                first_at=Subquery(first_row.values("created_at")[:1])
            )
        }
        rows = list(
            LedgerEntry.objects.filter(master_id__in=list(masters), global_key=self.key)
            .select_related("message")
            .only(
                "master_id",
                "usn",
                "origin",
                "op",
                "source_usn",
                "attrs",
                "created_at",
                "message__id",
                "message__batch",
            )
            .order_by("master_id", "usn")
        )
        shown = []
        for row in rows:
            master = masters[row.master_id]
            if self.can_read(master.organization_id):
                shown.append(row)
            else:
                self.hidden(master.organization_id)
        runs = self._origin_runs({row.message.batch for row in shown if row.message})
        for master_id in dict.fromkeys(row.master_id for row in shown):
            mine = [row for row in shown if row.master_id == master_id]
            self._versions(masters[master_id], mine, runs)
        if not rows:
            self.result.notes.append(
                "No master of this installation holds a version of it: it was never exported "
                "to one, its versions went with its tombstone after the master's tombstone "
                "lifetime, or its master runs in another installation."
            )

    def _origin_runs(self, batches: set) -> dict:
        """The origin's runs that sent these export batches, by batch (for readers of the
        origin only: who started a run is the origin's business)."""
        batches.discard(None)
        if not batches or self.origin_id is None or not self.can_read(self.origin_id):
            return {}
        runs = Run.objects.filter(
            config__organization_id=self.origin_id, batch__in=batches
        ).select_related("requested_by")
        return {run.batch: run for run in runs}

    def _complete(self, master: MasterConfig, horizon: datetime) -> bool:
        """Whether no version of this entry can have been compacted away: the master's ledger
        begins after the horizon, or the source recipient was made after it."""
        if master.first_at is None or master.first_at >= horizon:
            return True
        source = self.result.source
        return source is not None and source.created_at >= horizon

    def _versions(self, master: MasterConfig, rows: list[LedgerEntry], runs: dict) -> None:
        name = self.names[master.organization_id]
        days = master.tombstone_lifetime_days
        horizon = self.now - timedelta(days=days)
        complete = self._complete(master, horizon)
        if not complete:
            self.result.cuts.append(
                Cut(
                    MASTER,
                    name,
                    days,
                    horizon,
                    f"The master's ledger ({name}) keeps every version for its tombstone "
                    f"lifetime ({days} days, since {_when(horizon)}), and of older ones only "
                    "each entry's latest: versions before that may be missing.",
                )
            )
        previous: LedgerEntry | None = None
        live: dict | None = None  # the attributes of the latest live version
        for row in rows:
            change, attributes = _compare(row, previous, live, complete)
            message = row.message
            run = runs.get(message.batch) if message is not None else None
            event = Event(
                row.created_at,
                MASTER,
                name,
                change,
                _version_text(change, row, name, attributes),
                attributes,
                master_usn=row.usn,
                source_usn=row.source_usn,
                origin=row.origin,
                display_name=row.attrs.get("display_name", ""),
                address=row.attrs.get("primary_smtp", ""),
                batch=message.batch if message is not None else None,
                run=run,
            )
            if message is not None:
                event.links.append(Link(f"Message {message.pk}", "message", name, message.pk))
            if run is not None:
                origin = self.names[self.origin_id]
                event.links.append(Link(f"Run {run.pk} of {origin}", "run", origin, run.pk))
            self.result.events.append(event)
            self.describe(row.created_at, event.display_name, event.address)
            previous = row
            if row.op != Op.DELETE:
                live = row.attrs

    # --- Every organization's imports ----------------------------------------------------------

    def read_imports(self) -> None:
        organizations = list(self.names)
        readable = [pk for pk in organizations if self.can_read(pk)]
        rows = list(
            ImportedChange.objects.filter(organization_id__in=organizations, global_key=self.key)
            .select_related("run__requested_by")
            .order_by("at", "pk")
        )
        for row in rows:
            if row.organization_id not in readable:
                self.hidden(row.organization_id)
        rows = [row for row in rows if row.organization_id in readable]
        self.result.contacts = list(
            Recipient.objects.filter(organization_id__in=readable, global_key=self.key)
            .select_related("organization", "container")
            .order_by("organization__name")
        )
        contacts = {contact.organization_id: contact for contact in self.result.contacts}
        replies = self._replies(rows)
        for row in rows:
            self._import(row, contacts.get(row.organization_id), replies)
        self._import_cuts(rows, contacts)

    def _replies(self, rows: list[ImportedChange]) -> dict:
        """The first received part of each reply batch, by (organization, batch)."""
        batches = {row.batch for row in rows if row.batch}
        if not batches:
            return {}
        parts = (
            Message.objects.filter(
                batch__in=batches,
                organization_id__in={row.organization_id for row in rows},
                kind=MessageKind.REPLY,
                direction=Direction.INBOUND,
            )
            .order_by("-pk")
            .values_list("organization_id", "batch", "pk")
        )
        return {(organization_id, batch): pk for organization_id, batch, pk in parts}

    def _import(self, row: ImportedChange, contact: Recipient | None, replies: dict) -> None:
        name = self.names[row.organization_id]
        attributes = []
        if row.op in (ImportedChange.Op.UPDATED, ImportedChange.Op.RESTORED) and row.detail:
            attributes = [part.strip() for part in row.detail.split(",") if part.strip()]
        event = Event(
            row.at,
            IMPORT,
            name,
            row.op,
            _import_text(row, name, attributes),
            attributes,
            master_usn=row.master_usn,
            origin=row.origin,
            display_name=row.display_name,
            address=row.primary_smtp,
            detail=row.detail,
            batch=row.batch,
            run=row.run,
        )
        reply = replies.get((row.organization_id, row.batch))
        if reply is not None:
            event.links.append(Link(f"Reply {reply}", "message", name, reply))
        if row.run is not None:
            event.links.append(Link(f"Run {row.run.pk}", "run", name, row.run.pk))
        if contact is not None:
            event.links.append(Link(f"Contact in {name}", "recipient", name, contact.pk))
        self.result.events.append(event)
        if row.op != ImportedChange.Op.REMOVED:
            self.describe(row.at, row.display_name, row.primary_smtp)

    def _import_cuts(self, rows: list[ImportedChange], contacts: dict) -> None:
        days = settings.INTERORG_HISTORY_RETENTION_DAYS
        horizon = self.now - timedelta(days=days)
        first: dict[int, ImportedChange] = {}
        for row in rows:
            first.setdefault(row.organization_id, row)
        beginning = (ImportedChange.Op.ADDED, ImportedChange.Op.SET_ASIDE)
        cut = [
            organization_id
            for organization_id, row in first.items()
            if row.at < horizon or row.op not in beginning
        ]
        cut += [organization_id for organization_id in contacts if organization_id not in first]
        for organization_id in sorted(cut, key=self.names.get):
            name = self.names[organization_id]
            self.result.cuts.append(
                Cut(
                    IMPORT,
                    name,
                    days,
                    horizon,
                    f"Imports of {name} before what is listed may be missing: the import "
                    f"history keeps every change for {days} days (since {_when(horizon)}), and "
                    "of older ones only each entry's latest state.",
                )
            )

    # --- The whole -----------------------------------------------------------------------------

    def finish(self) -> History:
        result = self.result
        result.events.sort(key=lambda event: (event.at, event.place != MASTER))
        if self.latest:
            result.display_name = self.latest["display_name"]
            result.address = self.latest["address"]
        elif result.source is not None:
            result.display_name = result.source.display_name
            result.address = result.source.primary_smtp
        elif result.contacts:
            result.display_name = result.contacts[0].display_name
            result.address = result.contacts[0].primary_smtp
        result.not_shown.sort()
        if result.not_shown:
            one = len(result.not_shown) == 1
            result.notes.append(
                f"Not shown: what {' and '.join(result.not_shown)} "
                f"{'holds' if one else 'hold'} of it (you cannot read {'it' if one else 'them'})."
            )
        return result


def _differing(before: dict, after: dict) -> list[str]:
    return [name for name in GENERAL_ATTRIBUTES if before.get(name, "") != after.get(name, "")]


def _compare(
    row: LedgerEntry, previous: LedgerEntry | None, live: dict | None, complete: bool
) -> tuple[str, list[str]]:
    """What the version `row` is, and the General attributes it changed, compared with the
    version before it (after a delete: with the latest live one)."""
    if row.op == Op.DELETE:
        return Change.DELETED, []
    if previous is None:
        return (Change.CREATED if complete else Change.EARLIEST), []
    if previous.op == Op.DELETE:
        return Change.RETURNED, _differing(live, row.attrs) if live is not None else []
    attributes = _differing(previous.attrs, row.attrs)
    return (Change.UPDATED if attributes else Change.RESTATED), attributes


def _labels(attributes: list[str]) -> str:
    return ", ".join(attribute_label(name) for name in attributes)


def _version_text(change: str, row: LedgerEntry, master: str, attributes: list[str]) -> str:
    usn = f"master USN {row.usn}"
    if change == Change.DELETED:
        return (
            f"{row.origin} exported a delete (the recipient was deleted or left the export "
            f"scope): {master} stamped a tombstone, {usn}."
        )
    if change == Change.CREATED:
        return f"{row.origin} exported it for the first time: {master} stamped {usn}."
    if change == Change.EARLIEST:
        return f"The earliest version {master}'s ledger keeps ({usn}); older ones were compacted."
    if change == Change.RETURNED:
        changed = f"; changed since: {_labels(attributes)}" if attributes else ""
        return (
            f"Back after its delete (back in the export scope of {row.origin}, or restored "
            f"there): {master} stamped {usn}{changed}."
        )
    if change == Change.RESTATED:
        return f"Stamped again with the same General attributes: {usn}."
    return f"Changed: {_labels(attributes)}; {master} stamped {usn}."


def _import_text(row: ImportedChange, name: str, attributes: list[str]) -> str:
    op, usn = row.op, f" (master USN {row.master_usn})" if row.master_usn else ""
    if op == ImportedChange.Op.ADDED:
        return f"Added to the address book of {name}{usn}."
    if op == ImportedChange.Op.UPDATED:
        changed = f": {_labels(attributes)}" if attributes else ""
        return f"Contact updated in {name}{changed}{usn}."
    if op == ImportedChange.Op.HIDDEN:
        return (
            f"Hidden in {name} for its grace period: its entry was deleted or left this "
            f"address book{usn}."
        )
    if op == ImportedChange.Op.RESTORED:
        return f"Restored in {name}: the same contact is shown again{usn}."
    if op == ImportedChange.Op.REMOVED:
        why = f" ({row.detail})" if row.detail else ""
        return f"Removed for good from {name}{why}."
    return f"Set aside by {name}: {row.detail or 'not imported'}{usn}."


def as_dict(entry: History) -> dict:
    """The history as JSON-ready data (the API's answer)."""
    source = entry.source
    return {
        "key": entry.key,
        "origin": entry.origin,
        "display_name": entry.display_name,
        "address": entry.address,
        "source": None
        if source is None
        else {
            "organization": source.organization.name,
            "id": source.pk,
            "kind": source.kind,
            "container": source.container.dn,
            "guid": str(source.guid),
            "display_name": source.display_name,
            "address": source.primary_smtp,
            "created_at": source.created_at,
        },
        "origin_note": entry.origin_note,
        "deleted_at": entry.deleted_at,
        "contacts": [
            {
                "organization": contact.organization.name,
                "id": contact.pk,
                "display_name": contact.display_name,
                "address": contact.primary_smtp,
                "master_usn": contact.master_usn,
                "hidden_at": contact.hidden_at,
            }
            for contact in entry.contacts
        ],
        "events": [_event_dict(event) for event in entry.events],
        "cuts": [vars(cut).copy() for cut in entry.cuts],
        "notes": list(entry.notes),
        "not_shown": list(entry.not_shown),
    }


def _event_dict(event: Event) -> dict:
    run = event.run
    return {
        "at": event.at,
        "place": event.place,
        "organization": event.organization,
        "change": event.change,
        "label": event.label,
        "text": event.text,
        "attributes": list(event.attributes),
        "master_usn": event.master_usn,
        "source_usn": event.source_usn,
        "origin": event.origin,
        "display_name": event.display_name,
        "address": event.address,
        "detail": event.detail,
        "batch": event.batch,
        "run": None
        if run is None
        else {
            "id": run.pk,
            "trigger": run.trigger,
            "requested_by": run.requested_by.get_username() if run.requested_by else "",
            "status": run.status,
            "started_at": run.started_at,
        },
        "links": [{"label": link.label, "href": link.href} for link in event.links],
    }


def lookup_as_dict(lookup: Lookup) -> dict:
    return {
        "organization": lookup.organization.name,
        "query": lookup.query,
        "searched": lookup.searched,
        "more": lookup.more,
        "matches": [
            {
                "key": match.key,
                "origin": match.origin,
                "display_name": match.display_name,
                "address": match.address,
                "found_in": list(match.found_in),
            }
            for match in lookup.matches
        ],
        "history": as_dict(lookup.history) if lookup.history is not None else None,
    }
