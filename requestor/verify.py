"""Every reply proves that this organization and its master hold the same (docs/protocol.md,
rule 10), or repairs the difference.

The last part of a reply carries two digests of the master's database (transport.digest):
- **import side**: the live entries of the other organizations at the reply's USN, which this
  organization must hold as contacts or have knowingly set aside (a conflict, a domain not
  imported). Checked when the part brings the master USN to the reply's USN.
- **export side**: this organization's own live entries at the master, as (object id, source
  USN), which must be exactly the recipients of its export scope, as (GUID, local USN). Checked
  when the reply acknowledges everything up to the organization's current USN.

Both sides' digests are kept as changes are written (directory.changes, master.processing), so
a check reads a few rows, never a whole table. A difference is repaired once: a full reply (the
contacts it no longer lists are removed) or a full export (the master drops what it no longer
lists). A repair that does not restore equality, or a new difference soon after one, is not
retried: the side is reported diverged, with both digests, until a check finds them equal again
or an administrator starts Import All or Export All.
"""

import logging
from datetime import timedelta

from django.utils import timezone

from directory import changes
from directory.models import Organization
from requestor.models import Conflict, FilteredEntry, RequestorConfig, Run, Verification
from requestor.scope import UNKNOWN_SCOPE, Scope
from transport import wire
from transport.digest import Tally

log = logging.getLogger(__name__)

Side = Verification.Side
State = Verification.State
# A difference found this soon after a repair is not repaired again automatically.
REPAIR_COOLDOWN = timedelta(hours=1)


JUDGED = [
    "state",
    "checked_at",
    "verified_at",
    "local_digest",
    "local_count",
    "master_digest",
    "master_count",
    "detail",
    "repair_pending",
    "repair_requested_at",
    "repairs",
]


def verification(config: RequestorConfig, side: str) -> Verification:
    return Verification.objects.get_or_create(config=config, side=side)[0]


def holdings(config: RequestorConfig, cells=None) -> Tally:
    """What this organization holds of the others: its contacts, and the entries set aside."""
    tally = changes.contacts_tally(config.organization_id, cells)
    return tally.merge(Tally.of(config.set_aside_digest, config.set_aside_count))


def set_aside_tally(config: RequestorConfig) -> Tally:
    """The entries set aside, counted again from their rows (after a full reply)."""
    tally = Tally()
    for model in (Conflict, FilteredEntry):
        for key, usn in model.objects.filter(config=config).values_list("global_key", "master_usn"):
            tally.add(key, usn)
    return tally


def exports(config: RequestorConfig, cells=None) -> Tally:
    """What the master should hold of this organization: its recipients in the exported scope."""
    if not config.exported_scope or config.exported_scope == UNKNOWN_SCOPE:
        return Tally()
    scope = Scope.from_definition(config.exported_scope)
    return scope.tally(changes.cells(config.organization_id) if cells is None else cells)


def check(config: RequestorConfig, document: wire.ReplyDocument, run: Run | None) -> None:
    """After the last part of a reply has brought the master USN to its `through`: the import
    side always, the export side if the reply answers the latest export and acknowledges every
    change the organization made. Both read the same digest cells, once."""
    found = document.verification
    # Read before the organization's own USN (in _export_not_checkable): a change committing
    # in between shows in that USN, and the export side is then not checked.
    cells = changes.cells(config.organization_id)
    judged = {}
    checks = {c.side: c for c in Verification.objects.filter(config=config)}
    for side in Side.values:
        checks.setdefault(side, Verification(config=config, side=side))
    master = Tally.of(found.holdings.digest, found.holdings.count)
    _judge(config, checks[Side.IMPORT], holdings(config, cells), master, run)
    judged[Side.IMPORT] = checks[Side.IMPORT]
    skipped = _export_not_checkable(config, document, run)
    if skipped:
        if run is not None:
            run.verification = {**run.verification, Side.EXPORT: f"not checked: {skipped}"}
    else:
        master = Tally.of(found.exports.digest, found.exports.count)
        _judge(config, checks[Side.EXPORT], exports(config, cells), master, run)
        judged[Side.EXPORT] = checks[Side.EXPORT]
    new = [c for c in judged.values() if c.pk is None]
    Verification.objects.bulk_create(new)
    Verification.objects.bulk_update([c for c in judged.values() if c not in new], JUDGED)


