"""Why is X (not) in this address book? (docs/protocol.md, rule 11: every such question has an
answer the product computes.)

For a name or an address asked in one organization, `explain()` finds the entries meant and
follows each along its way: the origin organization and container of its source recipient,
that origin's export scope, its entry at the master, this organization's requestor, its Import
Config, a conflict that holds it, and the contact here. Each step says what it found and, when
it keeps the entry out, what to change. What lives in another installation (a remote origin or
master) is "not visible from here", with what this side knows.

Searches are bounded (at most SEARCH_LIMIT rows per place) and each entry explained is then read
by its global key, its GUID or its organization: the number of queries does not grow with the
number of recipients.

Who may see what: `can_read(organization_id)` tells which organizations the asking user may
read. The search looks only there; a step showing another organization's data (the origin's
directory and scope, the master's database) is still computed, since the verdict needs it, but
shown as "not shown" to a user who cannot read that organization, and a verdict decided by
such a step does not say what it found. The steps of the organization asked about may use the
master's entry for a key it already holds a contact, conflict or filtered entry of (its master
USN and address): that is what the master's replies give it anyway.
"""

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from types import SimpleNamespace

from django.db.models import Q
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone

from console.status import master_of
from directory.constants import Kind
from directory.models import Organization, Recipient, Tombstone
from master.models import AllowedRequestor, GlobalEntry, MasterConfig
from requestor.importer import import_filter as left_out_by_import_config
from requestor.models import Conflict, FilteredEntry, RequestorConfig, Run
from requestor.scope import UNKNOWN_SCOPE, Scope
from transport import holds
from transport.constants import MessageKind
from transport.models import Hold

MAX_QUERY_LENGTH = 256
# Rows read per place searched, and matches listed; at most EXPLAINED matches are explained
# whole, more are listed for the user to pick one.
SEARCH_LIMIT = 20
EXPLAINED = 5

# A global key as the master makes it: the origin organization's name and the source GUID.
_KEY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,63}):([0-9A-Fa-f-]{32,36})$")

KIND_PLURALS = {
    Kind.MAILBOX: "mailboxes",
    Kind.DISTRIBUTION_LIST: "distribution lists",
    Kind.CUSTOM_RECIPIENT: "custom recipients",
}


class ExplainError(ValueError):
    """A question that cannot be asked as it is; the message says how to ask it."""


class Status:
    """What a step found, as far as the entry's way here is concerned."""

    OK = "ok"
    INFO = "info"
    WAITING = "waiting"  # on its way: a next cycle brings it
    BLOCKS = "blocks"  # keeps it out (and removes it at the next cycle if it is here)
    UNKNOWN = "unknown"  # in another installation: not visible from here
    NOT_SHOWN = "not_shown"  # the asking user may not read it

    LABELS = {
        OK: "ok",
        INFO: "note",
        WAITING: "on its way",
        BLOCKS: "keeps it out",
        UNKNOWN: "not visible from here",
        NOT_SHOWN: "not shown",
    }


class Verdict:
    HERE = "here"
    LEAVING = "leaving"  # here until the next cycle removes it
    NEXT_CYCLE = "next_cycle"
    NOT_HERE = "not_here"


@dataclass(frozen=True)
class Link:
    """A console page of a related object."""

    label: str
    view: str
    organization: str
    pk: int | None = None

    @property
    def href(self) -> str:
        kwargs = {"org": self.organization}
        if self.pk is not None:
            kwargs["pk"] = self.pk
        return reverse(f"console:{self.view}", kwargs=kwargs)


@dataclass
class Step:
    """One stop on the entry's way here: what was found, and what to change when it blocks."""

    key: str
    title: str
    status: str
    found: str
    fix: str = ""
    links: list[Link] = field(default_factory=list)
    facts: dict = field(default_factory=dict)
    # The organization whose data the step shows; None for the organization asked about.
    owner: int | None = None

    @property
    def label(self) -> str:
        return Status.LABELS[self.status]


@dataclass
class Outcome:
    """The verdict, and the step that decided it."""

    kind: str
    text: str
    reason: str = ""
    fix: str = ""
    step: str = ""


@dataclass
class Match:
    """One entry the question may mean, by its global key, with what is known of it here."""

    key: str
    origin: str
    display_name: str = ""
    address: str = ""
    found_in: list[str] = field(default_factory=list)
    own: Recipient | None = None  # a recipient of the organization asked about
    contact: Recipient | None = None  # its contact there
    source: Recipient | None = None  # the recipient in its (local) origin organization
    relays: list[Recipient] = field(default_factory=list)  # contacts of it elsewhere
    entry: GlobalEntry | None = None
    conflict: Conflict | None = None
    filtered: FilteredEntry | None = None

    @property
    def guid(self) -> uuid.UUID | None:
        try:
            return uuid.UUID(self.key.partition(":")[2])
        except ValueError:
            return None

    def seen(self, where: str) -> None:
        if where not in self.found_in:
            self.found_in.append(where)

    def describe(self, display_name: str, address: str) -> None:
        self.display_name = self.display_name or display_name
        self.address = self.address or address


@dataclass
class Trace:
    match: Match
    steps: list[Step]
    verdict: Outcome


@dataclass
class Explanation:
    """The answer: the matches (all of them, up to SEARCH_LIMIT) and the trace of each when
    there are at most EXPLAINED."""

    organization: Organization
    query: str
    searched: list[str]
    matches: list[Match]
    traces: list[Trace]
    more: bool = False  # more matches than listed

    @property
    def narrow(self) -> bool:
        """Too many matches to explain them all: the user picks one."""
        return len(self.matches) > len(self.traces)


@dataclass
class _Origin:
    """An origin organization of this installation, and what its requestor exports."""

    organization: Organization
    config: RequestorConfig | None
    scope: Scope | None


