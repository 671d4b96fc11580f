"""Import: apply the master's reply to the organization's contacts (protocol rules 5, 6, 8).

Runs inside the inbox's transaction for one reply part with the requestor's row locked; the part
is applied whole or not at all. The number of queries does not depend on the number of entries.
Every entry of the master ends up as exactly one of: a contact, a conflict (its address is
taken here; imported by itself once the address is free), a filtered entry (its domain is not
imported), or nothing (deleted). The last part of a reply checks that this adds up to what the
master holds (requestor.verify).
"""

import hashlib
import re
from dataclasses import dataclass, field
from operator import itemgetter

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models.functions import Lower
from django.utils import timezone

from directory import backends, changes
from directory.bulk import SEPARATOR, OneOf, copy_insert, update_objects
from directory.constants import GENERAL_ATTRIBUTES, Kind
from directory.models import Recipient, allocate_usns, smtp_validator
from requestor import verify
from requestor.constants import RunStatus
from requestor.models import Conflict, FilteredEntry, ImportedChange, RequestorConfig, Run
from transport import holds, inbox, wire
from transport.constants import Direction, Op, Status
from transport.digest import Tally
from transport.exceptions import MessageDeferred, MessageRejected
from transport.models import Message
from transport.registry import at_address

# What the import writes on a contact, and where the alias and SMTP address sit among them.
CONTACT_VALUES = [
    *GENERAL_ATTRIBUTES,
    "kind",
    "container_id",
    "target_address",
    "origin_organization",
    "master_usn",
    "usn",
]
CONTACT_FIELDS = [*CONTACT_VALUES, "changed_at", "hidden_at"]
ALIAS_INDEX = CONTACT_VALUES.index("alias")
SMTP_INDEX = CONTACT_VALUES.index("primary_smtp")
LOG_FIELDS = [
    "organization_id",
    "global_key",
    "origin",
    "op",
    "master_usn",
    "display_name",
    "primary_smtp",
    "detail",
]
SYNC_FIELDS = [
    "master_usn",
    "master_epoch",
    "master_fingerprint",
    "requestor_usn",
    "full_reply_pending",
    "full_reply_requested_at",
    "full_reply_batch",
    "set_aside_digest",
    "set_aside_count",
]


@dataclass
class Counts:
    imported: int = 0
    updated: int = 0
    deleted: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    filtered: list[FilteredEntry] = field(default_factory=list)
    # Contacts whose address a change replaces (the import guard counts them with removals: a
    # wrong SMTP rewrite at the origin breaks mail to them as surely as a delete).
    readdressed: int = 0
    # Names of the contacts removed or readdressed (the import guard shows some).
    removed: list[str] = field(default_factory=list)
    # What the part did to the address book, entry by entry: ImportedChange rows of LOG_FIELDS.
    log: list[tuple] = field(default_factory=list)

    def note(self, config, op: str, key: str, origin: str, usn, name: str, smtp: str, detail=""):
        # (The wire caps a name and an address at 256 characters, and the names of every General
        # attribute joined are shorter: the slices only guard the columns.)
        clipped = name[:256], smtp[:256], detail[:256]  # pragma: no mutate
        self.log.append((config.organization_id, key, origin, op, usn, *clipped))


def handle_reply(message: Message, document: wire.ReplyDocument) -> None:
    """Inbox entry point for a reply part addressed to a requestor of this installation."""
    config = (
        RequestorConfig.objects.select_for_update(no_key=True)
        .select_related("organization")
        .filter(at_address(message.recipient))
        .get()
    )
    message.organization_id = config.organization_id
    if message.sender.lower() != config.master_address.lower():
        raise MessageRejected(
            f"Replies are accepted only from this requestor's master, {config.master_address}; "
            f"this one came from {message.sender}."
        )
    if config.import_container_id is None:
        raise MessageRejected(
            "No container for importing is set; choose one on the Import Config page."
        )
    if document.held is not None:
        master_notice(config, document)
        return
    counts = apply_reply(config, document)
    if counts.deleted or counts.readdressed:
        guard(config, message, document, counts)
    backends.contacts_changed(config.organization)


def master_notice(config: RequestorConfig, document: wire.ReplyDocument) -> None:
    """The master holds the answered export for an administrator, or one rejected it: nothing
    was applied at the master, and nothing is here. The run says so; after a rejection the
    next cycle sends a full export (the master asked for it)."""
    run = Run.objects.filter(config=config, batch=document.in_reply_to).first()
    if document.export_all:
        config.request_full_export()
    if run is None or run.status in (RunStatus.OK, RunStatus.SUPERSEDED):
        return
    if document.export_all:
        run.status, run.finished_at = RunStatus.FAILED, timezone.now()
        run.error = f"Rejected at the master: {document.held}"
    else:
        run.status = RunStatus.HELD
        run.error = f"Held by the master: {document.held.removeprefix(holds.HELD_PREFIX)}"
    run.save(update_fields=["status", "finished_at", "error"])


