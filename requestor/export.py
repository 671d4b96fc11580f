"""Export: the requestor's own changes since its requestor USN, as documents
(docs/protocol.md, rules 1, 2, 9)."""

import uuid
from dataclasses import dataclass

from directory.constants import GENERAL_ATTRIBUTES
from directory.models import Organization, Recipient, Tombstone
from requestor.models import RequestorConfig
from requestor.scope import Scope, restate_scope_changes
from transport import signing, wire
from transport.constants import PROTOCOL_VERSION, MessageKind, Op

ATTRIBUTES = tuple(GENERAL_ATTRIBUTES)
# Rows are read as tuples: these columns, then the General attributes in ATTRIBUTES order.
RECIPIENT_COLUMNS = [
    "guid",
    "kind",
    "usn",
    "container_id",
    "trust_level",
    "hidden_from_others",
    *ATTRIBUTES,
]
GUID, KIND, USN, CONTAINER, TRUST, HIDDEN, FIRST_ATTRIBUTE = range(7)
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


def transform(row: tuple, scope: Scope) -> dict[str, str]:
    """The General attributes of a row of RECIPIENT_COLUMNS as they leave the organization:
    suffix, SMTP rewrite, sanitized; empty values left out."""
    values = row[FIRST_ATTRIBUTE:]
    if scope.append_display_name or scope.modify_smtp_domain:
        values = list(values)
        display_name = DISPLAY_NAME - FIRST_ATTRIBUTE
        smtp = PRIMARY_SMTP - FIRST_ATTRIBUTE
        values[display_name] += scope.append_display_name
        if scope.modify_smtp_domain and "@" in values[smtp]:
            local = values[smtp].rsplit("@", 1)[0]
            values[smtp] = f"{local}@{scope.modify_smtp_domain.lower()}"
    attrs = {}
    # (A row holds one value per attribute: `strict` only says so, hence no mutants.)
    for name, value in zip(ATTRIBUTES, values, strict=True):  # pragma: no mutate
        if not value:
            continue
        # Most values are printable and short enough: wire.sanitize_value would return them (a
        # value of exactly the limit as well, hence no mutants of this fast path's bound).
        if not value.isprintable() or len(value) > GENERAL_ATTRIBUTES[name]:  # pragma: no mutate
            value = wire.sanitize_value(name, value)
            if not value:
                continue
        attrs[name] = value
    return attrs


def _upsert(row: tuple, scope: Scope) -> dict:
    return {
        "id": str(row[GUID]),
        "op": Op.UPSERT.value,
        "kind": row[KIND],
        "usn": row[USN],
        "attrs": transform(row, scope),
    }


def _delete(guid: uuid.UUID, kind: str, usn: int) -> dict:
    return {"id": str(guid), "op": Op.DELETE.value, "kind": kind, "usn": usn, "attrs": {}}


def collect_changes(config: RequestorConfig, scope: Scope, through: int) -> list[dict]:
    """Changes in (requestor_usn, through], oldest first; a full export lists the whole scope.

    Every change carries the recipient's own local USN. A change of the scope or of the
    transforms gave the recipients it concerns fresh USNs before this (requestor.scope), so the
    master, which keeps only changes newer than what it holds, takes them.
    """
    own = Recipient.objects.exportable().filter(
        organization_id=config.organization_id, usn__lte=through
    )
    if config.requestor_usn == 0:
        rows = own.filter(scope.q()).order_by("usn").values_list(*RECIPIENT_COLUMNS)
        return [_upsert(row, scope) for row in rows]
    changes = []
    for row in own.filter(usn__gt=config.requestor_usn).values_list(*RECIPIENT_COLUMNS):
        if scope.includes(row[KIND], row[CONTAINER], row[TRUST], row[HIDDEN]):
            changes.append(_upsert(row, scope))
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
    scope = Scope.of(config)
    restate_scope_changes(config, scope)
    # Read the organization's USN before the changes: every USN up to it has committed (rule 4),
    # and changes committed while we read are left for the next export.
    through = Organization.objects.values_list("usn", flat=True).get(pk=config.organization_id)
    changes = collect_changes(config, scope, through)
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
            "protocol": PROTOCOL_VERSION,
            "type": MessageKind.EXPORT,
            "sender": sender,
            "batch": str(batch),
            "part": index + 1,
            "parts": len(chunks),
            "sequence": first_sequence + index,
            "full": full,
            # 0 asks for a full reply (docs/protocol.md, rule 6).
            "master_usn": 0 if config.full_reply_pending else config.master_usn,
            "master_epoch": str(config.master_epoch) if config.master_epoch else None,
            "master_fingerprint": None
            if config.full_reply_pending or not config.master_fingerprint
            else config.master_fingerprint,
            "usn_from": usn_from,
            "usn_through": usn_through,
            "changes": chunks[index],
        }

    parts = wire.split(changes, config.max_message_size, render)
    return Export(batch, full, through, len(changes), parts)