class _Here:
    """The organization asked about, its requestor and master, and what the explanation has
    read once for several steps or matches."""

    def __init__(self, organization: Organization, can_read: Callable[[int], bool]):
        self.organization = organization
        self.name = organization.name
        self.can_read = can_read
        self.config = RequestorConfig.objects.filter(organization=organization).first()
        self.master: MasterConfig | None = master_of(self.config) if self.config else None
        self.names = {organization.pk: organization.name}
        if self.master is not None:
            master_org = Organization.objects.get(pk=self.master.organization_id)
            self.names[master_org.pk] = master_org.name
        self._origins: dict[str, _Origin | None] = {}
        self._allowed: dict[str, AllowedRequestor | None] = {}
        self._holds: dict[str, Hold | None] = {}
        self._sends_here: dict[str, bool] = {}

    @property
    def master_name(self) -> str:
        return self.names[self.master.organization_id] if self.master else ""

    def origin(self, name: str) -> _Origin | None:
        key = name.lower()
        if key not in self._origins:
            organization = Organization.objects.filter(name__iexact=name).first()
            origin = None
            if organization is not None:
                self.names[organization.pk] = organization.name
                config = (
                    RequestorConfig.objects.filter(organization=organization)
                    .prefetch_related("exported_containers__container")
                    .first()
                )
                origin = _Origin(organization, config, Scope.of(config) if config else None)
            self._origins[key] = origin
        return self._origins[key]

    def allowed(self, name: str) -> AllowedRequestor | None:
        """The origin's requestor on this organization's master."""
        key = name.lower()
        if key not in self._allowed:
            self._allowed[key] = AllowedRequestor.objects.filter(
                master=self.master, organization_name__iexact=name
            ).first()
        return self._allowed[key]

    def held_at_master(self, name: str) -> Hold | None:
        """A batch of the origin's the master holds for an administrator."""
        key = name.lower()
        if key not in self._holds:
            allowed = self.allowed(name)
            self._holds[key] = (
                holds.pending(self.master.organization_id)
                .filter(sender__iexact=allowed.address)
                .order_by("held_at")
                .first()
                if allowed is not None
                else None
            )
        return self._holds[key]

    def sends_here(self, origin: _Origin) -> bool:
        """Whether the origin's requestor sends its exports to this organization's master."""
        key = origin.organization.name.lower()
        if key not in self._sends_here:
            master = master_of(origin.config)
            self._sends_here[key] = master is not None and master.pk == self.master.pk
        return self._sends_here[key]

    @cached_property
    def last_run(self) -> Run | None:
        return Run.objects.filter(config=self.config).first()

    @cached_property
    def held_reply(self) -> Hold | None:
        """A reply of the master this organization holds for its administrators."""
        return (
            holds.pending(self.organization.pk)
            .filter(kind=MessageKind.REPLY)
            .order_by("held_at")
            .first()
        )


def clean_query(text) -> str:
    """The question as asked, or ExplainError saying what is wrong with it."""
    text = str(text or "").strip()
    if not text:
        raise ExplainError("Give a primary SMTP address or (part of) a display name.")
    if "\x00" in text:
        raise ExplainError("The question may not contain NUL characters.")
    if len(text) > MAX_QUERY_LENGTH:
        raise ExplainError(f"Ask with at most {MAX_QUERY_LENGTH} characters.")
    return text


def explain(
    organization: Organization, query: str, can_read: Callable[[int], bool] | None = None
) -> Explanation:
    """Why the entries that `query` (an address, part of a display name, or a global key)
    names are, or are not, in `organization`'s address book."""
    here = _Here(organization, can_read or (lambda organization_id: True))
    found = _find(here, query)
    if len(found.matches) <= EXPLAINED:
        found.traces = [_trace(here, match) for match in found.matches]
    return found


def find(
    organization: Organization, query: str, can_read: Callable[[int], bool] | None = None
) -> Explanation:
    """The entries `query` names in `organization`, found as `explain` finds them, without
    tracing any (console.history follows the one meant through its history instead)."""
    return _find(_Here(organization, can_read or (lambda organization_id: True)), query)


def _find(here: _Here, query: str) -> Explanation:
    query = clean_query(query)
    matches, searched, more = _search(here, query)
    listed = list(matches.values())[:SEARCH_LIMIT]
    more = more or len(matches) > SEARCH_LIMIT
    return Explanation(here.organization, query, searched, listed, [], more)


def parse_key(text: str) -> str | None:
    """The global key `text` spells (origin organization and lowercased GUID), or None."""
    key = _KEY.match(text)
    return f"{key.group(1)}:{key.group(2).lower()}" if key else None


# --- Step 1: which entry is meant --------------------------------------------------------------


def _search(here: _Here, query: str) -> tuple[dict[str, Match], list[str], bool]:
    """The matches by global key, where the search looked, and whether a place had more."""
    matches: dict[str, Match] = {}
    key = parse_key(query)
    if key:
        return _by_key(here, key, key.partition(":")[0])
    address = query.lower() if "@" in query else None
    searched, more = [], False
    for place in (_search_here, _search_others, _search_master, _search_set_aside):
        where, full = place(here, matches, query, address)
        searched.extend(where)
        more = more or full
    return matches, searched, more


def _match(matches: dict[str, Match], key: str, origin: str) -> Match:
    if key not in matches:
        matches[key] = Match(key, origin)
    return matches[key]


def _wanted(query: str, address: str | None) -> Q:
    if address:
        # (organization, lower(primary SMTP)) is indexed: the uniqueness constraint.
        return Q(smtp=address)
    return Q(display_name__icontains=query)


def _recipients():
    return Recipient.objects.select_related("container", "organization").annotate(
        smtp=Lower("primary_smtp")
    )


def _search_here(here, matches, query, address) -> tuple[list[str], bool]:
    rows = list(
        _recipients()
        .filter(_wanted(query, address), organization=here.organization)
        .order_by("display_name", "pk")[: SEARCH_LIMIT + 1]
    )
    for recipient in rows[:SEARCH_LIMIT]:
        if recipient.is_imported:
            match = _match(matches, recipient.global_key, recipient.origin_organization)
            match.contact = recipient
            match.seen(f"contacts of {here.name}")
        else:
            match = _match(matches, f"{here.name}:{recipient.guid}", here.name)
            match.own = match.source = recipient
            match.seen(f"own recipients of {here.name}")
        match.describe(recipient.display_name, recipient.primary_smtp)
    return [f"the address book of {here.name}"], len(rows) > SEARCH_LIMIT


