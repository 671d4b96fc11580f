"""Export: the requestor's own changes since its requestor USN, as documents (rules 1, 6, 7)."""

import uuid
from dataclasses import dataclass

from directory.constants import GENERAL_ATTRIBUTES
from directory.models import Container, Organization, Recipient, Tombstone, allocate_usns
from requestor.models import RequestorConfig
from transport import signing, wire

ATTRIBUTES = tuple(GENERAL_ATTRIBUTES)
# Rows are read as tuples: these columns, then the General attributes in ATTRIBUTES order.
RECIPIENT_COLUMNS = ["guid", "kind", "usn", "container_id", "trust_level", *ATTRIBUTES]
GUID, KIND, USN, CONTAINER, TRUST, FIRST_ATTRIBUTE = range(6)
DISPLAY_NAME = FIRST_ATTRIBUTE + ATTRIBUTES.index("display_name")
PRIMARY_SMTP = FIRST_ATTRIBUTE + ATTRIBUTES.index("primary_smtp")


@dataclass
class Export:
    """The parts of one export batch, ready to queue."""

    batch: uuid.UUID
    full: bool
    usn_through: int
    changes: int
    parts: list[tuple[dict, bytes]]


class Scope:
    """Which recipients the requestor exports: per container (and below it), the kinds checked."""

    def __init__(self, config: RequestorConfig):
        self.trust_level = config.trust_level
        self.kinds: dict[int, set[str]] = {}
        exported = list(config.exported_containers.select_related("container"))
        if not exported:
            return
        containers = Container.objects.filter(organization_id=config.organization_id)
        for container_id, dn in containers.values_list("pk", "dn"):
            for row in exported:
                top = row.container.dn
                if dn == top or dn.startswith(top + "/"):
                    self.kinds.setdefault(container_id, set()).update(row.kinds())

    def includes(self, row: tuple) -> bool:
        """Whether a row of RECIPIENT_COLUMNS is in scope."""
        return row[TRUST] <= self.trust_level and row[KIND] in self.kinds.get(row[CONTAINER], ())


def transform(row: tuple, config: RequestorConfig) -> dict[str, str]:
    """The General attributes of a row of RECIPIENT_COLUMNS as they leave the organization:
    suffix, SMTP rewrite, sanitized; empty values left out."""
    values = row[FIRST_ATTRIBUTE:]
    if config.append_display_name or config.modify_smtp_domain:
        values = list(values)
        display_name = DISPLAY_NAME - FIRST_ATTRIBUTE
        smtp = PRIMARY_SMTP - FIRST_ATTRIBUTE
        values[display_name] += config.append_display_name
        if config.modify_smtp_domain and "@" in values[smtp]:
            local = values[smtp].rsplit("@", 1)[0]
            values[smtp] = f"{local}@{config.modify_smtp_domain.lower()}"
    attrs = {}
    for name, value in zip(ATTRIBUTES, values, strict=True):
        if not value:
            continue
        # Most values are printable and short enough: wire.sanitize_value would return them.
        if not value.isprintable() or len(value) > GENERAL_ATTRIBUTES[name]:
            value = wire.sanitize_value(name, value)
            if not value:
                continue
        attrs[name] = value
    return attrs


def _upsert(row: tuple, config: RequestorConfig, usn: int | None = None) -> dict:
    return {
        "id": str(row[GUID]),
        "op": "upsert",
        "kind": row[KIND],
        "usn": row[USN] if usn is None else usn,
        "attrs": transform(row, config),
    }


def _delete(guid: uuid.UUID, kind: str, usn: int) -> dict:
    return {"id": str(guid), "op": "delete", "kind": kind, "usn": usn, "attrs": {}}


def collect_changes(config: RequestorConfig, through: int) -> list[dict]:
    """Changes in (requestor_usn, through], oldest first; a full export lists the whole scope.

    A full export restates every object as of its snapshot USN `through`, not of the object's
    own USN: it follows a change of scope or transforms that altered no recipient, and the master
    keeps only changes newer than what it holds (rule 2). Stamped with `through`, the new
    attributes and the objects that re-enter the scope win over what the master has, while an
    older full export arriving late still loses.
    """
    scope = Scope(config)
    own = Recipient.objects.exportable().filter(
        organization_id=config.organization_id, usn__lte=through
    )
    if config.requestor_usn == 0:
        rows = own.filter(container_id__in=scope.kinds, trust_level__lte=config.trust_level)
        return [
            _upsert(row, config, usn=through)
            for row in rows.order_by("usn").values_list(*RECIPIENT_COLUMNS)
            if scope.includes(row)
        ]
    changes = []
    for row in own.filter(usn__gt=config.requestor_usn).values_list(*RECIPIENT_COLUMNS):
        if scope.includes(row):
            changes.append(_upsert(row, config))
        else:
            changes.append(_delete(row[GUID], row[KIND], row[USN]))
    tombstones = Tombstone.objects.filter(
        organization_id=config.organization_id,
        imported=False,
        usn__gt=config.requestor_usn,
        usn__lte=through,
    )
    for guid, kind, usn in tombstones.values_list("guid", "kind", "usn"):
        changes.append(_delete(guid, kind, usn))
    changes.sort(key=lambda change: change["usn"])
    return changes


def build_export(config: RequestorConfig) -> Export:
    """Build the parts of the next export batch; at least one part, since it also asks for news."""
    full = config.requestor_usn == 0
    if full:
        # A fresh local USN for the snapshot (see collect_changes); taking it waits for every
        # lower USN to commit, and changes committed after it get higher ones (rule 3).
        through = allocate_usns(config.organization_id)
    else:
        # Read the organization's USN before the changes: every USN up to it has committed
        # (rule 3), and changes committed while we read are left for the next export.
        through = Organization.objects.values_list("usn", flat=True).get(pk=config.organization_id)
    changes = collect_changes(config, through)
    batch = uuid.uuid4()
    # Sequences follow the clock as well as the counter (see transport.signing.next_sequence).
    first_sequence = signing.next_sequence(config.sequence)
    sender = {"organization": config.organization.name, "address": config.own_address}

    def render(chunks: list[list[dict]], index: int) -> dict:
        last = index == len(chunks) - 1
        if full:
            usn_from, usn_through = 0, through
        else:
            usn_from = config.requestor_usn if index == 0 else chunks[index - 1][-1]["usn"]
            usn_through = through if last else chunks[index][-1]["usn"]
        return {
            "protocol": 1,
            "type": "export",
            "sender": sender,
            "batch": str(batch),
            "part": index + 1,
            "parts": len(chunks),
            "sequence": first_sequence + index,
            "full": full,
            "master_usn": config.master_usn,
            "master_epoch": str(config.master_epoch) if config.master_epoch else None,
            "usn_from": usn_from,
            "usn_through": usn_through,
            "changes": chunks[index],
        }

    parts = wire.split(changes, config.max_message_size, render)
    return Export(batch, full, through, len(changes), parts)
