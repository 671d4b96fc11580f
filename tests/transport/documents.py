"""Valid protocol documents to start from; each test changes what it is about."""

import copy
import gzip
import random
import time
import uuid

# Sequences follow the sender's clock (milliseconds): these documents were written just now.
NOW_MS = int(time.time() * 1000)
SENDER_2 = {"organization": "ORG2", "address": "requestor@org2.example"}
MASTER = {"organization": "ORG1", "address": "master@org1.example"}


def gz(raw: bytes) -> bytes:
    return gzip.compress(raw, mtime=0)


def export_doc(**fields) -> dict:
    """An export part of ORG2 covering local USNs (10, 20] with an upsert and a delete."""
    document = {
        "protocol": 1,
        "type": "export",
        "sender": dict(SENDER_2),
        "batch": str(uuid.uuid4()),
        "part": 1,
        "parts": 1,
        "sequence": NOW_MS + 7,
        "full": False,
        "master_usn": 4,
        "master_epoch": str(uuid.uuid4()),
        "usn_from": 10,
        "usn_through": 20,
        "changes": [
            {
                "id": str(uuid.uuid4()),
                "op": "upsert",
                "kind": "mailbox",
                "usn": 12,
                "attrs": {
                    "display_name": "Ada Lovelace (ORG2)",
                    "alias": "ada",
                    "first_name": "Ada",
                    "last_name": "Lovelace",
                    "address": "12 St James's Square\nLondon",
                    "primary_smtp": "ada@org2.example",
                },
            },
            {"id": str(uuid.uuid4()), "op": "delete", "kind": "mailbox", "usn": 20, "attrs": {}},
        ],
    }
    document.update(copy.deepcopy(fields))
    return document


def reply_doc(**fields) -> dict:
    """A reply part of the master covering master USNs (3, 9] with an upsert and a delete."""
    document = {
        "protocol": 1,
        "type": "reply",
        "sender": dict(MASTER),
        "batch": str(uuid.uuid4()),
        "part": 1,
        "parts": 1,
        "sequence": NOW_MS + 3,
        "full": False,
        "in_reply_to": str(uuid.uuid4()),
        "epoch": str(uuid.uuid4()),
        "ack": 20,
        "after": 3,
        "through": 9,
        "entries": [
            {
                "key": f"ORG3:{uuid.uuid4()}",
                "origin": "ORG3",
                "op": "upsert",
                "kind": "distribution_list",
                "usn": 5,
                "attrs": {"display_name": "Everyone at ORG3", "primary_smtp": "all@org3.com"},
            },
            {
                "key": f"ORG2:{uuid.uuid4()}",
                "origin": "ORG2",
                "op": "delete",
                "kind": "mailbox",
                "usn": 9,
                "attrs": {},
            },
        ],
    }
    document.update(copy.deepcopy(fields))
    return document


# A seed whose payload has a byte that can be altered without changing the decoded document
# (tests/transport/test_wire.py says how).
CORRUPTION_SEED = 65


def seeded_export_doc(seed: int) -> dict:
    """export_doc() with its batch, epoch and object ids drawn from `seed`: the same bytes on
    every run."""
    rng = random.Random(seed)

    def new_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    document = export_doc(batch=new_id(), master_epoch=new_id(), sequence=7)
    for change in document["changes"]:
        change["id"] = new_id()
    return document