def _search_others(here, matches, query, address) -> tuple[list[str], bool]:
    """The directories of the other organizations of this installation the user may read."""
    others = [
        pk
        for pk in Organization.objects.exclude(pk=here.organization.pk).values_list("pk", flat=True)
        if here.can_read(pk)
    ]
    if not others:
        return [], False
    exported = _as_exported(others, query, address)
    rows = list(
        _recipients()
        .filter((Q(organization_id__in=others) & _wanted(query, address)) | exported)
        .order_by("display_name", "pk")[: SEARCH_LIMIT + 1]
    )
    for recipient in rows[:SEARCH_LIMIT]:
        name = recipient.organization.name
        here.names[recipient.organization_id] = name
        if recipient.is_imported:
            match = _match(matches, recipient.global_key, recipient.origin_organization)
            match.relays.append(recipient)
            match.seen(f"contacts of {name}")
        else:
            match = _match(matches, f"{name}:{recipient.guid}", name)
            match.source = recipient
            match.seen(f"directory of {name}")
        match.describe(recipient.display_name, recipient.primary_smtp)
    return ["the other organizations of this installation you can read"], len(rows) > SEARCH_LIMIT


def _as_exported(others: list[int], query: str, address: str | None) -> Q:
    """Recipients of those organizations whose exported form is what the user asked for: an
    address in the domain their requestor rewrites addresses to, a display name ending in the
    suffix it appends. Not a single one is exported yet when the user asks, perhaps."""
    wanted = Q(pk__in=[])
    transforms = RequestorConfig.objects.filter(organization_id__in=others).values_list(
        "organization_id", "append_display_name", "modify_smtp_domain"
    )
    for organization_id, suffix, domain in transforms:
        if address and domain and address.endswith(f"@{domain.lower()}"):
            local = address.rsplit("@", 1)[0]
            wanted |= Q(organization_id=organization_id, smtp__startswith=f"{local}@")
        suffix = suffix.strip().lower()
        if not address and suffix and query.lower().endswith(suffix):
            name = query[: -len(suffix)].strip()
            if name:
                wanted |= Q(organization_id=organization_id, display_name__icontains=name)
    # Only their own recipients: their contacts are never exported in any form.
    return wanted & Q(global_key__isnull=True)


def _search_master(here, matches, query, address) -> tuple[list[str], bool]:
    if here.master is None or not here.can_read(here.master.organization_id):
        return [], False
    entries = GlobalEntry.objects.filter(master=here.master)
    if address:
        entries = entries.filter(attrs__primary_smtp__iexact=address)
    else:
        entries = entries.filter(attrs__display_name__icontains=query)
    rows = list(entries.order_by("global_key")[: SEARCH_LIMIT + 1])
    for entry in rows[:SEARCH_LIMIT]:
        match = _match(matches, entry.global_key, entry.origin)
        match.entry = entry
        match.seen(f"entries of the master ({here.master_name})")
        match.describe(entry.attrs.get("display_name", ""), entry.attrs.get("primary_smtp", ""))
    return [f"the entries of the master ({here.master_name})"], len(rows) > SEARCH_LIMIT


def _search_set_aside(here, matches, query, address) -> tuple[list[str], bool]:
    """The master's entries this organization set aside: conflicts and filtered entries."""
    if here.config is None:
        return [], False
    if address:
        conflicts = Conflict.objects.filter(config=here.config, address__iexact=address)
    else:
        conflicts = Conflict.objects.filter(config=here.config, display_name__icontains=query)
    rows = list(conflicts.order_by("global_key")[: SEARCH_LIMIT + 1])
    filtered = []
    if address:
        filtered = list(
            FilteredEntry.objects.filter(config=here.config, address__iexact=address).order_by(
                "global_key"
            )[: SEARCH_LIMIT + 1]
        )
    for conflict in rows[:SEARCH_LIMIT]:
        match = _match(matches, conflict.global_key, conflict.origin)
        match.conflict = conflict
        match.seen(f"conflicts of {here.name}")
        match.describe(conflict.display_name, conflict.address)
    for entry in filtered[:SEARCH_LIMIT]:
        match = _match(matches, entry.global_key, entry.origin)
        match.filtered = entry
        match.seen(f"entries {here.name} does not import")
        match.describe("", entry.address)
    where = [f"the conflicts and filtered entries of {here.name}"]
    return where, len(rows) > SEARCH_LIMIT or len(filtered) > SEARCH_LIMIT


def _by_key(here: _Here, key: str, origin: str) -> tuple[dict[str, Match], list[str], bool]:
    """A global key asked for: found only where the user may read it."""
    match = Match(key, origin)
    _complete(here, match)
    if match.contact is not None:
        match.seen(f"contacts of {here.name}")
        match.describe(match.contact.display_name, match.contact.primary_smtp)
    if match.own is not None:
        match.seen(f"own recipients of {here.name}")
    elif match.source is not None and here.can_read(match.source.organization_id):
        match.seen(f"directory of {here.names[match.source.organization_id]}")
    if match.source is not None and (match.own or here.can_read(match.source.organization_id)):
        match.describe(match.source.display_name, match.source.primary_smtp)
    if match.entry is not None and here.can_read(here.master.organization_id):
        match.seen(f"entries of the master ({here.master_name})")
        match.describe(
            match.entry.attrs.get("display_name", ""), match.entry.attrs.get("primary_smtp", "")
        )
    if match.conflict is not None:
        match.seen(f"conflicts of {here.name}")
        match.describe(match.conflict.display_name, match.conflict.address)
    if match.filtered is not None:
        match.seen(f"entries {here.name} does not import")
        match.describe("", match.filtered.address)
    searched = [f"the global key {key}"]
    return ({key: match} if match.found_in else {}), searched, False