def guard(
    config: RequestorConfig, message: Message, document: wire.ReplyDocument, counts: Counts
) -> None:
    """The import guard: a reply part that removes or readdresses more contacts than the
    threshold is held for an administrator before anything of it is written (the savepoint it
    runs in is rolled back, and an LDAP directory is written only after it), unless one
    approved it."""
    threshold = holds.Threshold(
        config.import_delete_limit, config.import_delete_percent, config.import_delete_floor
    )
    live = _contacts(config).filter(hidden_at__isnull=True).count() + counts.deleted
    lost = counts.deleted + counts.readdressed
    if not threshold.trips(lost, live):
        return
    if holds.waived(config.organization_id, message.sender, document.batch):
        return
    what = f"contacts of {config.organization.name}"
    if counts.readdressed:
        what += f" ({counts.readdressed} of them by a new address)"
    holds.judge(
        threshold,
        lost,
        live,
        what=what,
        peer=document.sender.organization,
        sample=counts.removed,
    )


def apply_reply(config: RequestorConfig, document: wire.ReplyDocument) -> Counts:
    run = Run.objects.filter(config=config, batch=document.in_reply_to).first()
    _check_applicable(config, document)
    if document.export_all and (run is None or not run.full_export):
        # An administrator at the master rejected a held export: everything, again.
        config.request_full_export()
    counts = Counts()
    set_aside = Tally.of(config.set_aside_digest, config.set_aside_count)
    if _is_news(config, document, run):
        apply_entries(config, document.entries, counts, set_aside)
        if document.full and _is_last_full_part(document):
            sweep_absent(config, document, counts)
            set_aside = _finish_full_reply(config, counts, run)
    config.set_aside_digest, config.set_aside_count = set_aside.hex, set_aside.count
    advanced = document.through > config.master_usn
    config.master_usn = max(config.master_usn, document.through)
    if config.master_usn == document.through and document.fingerprint:
        config.master_fingerprint = document.fingerprint
    elif advanced:
        config.master_fingerprint = ""
    _acknowledge(config, document, run)
    if document.part == document.parts and config.master_usn == document.through:
        retry_conflicts(config, counts)
        if document.verification is not None and not config.full_reply_pending:
            verify.check(config, document, run)
    config.save(update_fields=SYNC_FIELDS)
    if run is not None:
        _record(run, document, counts)
    _save_log(counts, document, run)
    if advanced:
        inbox.retry_deferred(config.organization_id)
    return counts


def _save_log(counts: Counts, document: wire.ReplyDocument, run: Run | None) -> None:
    """The part's ImportedChange rows, in one COPY on PostgreSQL (a full reply logs every entry)."""
    run_id, now = (run.pk if run else None), timezone.now()
    rows = ((*row, document.batch, run_id, now) for row in counts.log)
    copy_insert(ImportedChange, [*LOG_FIELDS, "batch", "run_id", "at"], rows)


def _check_applicable(config: RequestorConfig, document: wire.ReplyDocument) -> None:
    """Apply parts in USN order only; a new master epoch starts with part 1 of a full reply."""
    if document.epoch != config.master_epoch:
        if not document.full:
            raise MessageRejected(
                f"This reply belongs to master epoch {document.epoch}, but this requestor "
                f"follows epoch {config.master_epoch}; a full reply will replace it."
            )
        if document.after != 0:
            raise MessageDeferred("Waiting for the first part of the master's full reply.")
        # The master's history changed (restored, or first contact): its USNs start over, so the
        # master USNs recorded on our contacts mean nothing any more, and this full reply, whole,
        # decides which contacts stay.
        config.master_epoch = document.epoch
        config.master_usn = 0
        config.master_fingerprint = ""
        config.full_reply_batch = document.batch
        config.full_reply_pending = True
        config.full_reply_requested_at = timezone.now()
        with changes.writing():
            reset = _contacts(config).update(master_usn=0)
        if reset:
            changes.rebuild_cells(config.organization_id, imported=True)
        for model in (Conflict, FilteredEntry):
            model.objects.filter(config=config).update(master_usn=0)
    if document.after > config.master_usn:
        raise MessageDeferred(
            f"Waiting for master USNs ({config.master_usn}, {document.after}] before this part."
        )


