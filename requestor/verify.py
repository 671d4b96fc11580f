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
from directory.models import Organization, Recipient, Tombstone
from requestor.models import Conflict, FilteredEntry, RequestorConfig, Run, Verification
from requestor.scope import UNKNOWN_SCOPE, Scope
from transport import wire
from transport.digest import Tally

log = logging.getLogger(__name__)

Side = Verification.Side
State = Verification.State
# A difference found this soon after a repair is not repaired again automatically.
REPAIR_COOLDOWN = timedelta(hours=1)


def verification(config: RequestorConfig, side: str) -> Verification:
    return Verification.objects.get_or_create(config=config, side=side)[0]


def holdings(config: RequestorConfig) -> Tally:
    """What this organization holds of the others: its contacts, and the entries set aside."""
    tally = changes.contacts_tally(config.organization_id)
    return tally.merge(Tally.of(config.set_aside_digest, config.set_aside_count))


def set_aside_tally(config: RequestorConfig) -> Tally:
    """The entries set aside, counted again from their rows (after a full reply)."""
    tally = Tally()
    for model in (Conflict, FilteredEntry):
        for key, usn in model.objects.filter(config=config).values_list("global_key", "master_usn"):
            tally.add(key, usn)
    return tally


def exports(config: RequestorConfig) -> Tally:
    """What the master should hold of this organization: its recipients in the exported scope."""
    if not config.exported_scope or config.exported_scope == UNKNOWN_SCOPE:
        return Tally()
    scope = Scope.from_definition(config.exported_scope)
    return scope.tally(changes.cells(config.organization_id))


def check_import(config: RequestorConfig, document: wire.ReplyDocument, run: Run | None) -> str:
    """After the last part of a reply has brought the master USN to its `through`."""
    master = Tally.of(document.verification.holdings.digest, document.verification.holdings.count)
    return _judge(config, Side.IMPORT, holdings(config), master, run)


def check_export(config: RequestorConfig, document: wire.ReplyDocument, run: Run | None) -> str:
    """After the reply to the latest export, if it acknowledged everything this organization
    has changed: the master's entries must be exactly the export scope."""
    if run is None or config.last_export_batch != document.in_reply_to:
        return "not checked: not the reply to the latest export"
    if config.exported_scope == UNKNOWN_SCOPE:
        return "not checked: the next export restates the scope"
    if unacknowledged(config):
        return "not checked: changes made since the export are not acknowledged yet"
    master = Tally.of(document.verification.exports.digest, document.verification.exports.count)
    return _judge(config, Side.EXPORT, exports(config), master, run)


def unacknowledged(config: RequestorConfig) -> bool:
    """Whether the organization has own changes the master has not acknowledged (imported
    contacts take local USNs too, but are never exported). The organization's row is locked
    first, so that no change commits between the two looks."""
    list(Organization.objects.select_for_update().filter(pk=config.organization_id).values("pk"))
    newer = {"organization_id": config.organization_id, "usn__gt": config.requestor_usn}
    return (
        Recipient.objects.filter(global_key__isnull=True, **newer).exists()
        or Tombstone.objects.filter(imported=False, **newer).exists()
    )


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


def _judge(config, side: str, local: Tally, master: Tally, run: Run | None) -> str:
    check = verification(config, side)
    now = timezone.now()
    check.checked_at = now
    check.local_digest, check.local_count = local.hex, local.count
    check.master_digest, check.master_count = master.hex, master.count
    outcome = _outcome(config, check, side, local, master, now)
    check.save()
    if run is not None:
        run.verification = {**run.verification, side: outcome}
    return outcome


def _outcome(config, check: Verification, side: str, local: Tally, master: Tally, now) -> str:
    if (local.value, local.count) == (master.value, master.count):
        if check.state == State.REPAIRING:
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