def _complete(here: _Here, match: Match) -> None:
    """Read what the search did not bring of this entry, each by an indexed key."""
    key, organization = match.key, here.organization
    if match.contact is None:
        match.contact = (
            Recipient.objects.select_related("container")
            .filter(organization=organization, global_key=key)
            .first()
        )
    origin = here.origin(match.origin)
    guid = match.guid
    if match.source is None and origin is not None and guid is not None:
        match.source = (
            Recipient.objects.select_related("container", "organization")
            .filter(organization=origin.organization, guid=guid, global_key__isnull=True)
            .first()
        )
    if match.source is not None and match.source.organization_id == organization.pk:
        match.own = match.source
    if match.entry is None and here.master is not None:
        match.entry = GlobalEntry.objects.filter(master=here.master, global_key=key).first()
    if here.config is not None:
        if match.conflict is None:
            match.conflict = (
                Conflict.objects.select_related("local_recipient")
                .filter(config=here.config, global_key=key)
                .first()
            )
        if match.filtered is None:
            match.filtered = FilteredEntry.objects.filter(
                config=here.config, global_key=key
            ).first()


# --- The trace ---------------------------------------------------------------------------------


def _trace(here: _Here, match: Match) -> Trace:
    _complete(here, match)
    origin = here.origin(match.origin)
    steps = [_step_entry(match), _step_origin(here, match, origin)]
    if match.own is not None:
        steps.append(_own_scope(_step_scope(here, match, origin)))
        verdict = Outcome(
            Verdict.HERE,
            "Is here.",
            f"It is one of {here.name}'s own recipients, not an imported contact.",
        )
        return _redact(here, Trace(match, steps, verdict))
    # A contact hidden for its grace period is known, but not in the address book.
    present = match.contact is not None and match.contact.hidden_at is None
    scope = _step_scope(here, match, origin)
    steps += [
        scope,
        _step_master(here, match, origin, scope),
        _step_requestor(here, match, present),
        _step_import(here, match, origin, present),
        _step_conflict(here, match, origin, present),
        _step_contact(here, match),
    ]
    return _redact(here, Trace(match, steps, _verdict(here, steps, present)))


def _when(moment: datetime | None) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else "never"


def _step_entry(match: Match) -> Step:
    name = match.display_name or "(no display name known here)"
    address = f" <{match.address}>" if match.address else ""
    return Step(
        "entry",
        "Which entry",
        Status.OK,
        f"{name}{address}, from {match.origin} (global key {match.key}); found in "
        f"{', '.join(match.found_in)}.",
        facts={
            "key": match.key,
            "origin": match.origin,
            "display_name": match.display_name,
            "address": match.address,
            "found_in": list(match.found_in),
        },
    )


# --- Step 2: the origin organization and container ---------------------------------------------


def _step_origin(here: _Here, match: Match, origin: _Origin | None) -> Step:
    title = f"Origin: {match.origin}"
    if origin is None:
        return Step(
            "origin",
            title,
            Status.UNKNOWN,
            f"{match.origin} is not an organization of this installation: its directory is "
            "not visible from here.",
            facts={"organization": match.origin, "local": False},
        )
    name, owner = origin.organization.name, origin.organization.pk
    source = match.source
    if source is not None:
        return Step(
            "origin",
            title,
            Status.OK,
            f"{source.get_kind_display()} {source.display_name} <{source.primary_smtp}> in "
            f"{source.container.dn}, trust level {source.trust_level}.",
            links=[
                Link(f"{source.display_name} in {name}", "recipient", name, source.pk),
                Link(source.container.dn, "container", name, source.container_id),
            ],
            facts={
                "organization": name,
                "local": True,
                "recipient": source.pk,
                "container": source.container.dn,
                "kind": source.kind,
                "trust_level": source.trust_level,
                "hidden_from_others": source.hidden_from_others,
                "usn": source.usn,
            },
            owner=owner,
        )
    tombstone = (
        Tombstone.objects.filter(organization=origin.organization, guid=match.guid)
        .order_by("-usn")
        .first()
        if match.guid
        else None
    )
    if tombstone is not None:
        return Step(
            "origin",
            title,
            Status.BLOCKS,
            f"It was deleted in {name} on {_when(tombstone.deleted_at)} (local USN "
            f"{tombstone.usn}).",
            fix=f"Only {name} can bring it back: create it there again (it then is a new "
            "entry, with a new global key).",
            facts={"organization": name, "local": True, "deleted": True, "usn": tombstone.usn},
            owner=owner,
        )
    return Step(
        "origin",
        title,
        Status.BLOCKS,
        f"{name} holds no recipient with the GUID {match.guid}.",
        fix=f"It is gone from {name}; only {name} can create it again.",
        facts={"organization": name, "local": True, "deleted": None},
        owner=owner,
    )


# --- Step 3: the origin's export scope ---------------------------------------------------------


def _step_scope(here: _Here, match: Match, origin: _Origin | None) -> Step:
    title = f"Export scope of {match.origin}"
    if origin is None:
        return _scope_elsewhere(here, match, title)
    name, owner = origin.organization.name, origin.organization.pk
    source = match.source
    if source is None:
        return Step(
            "scope",
            title,
            Status.INFO,
            f"Nothing to export: {name} no longer holds it.",
            owner=owner,
        )
    config = origin.config
    if config is None:
        return Step(
            "scope",
            title,
            Status.BLOCKS,
            f"{name} runs no requestor: it exports nothing.",
            fix=f"Set up the requestor of {name}.",
            links=[Link(f"Requestor setup of {name}", "requestor-setup", name)],
            owner=owner,
        )
    scope = origin.scope
    kinds = scope.kinds.get(source.container_id, set())
    facts = {
        "in_scope": scope.includes(
            source.kind, source.container_id, source.trust_level, hidden=source.hidden_from_others
        ),
        "kinds_exported": [kind for kind in Kind.values if kind in kinds],
        "kind": source.kind,
        "trust_level": source.trust_level,
        "threshold": scope.trust_level,
        "hidden_from_others": source.hidden_from_others,
        "usn": source.usn,
        "requestor_usn": config.requestor_usn,
        "enabled": config.enabled,
    }
    links = [Link(f"Export Config of {name}", "export-config", name)]
    if not facts["in_scope"]:
        found, fix = _out_of_scope(name, source, scope, kinds, config)
        return Step("scope", title, Status.BLOCKS, found, fix, links, facts, owner)
    if source.usn > config.requestor_usn or _entered_scope(config, scope, source):
        if not config.enabled:
            return Step(
                "scope",
                title,
                Status.BLOCKS,
                f"It is in the export scope, but its change is not exported yet (local USN "
                f"{source.usn}, requestor USN {config.requestor_usn}) and the requestor of "
                f"{name} is disabled: its scheduled cycles do not run.",
                f"Enable the requestor on the Export Config page of {name}.",
                links,
                facts,
                owner,
            )
        return Step(
            "scope",
            title,
            Status.WAITING,
            f"It is in the export scope, but not exported yet: changed at local USN "
            f"{source.usn}, after what {name} has exported (requestor USN "
            f"{config.requestor_usn}). The next cycle of {name} exports it.",
            f"Nothing to change: wait for the next cycle of {name}, or use Execute Now there.",
            links,
            facts,
            owner,
        )
    return Step(
        "scope",
        title,
        Status.OK,
        f"In the export scope of {name} ({KIND_PLURALS[source.kind]} of its container are "
        f"exported, trust level {source.trust_level} ≤ {scope.trust_level}) and exported: "
        f"local USN {source.usn} ≤ requestor USN {config.requestor_usn}.",
        links=links,
        facts=facts,
        owner=owner,
    )