def _is_news(config: RequestorConfig, document: wire.ReplyDocument, run: Run | None) -> bool:
    """Whether the part's entries are to be applied. Only a part that reaches past what was
    applied is news, with one exception: a full reply this organization waits for (it asked
    for one, and the reply answers an export sent since) may end where it already is. An older
    full reply arriving late lists entries as they were before changes already applied here:
    applying it would bring back contacts deleted since."""
    if document.through > config.master_usn:
        return True
    if not document.full:
        return False
    if document.batch == config.full_reply_batch:
        return True
    return bool(
        config.full_reply_pending
        and run is not None
        and config.full_reply_requested_at is not None
        and run.started_at >= config.full_reply_requested_at
    )


def _contacts(config: RequestorConfig):
    return Recipient.objects.filter(
        organization_id=config.organization_id, global_key__isnull=False
    )


def _shown(config: RequestorConfig):
    """The organization's recipients in its address book: its own, and the contacts not hidden
    for their grace period (those hold no address or alias)."""
    return Recipient.objects.filter(organization_id=config.organization_id, hidden_at__isnull=True)


def apply_entries(
    config: RequestorConfig, entries: list[wire.Entry], counts: Counts, set_aside: Tally
) -> None:
    """Create, update and delete contacts in bulk for the entries of one reply part, and set
    aside the entries that cannot be imported; `set_aside` follows them."""
    latest: dict[str, wire.Entry] = {}
    for entry in entries:
        if entry.key not in latest or entry.usn > latest[entry.key].usn:
            latest[entry.key] = entry
    if not latest:
        return
    contacts = {
        c.global_key: c for c in _contacts(config).filter(OneOf("global_key", latest)).order_by()
    }
    domains = config.domains()
    excluded = config.excluded()
    removals: list[Recipient] = []
    deleted_at: dict[int, int] = {}  # contact pk → the master USN of the version that removes it
    upserts: list[tuple[wire.Entry, Recipient | None]] = []
    settled: list[str] = []  # keys whose earlier conflict or filter no longer holds
    for key, entry in latest.items():
        contact = contacts.get(key)
        left_out = import_filter(entry, domains, excluded)
        if entry.op == Op.DELETE or left_out:
            if contact is not None:
                removals.append(contact)
                # The master USN of the version that takes it out (a delete, or one left out).
                deleted_at[contact.pk] = entry.usn
            if entry.op == Op.UPSERT:
                counts.filtered.append(_filtered(config, entry, left_out))
            settled.append(key)
            continue
        current = (
            contact is not None
            and contact.container_id == config.import_container_id
            and contact.hidden_at is None
        )
        if current and entry.usn <= (contact.master_usn or 0):
            continue
        upserts.append((entry, contact))
        settled.append(key)
    bases = {entry.key: _base_alias(entry) for entry, _ in upserts}
    addresses, alias_holders = _holders(config, upserts, bases)
    _release(upserts, removals, addresses, alias_holders, bases)
    upserts = _set_conflicts_aside(config, upserts, removals, counts, addresses)
    aliases = _choose_aliases(
        config, {entry.key: bases[entry.key] for entry, _ in upserts}, alias_holders
    )
    _delete(config, removals, counts, deleted_at)
    _write(config, upserts, aliases, counts)
    _set_aside(config, settled, counts, set_aside)


def import_filter(
    entry: wire.Entry, domains: list[str] | None, excluded: tuple[set[str], set[str]]
) -> str | None:
    """Why the Import Config leaves an entry out (a FilteredEntry reason), or None."""
    addresses, organizations = excluded
    if domains is None and not addresses and not organizations:
        return None
    smtp = _address(entry)
    if organizations and entry.origin.lower() in organizations:
        return FilteredEntry.Reason.ORGANIZATION
    if addresses and smtp in addresses:
        return FilteredEntry.Reason.ADDRESS
    if domains is not None and smtp.rpartition("@")[2] not in domains:
        return FilteredEntry.Reason.DOMAIN
    return None


def _address(entry: wire.Entry) -> str:
    """An entry's primary SMTP address in lower case, as addresses are compared here ("" for an
    entry without one: it is set aside as a conflict, or filtered out by a domain filter)."""
    return entry.attrs.get("primary_smtp", "").lower()


def _filtered(config: RequestorConfig, entry: wire.Entry, reason: str) -> FilteredEntry:
    return FilteredEntry(
        config=config,
        global_key=entry.key,
        origin=entry.origin,
        address=entry.attrs.get("primary_smtp", ""),  # at most 256 characters, as on the wire
        master_usn=entry.usn,
        reason=reason,
    )


