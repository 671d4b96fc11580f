"""What a requestor exports (its scope), and how a change of the scope reaches the master.

The scope is the exported containers (each with everything inside it) and the kinds checked for
each, the trust level threshold, and the transforms applied on the way out (display-name suffix,
SMTP domain). It can change in many ways: an Export Config edit, a container moved in the
console, the API, the admin or an LDAP server, a container deleted. None of them touches a
recipient, so none of them would be exported by itself. Instead every export compares the scope
the master holds this organization's entries under (`RequestorConfig.exported_scope`) with the
scope as it is now, and gives the recipients whose exported form differs fresh local USNs: they
then travel as ordinary changes, upserts entering the scope and deletes leaving it, whatever
path changed the scope (docs/protocol.md, rule 2).
"""

from django.db.models import Q

from directory import changes
from directory.constants import Kind
from directory.models import Container, DigestCell, Recipient
from transport.digest import Tally

KINDS = tuple(Kind.values)
# The exported scope of an organization whose entries the master may hold at other USNs than
# its recipients' own (an installation upgraded from full exports stamped with one snapshot USN):
# the next export restates everything in scope.
UNKNOWN_SCOPE = {"unknown": True}


class Scope:
    """The recipients a requestor exports: per container id, the kinds exported from it."""

    def __init__(
        self,
        trust_level: int,
        kinds: dict[int, set[str]],
        append_display_name: str,
        modify_smtp_domain: str,
    ):
        self.trust_level = trust_level
        self.kinds = kinds
        self.append_display_name = append_display_name
        self.modify_smtp_domain = modify_smtp_domain

    @classmethod
    def of(cls, config) -> "Scope":
        """The scope as the configuration and the container tree stand now. Containers are
        followed up their parents (not by DN), so a container inside an exported one is in
        scope wherever its DN says it is."""
        exported: dict[int, set[str]] = {}
        for row in config.exported_containers.all():
            exported.setdefault(row.container_id, set()).update(row.kinds())
        kinds: dict[int, set[str]] = {}
        if exported:
            parents = dict(
                Container.objects.filter(organization_id=config.organization_id).values_list(
                    "pk", "parent_id"
                )
            )
            for container_id in parents:
                node, seen = container_id, set()
                while node is not None and node not in seen:
                    seen.add(node)
                    if node in exported:
                        kinds.setdefault(container_id, set()).update(exported[node])
                    node = parents.get(node)
        return cls(config.trust_level, kinds, config.append_display_name, config.modify_smtp_domain)

    def definition(self) -> dict:
        """The scope as JSON, to remember what the master holds the entries under."""
        return {
            "trust_level": self.trust_level,
            "containers": {str(pk): sorted(kinds) for pk, kinds in sorted(self.kinds.items())},
            "append_display_name": self.append_display_name,
            "modify_smtp_domain": self.modify_smtp_domain,
        }

    @classmethod
    def from_definition(cls, definition: dict) -> "Scope":
        return cls(
            definition["trust_level"],
            {int(pk): set(kinds) for pk, kinds in definition["containers"].items()},
            definition["append_display_name"],
            definition["modify_smtp_domain"],
        )

    @property
    def transforms(self) -> tuple[str, str]:
        return self.append_display_name, self.modify_smtp_domain

    def q(self) -> Q:
        """The organization's own recipients in scope, as a filter."""
        # Nothing, as a condition every database compiles (no pk is below 1 either).
        by_kind = Q(pk__lt=0)  # pragma: no mutate
        for kind in KINDS:
            containers = [pk for pk, kinds in self.kinds.items() if kind in kinds]
            if containers:
                by_kind |= Q(kind=kind, container_id__in=containers)
        return by_kind & Q(
            trust_level__lte=self.trust_level, hidden_from_others=False, global_key__isnull=True
        )

    def includes(self, kind: str, container_id: int, trust_level: int, hidden: bool) -> bool:
        """Whether an own recipient of this kind, container, trust level and hidden flag is
        exported (a recipient hidden from other organizations never is)."""
        return (
            not hidden
            and trust_level <= self.trust_level
            and kind in self.kinds.get(container_id, ())
        )

    def tally(self, cells: list[DigestCell]) -> Tally:
        """What the master should hold of this organization: (GUID, local USN) of every own
        recipient in scope, added up from the digest cells."""
        tally = Tally()
        for cell in cells:
            if not cell.imported and self.includes(
                cell.kind, cell.container_id, cell.trust_level, cell.hidden
            ):
                tally.merge(Tally.of(cell.digest, cell.count))
        return tally


def restate_scope_changes(config, scope: Scope) -> int:
    """Before an export: if the scope differs from the one the master holds our entries under,
    give fresh USNs to every recipient whose exported form changed (entered or left the scope,
    or, when the transforms changed, everything in scope), and remember the new scope. Return
    how many were restated."""
    current = scope.definition()
    previous = config.exported_scope
    config.exported_scope = current
    if not previous or previous == current:
        return 0
    own = Recipient.objects.filter(organization_id=config.organization_id)
    if previous == UNKNOWN_SCOPE:
        return changes.touch(config.organization_id, own.filter(scope.q()))
    old = Scope.from_definition(previous)
    if old.transforms != scope.transforms:
        differing = old.q() | scope.q()
    else:
        before, now = old.q(), scope.q()
        differing = (before & ~now) | (~before & now)
    return changes.touch(config.organization_id, own.filter(differing))