def _own_scope(step: Step) -> Step:
    """For an organization's own recipient, its export scope says only whether the others get
    it: that keeps nothing out of this address book."""
    if step.status in (Status.BLOCKS, Status.WAITING):
        step.found = f"The other organizations do not get it (yet): {step.found}"
    else:
        step.found = f"The other organizations get it: {step.found}"
    step.title = f"{step.title} (what the others get)"
    step.status = Status.INFO
    return step


def _out_of_scope(name: str, source: Recipient, scope: Scope, kinds: set, config) -> tuple:
    """Why a recipient is outside its organization's export scope, and what to change."""
    where = f"on the Export Config page of {name}"
    if source.hidden_from_others:
        return (
            "It is marked hidden from other organizations: it is never exported.",
            f"Clear 'hidden from other organizations' on the recipient in {name}.",
        )
    if not kinds:
        return (
            f"Its container {source.container.dn} is not exported, nor is any container above it.",
            f"Add {source.container.dn} (or a container above it) to the exported containers "
            f"{where}.",
        )
    if source.kind not in kinds:
        covering = [
            row.container.dn
            for row in config.exported_containers.all()
            if source.container.is_within(row.container)
        ]
        exported = ", ".join(KIND_PLURALS[kind] for kind in Kind.values if kind in kinds)
        return (
            f"It is a {source.get_kind_display().lower()}, but only {exported} are exported "
            f"from {', '.join(covering) or source.container.dn}.",
            f"Check {KIND_PLURALS[source.kind]} for that container {where}.",
        )
    if source.trust_level > scope.trust_level:
        return (
            f"Its trust level {source.trust_level} is above the trust level {name} exports "
            f"({scope.trust_level}).",
            f"Lower the recipient's trust level to {scope.trust_level} or less, or raise the "
            f"trust level {where} to {source.trust_level}.",
        )
    return (f"It is outside the export scope of {name}.", f"Check the exported containers {where}.")


def _entered_scope(config: RequestorConfig, scope: Scope, source: Recipient) -> bool:
    """Whether the recipient entered the scope since the last export (which then restates it,
    requestor.scope.restate_scope_changes)."""
    previous = config.exported_scope
    if not previous or previous == UNKNOWN_SCOPE or previous == scope.definition():
        return False
    try:
        before = Scope.from_definition(previous)
    except (KeyError, TypeError, ValueError, AttributeError):
        return False
    return not before.includes(
        source.kind, source.container_id, source.trust_level, hidden=source.hidden_from_others
    )


def _scope_elsewhere(here: _Here, match: Match, title: str) -> Step:
    """The origin is not in this installation; an organization here may hold it only as an
    imported contact, which is never exported again (docs/protocol.md, rule 7)."""
    live = match.entry is not None and not match.entry.deleted and match.entry.usn > 0
    relay = next((r for r in match.relays if here.can_read(r.organization_id)), None)
    if relay is not None and not live:
        name = relay.organization.name
        return Step(
            "scope",
            title,
            Status.BLOCKS,
            f"{name} holds it only as a contact imported from {match.origin} "
            f"({relay.display_name} <{relay.primary_smtp}>), and imported contacts are never "
            "exported again: that would loop.",
            fix=f"It can reach {here.name} only from {match.origin} itself: {match.origin}'s "
            f"requestor must export it to a master that {here.name} imports from.",
            links=[Link(f"{relay.display_name} in {name}", "recipient", name, relay.pk)],
            facts={"relayed_by": name, "imported_contact": True},
            owner=relay.organization_id,
        )
    return Step(
        "scope",
        title,
        Status.UNKNOWN,
        f"{match.origin} is not an organization of this installation: its export scope is "
        "not visible from here.",
        facts={"local": False},
    )


# --- Step 4: its entry at the master -----------------------------------------------------------