def _set_aside(config, settled: list[str], counts: Counts, set_aside: Tally) -> None:
    """Replace the conflicts and filtered entries of the keys this part settled. (No query
    while nothing is set aside, the usual case: `set_aside` counts every such row.)"""
    if set_aside.count and settled:
        for model in (Conflict, FilteredEntry):
            rows = model.objects.filter(OneOf("global_key", settled), config=config)
            for key, usn in rows.values_list("global_key", "master_usn"):
                set_aside.remove(key, usn)
            rows.delete()
    aside = [(row, row.display_name, row.reason) for row in counts.conflicts]
    aside += [(row, "", row.get_reason_display()) for row in counts.filtered]
    for row, name, why in aside:
        set_aside.add(row.global_key, row.master_usn)
        counts.note(
            config,
            ImportedChange.Op.SET_ASIDE,
            row.global_key,
            row.origin,
            row.master_usn,
            name,
            row.address,
            why,
        )
    if counts.conflicts:
        Conflict.objects.bulk_create(counts.conflicts)
    if counts.filtered:
        FilteredEntry.objects.bulk_create(counts.filtered)


def _holders(config, upserts, bases: dict[str, str]) -> tuple[dict, dict[str, set]]:
    """Who holds the entries' addresses and their aliases (lower case) in the organization: for
    an address, (global key, pk), the key None for a recipient of the organization's own; for an
    alias, the set of global keys holding it (see _alias_holders).

    Two look-ups: asked with OR in one, PostgreSQL read every recipient of the organization
    and compared it with both lists (docs/scaling.md)."""
    if not upserts:
        return {}, {}
    addresses = {_address(entry) for entry, _ in upserts}
    rows = _lowered(config, "primary_smtp", addresses, "global_key", "pk")
    by_address = {smtp: (key, pk) for smtp, key, pk in rows}
    return by_address, _alias_holders(config, {base.lower() for base in bases.values()})


def _lowered(config, field: str, values: set[str], *columns: str):
    """The organization's shown recipients whose `field` in lower case is one of `values`
    (lower case), as rows (that value, *columns). Unsorted: the rows go into dicts and sets,
    and Recipient's default order would sort them by display name for nothing.

    On PostgreSQL, one probe of the field's unique index per value, where the planner agrees
    to probe (docs/scaling.md): asked as `= ANY(values)`, it walks the whole organization
    instead, six to ten times slower for a part's 10,000 addresses."""
    if connection.vendor == "postgresql" and values:
        probed = _probed(config, field, values, columns)
        if probed is not None:
            return probed
    return _looked_up(config, field, values, *columns)


def _looked_up(config, field: str, values: set[str], *columns: str):
    """`_lowered` asked as `lower(field) = ANY(values)`."""
    return (
        _shown(config)
        .annotate(lowered=Lower(field))
        .filter(OneOf("lowered", values))
        .order_by()
        .values_list("lowered", *columns)
    )


# The unique index of each field looked up in lower case (directory.models.Recipient).
PROBED_INDEX = {
    "primary_smtp": "recipient_smtp_unique_shown",
    "alias": "recipient_alias_unique_shown",
}


def _probed(config, field: str, values: set[str], columns) -> list[tuple] | None:
    """`_lowered` as one index probe per value, or None when the plan would not probe: with
    statistics that miss the organization, the planner may walk the organization for each
    value instead (quadratic), so the plan is checked before the query runs."""
    meta = Recipient._meta
    quote = connection.ops.quote_name
    names = [meta.pk.column if c == "pk" else meta.get_field(c).column for c in columns]
    selected = ", ".join(f"r.{quote(name)}" for name in names)
    if "" in values or any(SEPARATOR in value for value in values):
        # (The split string would lose these: an empty value, or one holding the separator,
        # which the wire refuses in an address or alias anyway.)
        return None
    # The values as one string the server splits: a list parameter is quoted value by value
    # in Python, which cost as much as the probes.
    sql = (
        f"SELECT w.value{', ' if names else ''}{selected} "
        f"FROM unnest(string_to_array(%s, chr({ord(SEPARATOR)}))) AS w(value) "
        f"CROSS JOIN LATERAL (SELECT * FROM {quote(meta.db_table)} AS r "
        f"WHERE r.organization_id = %s AND r.hidden_at IS NULL "
        f"AND lower(r.{quote(meta.get_field(field).column)}) = w.value LIMIT 1) AS r"
    )
    params = [SEPARATOR.join(sorted(values)), config.organization_id]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        (plan,) = cursor.fetchone()
        if not _probes(plan[0]["Plan"], meta.db_table, PROBED_INDEX[field]):
            return None
        cursor.execute(sql, params)
        return cursor.fetchall()


