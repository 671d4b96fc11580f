"""The master's ledger: each entry's fingerprint chains onto the one before it through exactly
its USN, global key, operation and source USN, and each entry names the export that made it.

The chain is what tells a restored master from the one the requestors followed (requestors
report the fingerprint at the USN they applied): an entry it left out would let a restored
master hand out that USN a second time, for another change, unnoticed. Its formula is also a
stored format, compared across upgrades, hence computed here independently.
"""

import hashlib

from directory import changes
from directory.models import Recipient
from master.models import AllowedRequestor, LedgerEntry, MasterConfig
from tests.engine.helpers import cycle, synced_fixtures
from transport.constants import Direction, MessageKind
from transport.digest import EMPTY

synced_base, synced = synced_fixtures()


def link(previous: str, usn: int, key: str, op: str, source_usn: int) -> str:
    data = "\x1f".join([previous, str(usn), key, op, str(source_usn)]).encode()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def with_changes(synced):
    """Another cycle of ORG2 after one of its recipients changed and one was deleted."""
    org2 = synced["ORG2"]
    person = Recipient.objects.get(alias="org2user1", global_key__isnull=True)
    person.title = "Changed"
    changes.save_recipient(person)
    changes.delete_recipients(Recipient.objects.filter(alias="org2user2", global_key__isnull=True))
    cycle(org2)
    return org2


def test_each_ledger_entry_chains_onto_the_one_before(synced):
    with_changes(synced)

    rows = LedgerEntry.objects.order_by("usn").values_list(
        "usn", "global_key", "op", "source_usn", "chain"
    )
    chain = EMPTY  # a new master's history
    ops = set()
    for usn, key, op, source_usn, recorded in rows:
        chain = link(chain, usn, key, op, source_usn)
        assert recorded == chain, f"ledger entry {usn}"
        ops.add(op)
    assert ops == {"upsert", "delete"}
    assert MasterConfig.objects.get().history == chain


def test_each_ledger_entry_names_the_export_that_made_it(synced):
    org2 = with_changes(synced)

    requestors = dict(AllowedRequestor.objects.values_list("organization_name", "address"))
    entries = list(LedgerEntry.objects.select_related("message"))
    assert entries
    for entry in entries:
        message = entry.message
        assert message is not None, f"ledger entry {entry.usn}"
        assert (message.direction, message.kind) == (Direction.INBOUND, MessageKind.EXPORT)
        assert message.sender == requestors[entry.origin]
    latest = LedgerEntry.objects.filter(origin=org2.name).order_by("-usn")[:2]
    assert {entry.op for entry in latest} == {"upsert", "delete"}
    assert {entry.message_id for entry in latest} == {
        latest[0].message_id
    }  # one export part carried both