def _step_master(here: _Here, match: Match, origin: _Origin | None, scope: Step) -> Step:
    config = here.config
    if config is None:
        return Step("master", "At the master", Status.INFO, f"{here.name} has no master.")
    if here.master is None:
        return Step(
            "master",
            "At the master",
            Status.UNKNOWN,
            f"The master of {here.name} ({config.master_address}) is in another "
            f"installation: its entries are not visible from here. {here.name} has applied "
            f"its changes up to master USN {config.master_usn}.",
            facts={"local": False, "applied_master_usn": config.master_usn},
        )
    master_name = here.master_name
    title = f"At the master ({master_name})"
    owner = here.master.organization_id
    entry = match.entry
    live = entry is not None and not entry.deleted and entry.usn > 0
    facts = {"local": True, "master": master_name, "master_usn": here.master.usn}
    if entry is not None:
        facts.update(
            entry_usn=entry.usn,
            deleted=entry.deleted,
            changed_at=entry.changed_at,
            origin=entry.origin,
            source_usn=entry.source_usn,
        )
    held = _held_at_master(here, match, origin)
    if held is not None:
        facts["held"] = held[0]
    links = [Link(f"Held batches of {master_name}", "held", master_name)]
    if live:
        note = f" Later changes wait: {held[0]}" if held is not None else ""
        return Step(
            "master",
            title,
            Status.OK,
            f"The master holds it at master USN {entry.usn} (changed {_when(entry.changed_at)}, "
            f"source USN {entry.source_usn}).{note}",
            links=links if held is not None else [],
            facts=facts,
            owner=owner,
        )
    if entry is not None and entry.deleted and entry.usn > 0:
        waiting = scope.status == Status.WAITING
        return Step(
            "master",
            title,
            Status.INFO if waiting else Status.BLOCKS,
            f"The master holds a tombstone: {match.origin} exported a delete, recorded at master "
            f"USN {entry.usn} ({_when(entry.changed_at)})."
            + (f" The next export of {match.origin} replaces it." if waiting else ""),
            fix=""
            if waiting
            else f"It comes back only when {match.origin} exports it again (see the steps above).",
            facts=facts,
            owner=owner,
        )
    if held is not None:
        return Step("master", title, Status.BLOCKS, held[0], held[1], links, facts, owner)
    missing = _missing_at_master(here, match, origin, scope)
    if missing is not None:
        return Step("master", title, Status.BLOCKS, *missing, facts=facts, owner=owner)
    return Step(
        "master",
        title,
        Status.INFO,
        "The master holds no entry for it"
        + (" yet." if scope.status == Status.WAITING else ": it is not exported."),
        facts=facts,
        owner=owner,
    )


def _held_at_master(here: _Here, match: Match, origin: _Origin | None) -> tuple | None:
    """(what, fix) when the master keeps the origin's exports: quarantined, or a held batch."""
    hold = here.held_at_master(match.origin)
    where = f"the Held batches page of {here.master_name}"
    if hold is not None:
        return (
            f"A batch of {hold.peer} is held at the master for an administrator since "
            f"{_when(hold.held_at)}: {hold.reason}",
            f"Approve or reject it on {where}.",
        )
    allowed = here.allowed(match.origin)
    if allowed is not None and allowed.quarantined:
        return (
            f"{allowed.organization_name} is quarantined on the master since "
            f"{_when(allowed.quarantined_at)} ({allowed.quarantine_reason}): its exports are "
            "kept, not applied.",
            f"Release it on {where}.",
        )
    return None


def _missing_at_master(here: _Here, match: Match, origin, scope: Step) -> tuple | None:
    """(what, fix, links) when the master has no entry although nothing before it explains
    why; None when an earlier step does."""
    master_name = here.master_name
    config_link = [Link(f"Master Configuration of {master_name}", "master-config", master_name)]
    if origin is not None and origin.config is not None:
        allowed = here.allowed(match.origin)
        if not here.sends_here(origin):
            return (
                f"{match.origin} sends its exports to another master "
                f"({origin.config.master_address}), not to {master_name}.",
                f"Point the master address of {match.origin}'s Import Config at {master_name}.",
                [],
            )
        if allowed is None:
            return (
                f"{match.origin} is not among the requestors {master_name} accepts exports from.",
                f"Add its requestor to the requestor addresses on the Master Configuration "
                f"page of {master_name}.",
                config_link,
            )
        if not allowed.enabled:
            return (
                f"The requestor of {match.origin} is disabled on the master.",
                f"Enable it on the Master Configuration page of {master_name}.",
                config_link,
            )
    if scope.status in (Status.WAITING, Status.BLOCKS, Status.INFO):
        return None
    if origin is None:
        return (
            f"The master holds no entry for it: {match.origin} has not exported it.",
            f"Ask the administrators of {match.origin}.",
            [],
        )
    return (
        f"The master holds no entry for it, although {match.origin} exported it.",
        f"Run manage.py verify {match.origin} --full; Export All Recipients at "
        f"{match.origin} sends everything again.",
        [],
    )


# --- Step 5: this organization's requestor -----------------------------------------------------


def _step_requestor(here: _Here, match: Match, present: bool) -> Step:
    title = f"Requestor of {here.name}"
    config, name = here.config, here.name
    if config is None:
        return Step(
            "requestor",
            title,
            Status.BLOCKS,
            f"{name} runs no requestor: it imports nothing.",
            fix=f"Set up the requestor of {name}.",
            links=[Link("Requestor setup", "requestor-setup", name)],
        )
    run = here.last_run
    facts = {
        "enabled": config.enabled,
        "master_usn": config.master_usn,
        "last_run": None
        if run is None
        else {"id": run.pk, "status": run.status, "started_at": run.started_at, "error": run.error},
    }
    if here.master is not None:
        facts["lag"] = max(0, here.master.usn - config.master_usn)
    links = [Link(f"Run {run.pk}", "run", name, run.pk)] if run is not None else []
    last = (
        f" Last run: {_when(run.started_at)}, {run.get_status_display().lower()}."
        if run
        else " It never ran."
    )
    entry = match.entry
    news = entry is not None and entry.usn > config.master_usn
    arriving = news and not entry.deleted
    if not config.enabled and (arriving or not present):
        return Step(
            "requestor",
            title,
            Status.BLOCKS,
            f"The requestor of {name} is disabled: its scheduled cycles do not run.{last}",
            f"Enable it on the Export Config page of {name}.",
            [Link(f"Export Config of {name}", "export-config", name), *links],
            facts,
        )
    held = here.held_reply
    if held is not None:
        facts["held_reply"] = held.reason
        if arriving or not present:
            return Step(
                "requestor",
                title,
                Status.BLOCKS,
                f"A reply of the master is held for the administrators of {name} since "
                f"{_when(held.held_at)}: {held.reason}",
                f"Approve or reject it on the Held batches page of {name}.",
                [Link(f"Held batches of {name}", "held", name), *links],
                facts,
            )
    if config.import_container_id is None:
        return Step(
            "requestor",
            title,
            Status.BLOCKS,
            f"{name} has no container for importing: it imports nothing.",
            f"Choose one on the Import Config page of {name}.",
            [Link(f"Import Config of {name}", "import-config", name)],
            facts,
        )
    if arriving:
        lag = f" (lag {facts['lag']})" if "lag" in facts else ""
        return Step(
            "requestor",
            title,
            Status.WAITING,
            f"{name} has applied the master's changes up to master USN {config.master_usn}"
            f"{lag}; this entry is at {entry.usn}. The next cycle of {name} brings it.{last}",
            f"Nothing to change: wait for the next cycle of {name}, or use Execute Now.",
            links,
            facts,
        )
    removal = " The next cycle removes its contact." if news and present else ""
    return Step(
        "requestor",
        title,
        Status.OK,
        f"{name} has applied the master's changes up to master USN {config.master_usn}."
        f"{removal}{last}",
        links=links,
        facts=facts,
    )