def _probes(node: dict, table: str, index: str) -> bool:
    """Whether every scan of `table` in this plan probes `index` with the value as a key."""
    probe = node.get("Index Name") == index and "lower(" in node.get("Index Cond", "")
    if node.get("Relation Name") == table and not probe:
        return False
    return all(_probes(child, table, index) for child in node.get("Plans", ()))


def _release(upserts, removals, addresses: dict, alias_holders: dict, bases: dict) -> None:
    """Addresses and aliases that contacts of this part give up (their entry moves to another
    address, or goes) are free for the other entries of the part: two contacts can swap."""
    leaving = [(contact, None, None) for contact in removals]
    for entry, contact in upserts:
        if contact is not None:
            leaving.append((contact, _address(entry), bases[entry.key]))
    for contact, new_address, new_alias in leaving:
        old_address = contact.primary_smtp.lower()
        if (
            old_address != new_address
            and addresses.get(old_address, (None,))[0] == contact.global_key
        ):
            del addresses[old_address]
        if new_alias is None or contact.alias.lower() != new_alias.lower():
            alias_holders.get(contact.alias.lower(), set()).discard(contact.global_key)


def _set_conflicts_aside(config, upserts, removals, counts, addresses: dict) -> list:
    """Entries whose address is taken here (by a local recipient, another contact, or an earlier
    entry of this part) become conflicts; a contact that held such an entry is removed.
    `addresses` holds (global key, pk) of each address's holder (see _holders)."""
    holders = {smtp: key for smtp, (key, _) in addresses.items()}
    local_ids = {smtp: pk for smtp, (key, pk) in addresses.items() if key is None}
    kept, claimed = [], {}
    for entry, contact in upserts:
        smtp = _address(entry)
        reason = _conflict_reason(entry, smtp, holders, claimed)
        if reason is None:
            claimed[smtp] = entry.key
            kept.append((entry, contact))
            continue
        counts.conflicts.append(
            Conflict(
                config=config,
                global_key=entry.key,
                origin=entry.origin,
                # (The wire allows 256 characters: this slice only guards the column.)
                display_name=entry.attrs.get("display_name", "")[:256],  # pragma: no mutate
                # Lower case can lengthen an address (İ becomes i and a combining dot).
                address=smtp[:256],
                reason=reason,
                local_recipient_id=local_ids.get(smtp),
                master_usn=entry.usn,
                kind=entry.kind,
                attrs=dict(entry.attrs),
            )
        )
        if contact is not None:
            removals.append(contact)
    return kept


# Plain addresses (a dot-atom local part, host-name labels, a top-level domain of letters), all of
# which Django's EmailValidator accepts, need no closer look; that validator decides the rest.
_PLAIN_ADDRESS = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)


def _is_smtp_address(smtp: str) -> bool:
    # The usual address skips Django's validator; the length bound only picks that fast path
    # (the validator accepts the same lengths), hence no mutants of it.
    short = len(smtp) <= 254  # pragma: no mutate
    if short and _PLAIN_ADDRESS.fullmatch(smtp):
        return True
    try:
        smtp_validator(smtp)
    except ValidationError:
        return False
    return True


def _conflict_reason(entry, smtp: str, holders: dict, claimed: dict) -> str | None:
    if not _is_smtp_address(smtp):
        return f"The entry has no valid primary SMTP address ({smtp!r})."
    if smtp in holders and holders[smtp] != entry.key:
        if holders[smtp] is None:
            return f"{smtp} belongs to a recipient of this organization."
        return f"{smtp} belongs to the contact imported for {holders[smtp]}."
    if smtp in claimed:
        return f"{smtp} is also the address of {claimed[smtp]} in the same reply."
    return None


def _choose_aliases(config, wanted: dict[str, str], holders: dict[str, set]) -> dict[str, str]:
    """A unique alias for each contact: the source alias (`wanted`, by key), or one made unique
    with a key hash. `holders` holds at least the holders of the wanted aliases (lower case).
    A fallback someone already holds is passed over for the next one: one more query a round,
    only for the contacts whose candidates were all taken (in practice never)."""
    # Fallbacks only for the aliases someone else holds, or that recur in this part.
    seen: dict[str, int] = {}
    for base in wanted.values():
        seen[base.lower()] = seen.get(base.lower(), 0) + 1
    candidates: dict[str, tuple[str, ...]] = {
        key: (base,)
        if seen[base.lower()] == 1 and not holders.get(base.lower(), set()) - {key}
        else (base, _fallback_alias(base, key))
        for key, base in wanted.items()
    }
    ask = {aliases[1].lower() for aliases in candidates.values() if len(aliases) > 1}
    chosen: dict[str, str] = {}
    used: set[str] = set()
    attempts: dict[str, int] = {}
    while candidates:
        holders.update(_alias_holders(config, ask))
        left: dict[str, tuple[str, ...]] = {}
        for key, aliases in candidates.items():
            for alias in aliases:
                if not holders.get(alias.lower(), set()) - {key} and alias.lower() not in used:
                    used.add(alias.lower())
                    chosen[key] = alias
                    break
            else:
                attempts[key] = attempts.get(key, 0) + 1
                left[key] = (_fallback_alias(wanted[key], key, attempts[key]),)
        candidates = left
        ask = {aliases[0].lower() for aliases in left.values()}
    return chosen


