"""The full cross-check for support cases: every entry compared, the differing keys listed.

Each cycle verifies an organization's copy with digests (requestor.verify), which say whether the
two sides differ but not where. This reads both sides whole: what the organization holds
against the master's live entries of the others (import side), and its recipients in scope
against the master's entries of its own (export side). It needs the master's database, so it
compares entries only for a master of this installation; for any organization it also recounts
the digests kept as changes are written, to show whether they drifted from the tables.
"""

from dataclasses import dataclass, field

from console.status import master_of
from directory.models import Recipient
from master.models import AllowedRequestor, GlobalEntry, MasterConfig
from requestor import verify
from requestor.models import Conflict, FilteredEntry, RequestorConfig
from requestor.scope import Scope
from transport.digest import Tally

SHOWN = 20


@dataclass
class SideReport:
    """One side of one organization, entry by entry."""

    side: str
    compared: bool
    expected: int = 0
    held: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)

    @property
    def differs(self) -> bool:
        return bool(self.missing or self.extra or self.stale or self.drift)


def _compare(report: SideReport, expected: dict, held: dict) -> None:
    report.expected, report.held = len(expected), len(held)
    report.missing = sorted(key for key in expected if key not in held)
    report.extra = sorted(key for key in held if key not in expected)
    report.stale = sorted(key for key in expected if key in held and held[key] != expected[key])


def _tally(pairs: dict) -> Tally:
    tally = Tally()
    for identity, version in pairs.items():
        tally.add(str(identity), version)
    return tally


def _drift(report: SideReport, what: str, kept: Tally, counted: Tally) -> None:
    if (kept.value, kept.count) != (counted.value, counted.count):
        report.drift.append(f"{what}: kept {kept}, counted {counted}")


def held_entries(config: RequestorConfig) -> dict[str, int]:
    """(global key → master USN) of the contacts in the address book (not those hidden for
    their grace period: their entries are gone) and of the entries set aside."""
    contacts = Recipient.objects.filter(
        organization_id=config.organization_id, global_key__isnull=False, hidden_at__isnull=True
    )
    held = dict(contacts.values_list("global_key", "master_usn"))
    for model in (Conflict, FilteredEntry):
        held.update(model.objects.filter(config=config).values_list("global_key", "master_usn"))
    return {key: usn or 0 for key, usn in held.items()}


def in_scope(config: RequestorConfig) -> dict[str, int]:
    """(GUID → local USN) of the organization's recipients in its export scope now."""
    own = Recipient.objects.filter(organization_id=config.organization_id)
    rows = own.filter(Scope.of(config).q()).values_list("guid", "usn")
    return {str(guid): usn for guid, usn in rows}


def _requestor_at(master: MasterConfig, config: RequestorConfig) -> AllowedRequestor | None:
    return master.requestors.filter(
        address__iexact=config.own_address, organization_name__iexact=config.organization.name
    ).first()


def cross_check(config: RequestorConfig) -> list[SideReport]:
    imports = SideReport(verify.Side.IMPORT, compared=False)
    exports = SideReport(verify.Side.EXPORT, compared=False)
    held = held_entries(config)
    _drift(imports, "this organization's digest", verify.holdings(config), _tally(held))
    scope = in_scope(config)
    if config.exported_scope == Scope.of(config).definition():
        _drift(exports, "this organization's digest", verify.exports(config), _tally(scope))
    master = master_of(config)
    requestor = master and _requestor_at(master, config)
    if requestor is not None:
        live = GlobalEntry.objects.filter(master=master, deleted=False, usn__gt=0)
        others = dict(live.exclude(requestor=requestor).values_list("global_key", "usn"))
        imports.compared = True
        _compare(imports, others, held)
        mine = {
            str(object_id): source_usn
            for object_id, source_usn in live.filter(requestor=requestor).values_list(
                "object_id", "source_usn"
            )
        }
        exports.compared = True
        _compare(exports, scope, mine)
        kept = Tally.of(requestor.export_digest, requestor.export_count)
        _drift(exports, "the master's digest", kept, _tally(mine))
    return [imports, exports]