# --- Step 6: this organization's Import Config -------------------------------------------------


def _address(match: Match, origin: _Origin | None) -> str:
    """The primary SMTP address the entry has, or would have, at the master."""
    entry = match.entry
    if entry is not None and not entry.deleted and entry.attrs.get("primary_smtp"):
        return entry.attrs["primary_smtp"].lower()
    for known in (match.filtered, match.conflict):
        if known is not None and known.address:
            return known.address.lower()
    if match.contact is not None:
        return match.contact.primary_smtp.lower()
    source = match.source
    if source is not None:
        smtp = source.primary_smtp.lower()
        domain = origin.scope.modify_smtp_domain if origin and origin.scope else ""
        if domain and "@" in smtp:
            smtp = f"{smtp.rsplit('@', 1)[0]}@{domain.lower()}"
        return smtp
    return match.address.lower()


def _step_import(here: _Here, match: Match, origin, present: bool) -> Step:
    config, name = here.config, here.name
    title = f"Import Config of {name}"
    if config is None:
        return Step("import", title, Status.INFO, f"{name} imports nothing.")
    address = _address(match, origin)
    domains = config.domains()
    excluded_addresses, excluded_organizations = config.excluded()
    links = [Link(f"Import Config of {name}", "import-config", name)]
    facts = {
        "address": address,
        "domains": domains,
        "excluded_address": address in excluded_addresses,
        "excluded_organization": match.origin.lower() in excluded_organizations,
    }
    if match.filtered is not None:
        facts["filtered"] = {
            "reason": match.filtered.reason,
            "master_usn": match.filtered.master_usn,
        }
    entry = SimpleNamespace(attrs={"primary_smtp": address}, origin=match.origin)
    reason = left_out_by_import_config(entry, domains, (excluded_addresses, excluded_organizations))
    removal = " Its contact goes at the next cycle." if present and reason else ""
    if reason == FilteredEntry.Reason.ORGANIZATION:
        return Step(
            "import",
            title,
            Status.BLOCKS,
            f"{name} never imports entries of {match.origin}: it is among the organizations "
            f"never to import.{removal}",
            f"Remove {match.origin} from 'organizations never to import' on the Import Config "
            f"page of {name}.",
            links,
            facts,
        )
    if reason == FilteredEntry.Reason.ADDRESS:
        return Step(
            "import",
            title,
            Status.BLOCKS,
            f"{address} is among the addresses {name} never imports.{removal}",
            f"Remove it from 'addresses never to import' on the Import Config page of {name}.",
            links,
            facts,
        )
    if reason == FilteredEntry.Reason.DOMAIN:
        domain = address.rpartition("@")[2]
        return Step(
            "import",
            title,
            Status.BLOCKS,
            f"Its domain {domain} is not among the domains {name} imports "
            f"({', '.join(domains) or 'none'}).{removal}",
            f"Add {domain} to 'domains to import', or check 'Import all', on the Import Config "
            f"page of {name}.",
            links,
            facts,
        )
    if match.filtered is not None:
        return Step(
            "import",
            title,
            Status.WAITING,
            f"It was left out ({match.filtered.get_reason_display()}), but the Import Config "
            f"lets it in now: the next cycle of {name} asks for a full reply and imports it.",
            f"Nothing to change: wait for the next cycle of {name}.",
            links,
            facts,
        )
    shown = "all domains" if domains is None else f"the domains {', '.join(domains)}"
    return Step(
        "import",
        title,
        Status.OK,
        f"Let in: {name} imports {shown}, and neither {address or 'its address'} nor "
        f"{match.origin} is excluded.",
        links=links,
        facts=facts,
    )


# --- Step 7: a conflict that holds it ----------------------------------------------------------


def _step_conflict(here: _Here, match: Match, origin, present: bool) -> Step:
    config, name = here.config, here.name
    title = "Conflict"
    if config is None:
        return Step("conflict", title, Status.INFO, f"{name} imports nothing.")
    conflict = match.conflict
    links = [Link(f"Conflicts of {name}", "conflicts", name)]
    if conflict is not None:
        holder = conflict.local_recipient
        if holder is not None:
            links.insert(0, Link(f"{holder.display_name} in {name}", "recipient", name, holder.pk))
        return Step(
            "conflict",
            title,
            Status.BLOCKS,
            f"It is held as a conflict since {_when(conflict.first_seen)}: {conflict.reason}",
            _conflict_fix(name, match.origin, conflict.address, holder),
            links,
            {"address": conflict.address, "local_recipient": holder.pk if holder else None},
        )
    address = _address(match, origin)
    if not present and address:
        holder = (
            Recipient.objects.filter(organization=here.organization)
            .annotate(smtp=Lower("primary_smtp"))
            .filter(smtp=address)
            .exclude(global_key=match.key)
            .first()
        )
        if holder is not None:
            links.insert(0, Link(f"{holder.display_name} in {name}", "recipient", name, holder.pk))
            return Step(
                "conflict",
                title,
                Status.BLOCKS,
                f"Its address {address} belongs to {holder.display_name} in {name}: it will be "
                "held as a conflict, not imported.",
                _conflict_fix(name, match.origin, address, holder),
                links,
                {"address": address, "local_recipient": holder.pk},
            )
    return Step("conflict", title, Status.OK, "No conflict holds it.")