def _alias_holders(config, aliases: set[str]) -> dict[str, set]:
    """Who holds each of these aliases (lower case) in the organization: global keys, None for
    the organization's own recipients. No query for no aliases."""
    holders: dict[str, set] = {}
    if not aliases:
        return holders
    for alias, key in _lowered(config, "alias", aliases, "global_key"):
        holders.setdefault(alias, set()).add(key)
    return holders


def _base_alias(entry: wire.Entry) -> str:
    # The local part is what comes before the last "@" ("a@b"@example.org is quoted "a@b").
    # (An entry without an address, or with one without "@", is set aside whatever its alias.)
    local = entry.attrs.get("primary_smtp", "").rpartition("@")[0]
    alias = entry.attrs.get("alias") or local
    return wire.sanitize_value("alias", alias.strip()) or "contact"


# A hash to tell contacts apart, not to protect anything (allowed where FIPS mode is on).
NOT_FOR_SECURITY = {"usedforsecurity": False}


def _fallback_alias(base: str, key: str, attempt: int = 0) -> str:
    """`base` made unique with 8 hex digits of a hash of the key (and of the attempt, after the
    first: the first fallback stays what it always was, so existing aliases do not change)."""
    seed = key if not attempt else f"{key}#{attempt}"
    hashed = hashlib.sha1(seed.encode(), **NOT_FOR_SECURITY)  # pragma: no mutate (FIPS only)
    digest = hashed.hexdigest()[:8]
    return f"{base[: 64 - 9]}-{digest}"


def _delete(config, removals: list[Recipient], counts: Counts, deleted_at=None) -> None:
    """Take contacts out of the address book: hidden for the grace period of the Import Config
    (the same contact comes back if its entry does), or removed at once when it is 0.
    `deleted_at` holds the master USN of the delete of each contact whose entry was deleted."""
    removals = list({contact.pk: contact for contact in removals}.values())
    shown = [contact for contact in removals if contact.hidden_at is None]
    grace = bool(config.grace_days)
    counts.removed.extend(contact.display_name for contact in shown[: holds.SAMPLE_SIZE])
    counts.deleted += len(shown)
    for contact in removals if not grace else shown:
        op = ImportedChange.Op.HIDDEN if grace else ImportedChange.Op.REMOVED
        usn = (deleted_at or {}).get(contact.pk, contact.master_usn)
        counts.note(
            config,
            op,
            contact.global_key,
            contact.origin_organization,
            usn,
            contact.display_name,
            contact.primary_smtp,
        )
    if grace:
        changes.hide_contacts(config.organization_id, shown, deleted_at)
    elif removals:
        pks = [contact.pk for contact in removals]
        changes.delete_recipients(Recipient.objects.filter(OneOf("pk", pks)))


def _write(config, upserts, aliases, counts: Counts) -> None:
    """New contacts go in as plain rows (COPY on PostgreSQL), changed ones in one statement."""
    if not upserts:
        return
    first = allocate_usns(config.organization_id, len(upserts), own=False)
    now = timezone.now()
    delta = changes.CellDelta(config.organization_id)
    update, before = [], {}
    for offset, (entry, contact) in enumerate(upserts):
        if contact is None:
            continue
        before[contact.pk] = (contact.primary_smtp.lower(), contact.alias.lower())
        delta.remove(contact)
        values = _contact_values(config, entry, aliases[entry.key], usn=first + offset)
        restored = contact.hidden_at is not None
        if not restored and values[SMTP_INDEX].lower() != before[contact.pk][0]:
            counts.readdressed += 1
            if len(counts.removed) < holds.SAMPLE_SIZE:
                counts.removed.append(contact.display_name)
        # (The values start with the General attributes, in their order.)
        changed = [
            name
            for name, value in zip(GENERAL_ATTRIBUTES, values, strict=False)
            if name != "alias" and getattr(contact, name) != value
        ]
        for name, value in zip(CONTACT_VALUES, values, strict=True):
            setattr(contact, name, value)
        contact.changed_at, contact.hidden_at = now, None
        delta.add(contact)
        update.append(contact)
        op = ImportedChange.Op.RESTORED if restored else ImportedChange.Op.UPDATED
        counts.note(
            config,
            op,
            entry.key,
            entry.origin,
            entry.usn,
            contact.display_name,
            contact.primary_smtp,
            ", ".join(changed),
        )
    with changes.writing():
        _make_room(update, before)
        update_objects(Recipient, update, CONTACT_FIELDS)
    # Locked by allocate_usns above (unlocked, save() would only lock it again).
    delta.save(locked=True)  # pragma: no mutate
    # Made as COPY sends them, so that the database takes the first rows in while the rest are
    # still being made.
    create = (
        (
            config.organization_id,
            entry.key,
            *_contact_values(config, entry, aliases[entry.key], usn=first + offset),
        )
        for offset, (entry, contact) in enumerate(upserts)
        if contact is None
    )
    counts.imported += changes.insert_recipients(
        config.organization_id, ["organization_id", "global_key", *CONTACT_VALUES], create
    )
    for entry, contact in upserts:
        if contact is None:
            counts.note(
                config,
                ImportedChange.Op.ADDED,
                entry.key,
                entry.origin,
                entry.usn,
                entry.attrs.get("display_name", ""),
                entry.attrs["primary_smtp"],  # an entry without one was set aside
            )
    counts.updated += len(update)