def _export_not_checkable(config: RequestorConfig, document, run: Run | None) -> str:
    """Why the export side cannot be checked with this reply ("" when it can)."""
    if run is None or config.last_export_batch != document.in_reply_to:
        return "not the reply to the latest export"
    if config.exported_scope == UNKNOWN_SCOPE:
        return "the next export restates the scope"
    if unacknowledged(config):
        return "changes made since the export are not acknowledged yet"
    return ""


def unacknowledged(config: RequestorConfig) -> bool:
    """Whether the organization has own changes the master has not acknowledged: an own
    recipient or tombstone with a USN beyond the requestor USN. (Imported contacts take local
    USNs too, but are never exported: they leave the organization's own USN alone.)"""
    own_usn = (
        Organization.objects.filter(pk=config.organization_id)
        .values_list("own_usn", flat=True)
        .get()
    )
    return own_usn > config.requestor_usn


def repair_carried_out(config: RequestorConfig, side: str, differed: int, run: Run | None) -> None:
    """A full reply was applied whole (import), or a full export acknowledged (export): a repair
    waiting for it is done, and the check that follows judges it."""
    check = verification(config, side)
    if not check.repair_pending:
        return
    check.repair_pending = False
    check.repaired_at = timezone.now()
    check.last_repair_differed = differed
    check.save()
    if run is not None:
        run.repair = side
    log.warning(
        "%s: %s repair carried out, %s entries differed", config.organization, side, differed
    )


def _judge(config, check: Verification, local: Tally, master: Tally, run: Run | None) -> str:
    now = timezone.now()
    check.checked_at = now
    check.local_digest, check.local_count = local.hex, local.count
    check.master_digest, check.master_count = master.hex, master.count
    outcome = _outcome(config, check, check.side, local, master, now)
    if run is not None:
        run.verification = {**run.verification, check.side: outcome}
    return outcome


def _outcome(config, check: Verification, side: str, local: Tally, master: Tally, now) -> str:
    if (local.value, local.count) == (master.value, master.count):
        # (Only whether a line is logged depends on it.)
        if check.state == State.REPAIRING:  # pragma: no mutate
            log.warning("%s: %s side repaired and verified in sync", config.organization, side)
        check.state, check.verified_at, check.detail = State.VERIFIED, now, ""
        return "verified"
    difference = f"{local} here, {master} at the master"
    if check.state == State.REPAIRING and check.repair_pending:
        return f"differs ({difference}): repair pending"
    if check.state == State.REPAIRING:
        check.state = State.DIVERGED
        check.detail = f"The repair did not restore equality: {difference}."
    elif check.state == State.DIVERGED:
        check.detail = f"Still different: {difference}."
    elif check.repaired_at and now - check.repaired_at < REPAIR_COOLDOWN:
        check.state = State.DIVERGED
        check.detail = (
            f"Different again within {REPAIR_COOLDOWN} of a repair ({difference}); repairs "
            "are not repeated automatically."
        )
    else:
        start_repair(config, check, side, f"Different: {difference}.")
        return f"differs ({difference}): repairing"
    log.error("%s: %s side diverged: %s", config.organization, side, check.detail)
    return f"diverged ({difference})"


def start_repair(config: RequestorConfig, check: Verification, side: str, detail: str) -> None:
    """Ask for the full reply or full export that repairs this side, at the next cycle."""
    if side == Side.IMPORT:
        config.request_full_reply()
    else:
        config.request_full_export()
    check.state = State.REPAIRING
    check.repair_pending = True
    check.repair_requested_at = timezone.now()
    check.repairs += 1
    check.detail = detail
    log.warning("%s: %s side: %s Repairing.", config.organization, side, detail)