def _conflict_fix(name: str, origin: str, address: str, holder: Recipient | None) -> str:
    who = holder.display_name if holder is not None else "the recipient that has it"
    return (
        f"Change the primary SMTP address of {who} in {name}, or have {origin} change "
        f"{address}; the entry is imported by itself once the address is free."
    )


# --- Step 8: the contact here ------------------------------------------------------------------


def _step_contact(here: _Here, match: Match) -> Step:
    name, contact = here.name, match.contact
    title = f"Contact in {name}"
    if contact is None:
        return Step(
            "contact",
            title,
            Status.INFO,
            f"{name} holds no contact for it.",
            facts={"present": False},
        )
    if contact.hidden_at is not None:
        return _hidden_contact(here, contact, title)
    entry = match.entry
    facts = {
        "present": True,
        "recipient": contact.pk,
        "container": contact.container.dn,
        "master_usn": contact.master_usn,
        "in_import_container": contact.container_id == here.config.import_container_id
        if here.config
        else False,
    }
    state = ""
    if entry is not None and here.can_read(here.master.organization_id):
        facts["up_to_date"] = not entry.deleted and entry.usn == contact.master_usn
        state = (
            " Up to date with the master."
            if facts["up_to_date"]
            else f" The master's entry is at master USN {entry.usn}."
        )
    return Step(
        "contact",
        title,
        Status.OK,
        f"Contact {contact.display_name} <{contact.primary_smtp}> in {contact.container.dn}, "
        f"written at master USN {contact.master_usn}, changed {_when(contact.changed_at)}."
        f"{state}",
        links=[
            Link(contact.display_name, "recipient", name, contact.pk),
            Link(contact.container.dn, "container", name, contact.container_id),
        ],
        facts=facts,
    )


def _hidden_contact(here: _Here, contact, title: str) -> Step:
    """A contact hidden for the grace period of the Import Config: out of the address book,
    kept to come back as the same contact if its entry does."""
    days = here.config.grace_days if here.config else 0
    until = contact.hidden_at + timedelta(days=days)
    return Step(
        "contact",
        title,
        Status.INFO,
        f"Contact {contact.display_name} <{contact.primary_smtp}> is hidden since "
        f"{_when(contact.hidden_at)}: its entry was deleted or left this address book. It is "
        f"removed for good after {_when(until)} (a grace period of {days} days), unless its "
        "entry comes back before: then the same contact is shown again.",
        links=[Link(contact.display_name, "recipient", here.name, contact.pk)],
        facts={
            "present": False,
            "hidden": True,
            "recipient": contact.pk,
            "removed_after": until.isoformat(),
        },
    )


# --- Step 9: the verdict -----------------------------------------------------------------------


def _verdict(here: _Here, steps: list[Step], present: bool) -> Outcome:
    blocking = next((step for step in steps if step.status == Status.BLOCKS), None)
    waiting = next((step for step in steps if step.status == Status.WAITING), None)
    if present:
        if blocking is not None:
            return _decided(Verdict.LEAVING, "Is here until the next cycle removes it.", blocking)
        if waiting is not None:
            return _decided(
                Verdict.HERE, "Is here; a newer version arrives with the next cycle.", waiting
            )
        return Outcome(Verdict.HERE, "Is here.", "Its contact is in this address book.")
    if blocking is not None:
        return _decided(Verdict.NOT_HERE, "Is not here.", blocking)
    if waiting is not None:
        return _decided(Verdict.NEXT_CYCLE, "Will arrive at the next cycle.", waiting)
    unknown = next((step for step in steps if step.status == Status.UNKNOWN), None)
    if unknown is not None:
        return _decided(
            Verdict.NOT_HERE, "Is not here; what keeps it out is not visible from here.", unknown
        )
    return Outcome(
        Verdict.NOT_HERE,
        "Is not here, although nothing keeps it out.",
        "This organization's copy differs from its master's.",
        f"Run manage.py verify {here.name} --full; Import All Recipients on the Export Config "
        "page repairs it.",
    )


def _decided(kind: str, text: str, step: Step) -> Outcome:
    return Outcome(kind, text, step.found, step.fix, step.key)


def _redact(here: _Here, trace: Trace) -> Trace:
    """Steps about an organization the user cannot read say only that."""
    hidden = {}
    for index, step in enumerate(trace.steps):
        if step.owner is None or here.can_read(step.owner):
            continue
        name = here.names.get(step.owner, "another organization")
        hidden[step.key] = name
        trace.steps[index] = Step(
            step.key,
            step.title,
            Status.NOT_SHOWN,
            f"Not shown: you cannot read {name}.",
            owner=step.owner,
        )
    verdict = trace.verdict
    if verdict.step in hidden:
        verdict.reason = (
            f"The reason lies with {hidden[verdict.step]}, which you cannot read: its "
            "administrators can explain it."
        )
        verdict.fix = ""
    return trace


def as_dict(explanation: Explanation) -> dict:
    """The explanation as JSON-ready data (the API's answer)."""
    return {
        "organization": explanation.organization.name,
        "query": explanation.query,
        "searched": explanation.searched,
        "more": explanation.more,
        "matches": [_match_dict(match) for match in explanation.matches],
        "traces": [
            {
                "match": _match_dict(trace.match),
                "steps": [_step_dict(step) for step in trace.steps],
                "verdict": vars(trace.verdict).copy(),
            }
            for trace in explanation.traces
        ],
    }


def _match_dict(match: Match) -> dict:
    return {
        "key": match.key,
        "origin": match.origin,
        "display_name": match.display_name,
        "address": match.address,
        "found_in": list(match.found_in),
    }


def _step_dict(step: Step) -> dict:
    return {
        "step": step.key,
        "title": step.title,
        "status": step.status,
        "found": step.found,
        "fix": step.fix,
        "links": [{"label": link.label, "href": link.href} for link in step.links],
        "facts": step.facts,
    }


def find_organization(name: str) -> Organization | None:
    """The organization of this installation called `name` (in another case if no name is
    exactly that)."""
    if not name or "\x00" in name or len(name) > 64:
        return None
    exact = Organization.objects.filter(name=name).first()
    return exact or Organization.objects.filter(name__iexact=name).order_by("pk").first()