def _make_room(update: list[Recipient], before: dict[int, tuple[str, str]]) -> None:
    """Contacts that take an address or alias that another contact of the same update gives
    up first get a placeholder of their own: a unique index is checked row by row, so two
    contacts swapping their addresses in one statement would collide half-way. `before` holds
    each contact's (address, alias) in lower case as they were."""
    held_smtp = {smtp: pk for pk, (smtp, _alias) in before.items()}
    held_alias = {alias: pk for pk, (_smtp, alias) in before.items()}
    # (Held by nobody in the update, or by the contact itself: no placeholder needed.)
    moving = [
        Recipient(
            pk=contact.pk,
            primary_smtp=f"{contact.guid}@swap.invalid",
            alias=f"{contact.guid}.swap",
        )
        for contact in update
        if held_smtp.get(contact.primary_smtp.lower()) not in (None, contact.pk)
        or held_alias.get(contact.alias.lower()) not in (None, contact.pk)
    ]
    update_objects(Recipient, moving, ["primary_smtp", "alias"])


_EMPTY_GENERAL = dict.fromkeys(GENERAL_ATTRIBUTES, "")
_general_values = itemgetter(*GENERAL_ATTRIBUTES)


def _contact_values(config, entry: wire.Entry, alias: str, usn: int) -> tuple:
    """A contact's values for an entry, in CONTACT_VALUES order."""
    general = list(_general_values({**_EMPTY_GENERAL, **entry.attrs}))
    general[ALIAS_INDEX] = alias
    smtp = general[SMTP_INDEX]
    return (
        *general,
        Kind.CUSTOM_RECIPIENT,
        config.import_container_id,
        smtp,
        entry.origin,
        entry.usn,
        usn,
    )


def _is_last_full_part(document: wire.ReplyDocument) -> bool:
    # Distinct parts: a duplicate copy of a part is archived as processed too. (Only received
    # copies are ever processed, and a second copy of this part is refused as a replay: the
    # direction and the exclusion are there for clarity, not needed.)
    done = (
        Message.objects.filter(
            direction=Direction.INBOUND,  # pragma: no mutate
            status=Status.PROCESSED,
            batch=document.batch,
        )
        .exclude(part=document.part)  # pragma: no mutate
        .order_by()
        .values("part")
        .distinct()
        .count()
    )
    return done + 1 >= document.parts


def sweep_absent(
    config: RequestorConfig, document: wire.ReplyDocument, counts: Counts | None = None
) -> int:
    """After the last part of a full reply: take out of the address book the contacts the
    master no longer lists (hidden for the grace period, or removed), and forget conflicts and
    filtered entries of entries it no longer lists. Return how many contacts went."""
    present = set(_full_reply_keys(document))
    shown = _contacts(config).filter(master_usn__lte=document.through, hidden_at__isnull=True)
    # (Unsorted: Recipient's default order sorted all of them by display name for nothing.)
    listed = shown.order_by().values_list("pk", "global_key")
    pks = [pk for pk, key in listed if key not in present]
    # (No query for nothing stale: the list is empty either way.)
    stale = list(Recipient.objects.filter(OneOf("pk", pks))) if pks else []  # pragma: no mutate
    counts = counts if counts is not None else Counts()
    before = counts.deleted
    _delete(config, stale, counts)
    for model in (Conflict, FilteredEntry):
        rows = model.objects.filter(config=config, master_usn__lte=document.through)
        gone = [pk for pk, key in rows.values_list("pk", "global_key") if key not in present]
        if gone:
            model.objects.filter(OneOf("pk", gone)).delete()
    return counts.deleted - before


def _finish_full_reply(config: RequestorConfig, counts: Counts, run: Run | None) -> Tally:
    """A full reply has been applied whole: the request for one is fulfilled, the entries set
    aside are counted again from their rows, and a repair that waited for it is done."""
    config.full_reply_pending = False
    config.full_reply_batch = None
    check = verify.verification(config, verify.Side.IMPORT)
    if check.repair_pending:
        # A repair also recounts the contacts, in case something wrote them around the cells.
        changes.rebuild_cells(config.organization_id)
        differed = counts.imported + counts.updated + counts.deleted
        if run is not None:
            differed += run.imported + run.updated + run.deleted
        verify.repair_carried_out(config, verify.Side.IMPORT, differed, run)
    return verify.set_aside_tally(config)


def _full_reply_keys(document: wire.ReplyDocument):
    yield from (entry.key for entry in document.entries)
    others = Message.objects.filter(
        direction=Direction.INBOUND, status=Status.PROCESSED, batch=document.batch
    ).exclude(part=document.part)  # pragma: no mutate (its keys again change no set of keys)
    # Those parts were decoded and validated when they were applied: only their keys matter now,
    # read a piece at a time.
    for payload in others.values_list("payload", flat=True):
        yield from (entry["key"] for entry in wire.iter_items(bytes(payload), "entries"))


def retry_conflicts(config: RequestorConfig, counts: Counts) -> None:
    """Import the conflicts whose address nobody holds any more (the local recipient went or
    changed its address, or the contact that had it is gone), as if the master sent them now."""
    if not config.set_aside_count:
        return
    conflicts = [
        (conflict, conflict.address.lower())
        for conflict in Conflict.objects.filter(config=config).exclude(attrs={})
    ]
    if not conflicts:
        return
    held = {smtp for (smtp,) in _lowered(config, "primary_smtp", {a for _, a in conflicts})}
    freed = [
        wire.Entry.model_construct(
            key=conflict.global_key,
            origin=conflict.origin,
            op=Op.UPSERT,
            kind=conflict.kind,
            usn=conflict.master_usn,
            attrs=conflict.attrs,
        )
        for conflict, address in conflicts
        if address not in held and _is_smtp_address(address)
    ]
    if freed:
        set_aside = Tally.of(config.set_aside_digest, config.set_aside_count)
        apply_entries(config, freed, counts, set_aside)
        config.set_aside_digest, config.set_aside_count = set_aside.hex, set_aside.count


def _acknowledge(config: RequestorConfig, document: wire.ReplyDocument, run: Run | None) -> None:
    """Set the requestor USN to the master's ack, but only for the latest export batch, and
    never past what that batch covered.

    The ack of the latest batch never falls behind an earlier one unless the master lost what it
    had acknowledged (restored from a backup, or its allowlist entry re-created): then the
    requestor USN goes back with it, and the next export sends those changes again. An ack
    beyond what the batch covered means the master has seen local USNs this organization does
    not remember handing out: it was restored from a backup (requestor.restore).
    """
    if run is None or config.last_export_batch != document.in_reply_to:
        return
    covered = run.export_through or 0
    config.requestor_usn = min(document.ack, covered)
    if document.ack > covered:
        from requestor.restore import restart_after_restore

        restart_after_restore(config, document.ack)
    elif run.full_export and document.ack >= covered:
        check = verify.verification(config, verify.Side.EXPORT)
        if check.repair_pending and check.repair_requested_at <= run.started_at:
            differed = document.verification.changed if document.verification else 0
            verify.repair_carried_out(config, verify.Side.EXPORT, differed, run)


def _record(run: Run, document: wire.ReplyDocument, counts: Counts) -> None:
    run.imported += counts.imported
    run.updated += counts.updated
    run.deleted += counts.deleted
    run.conflicts += len(counts.conflicts)
    run.acknowledged = document.ack
    # The parts chain (each one's `after` is the previous one's `through`): their spans add up
    # to the master USNs the reply covered (the history's lag, console.activity).
    run.master_lag = (run.master_lag or 0) + max(0, document.through - document.after)
    run.reply_parts = document.parts
    run.full_reply = run.full_reply or document.full
    run.reply_parts_applied += 1
    if run.reply_parts_applied >= document.parts:
        if run.status == RunStatus.HELD:
            run.error = ""  # held by the master, approved since: nothing is wrong any more
        run.status = RunStatus.OK
        run.finished_at = timezone.now()
    run.save()
