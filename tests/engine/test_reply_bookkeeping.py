"""What one reply part does to a requestor's records (requestor.importer), rule by rule: the
master USN and the master's fingerprint at it, a new master epoch, which parts are applied and
when a full reply sweeps, the run the part answers and its counts, a full export asked for
again, a repair carried out, the entries set aside and tried again, the local USNs of the
contacts written, and the import history's rows.

The parts are made here (signed by the master and passed through the inbox, or handed to the
importer directly where only the bookkeeping is looked at), so that each test states the USNs
and entries it is about."""

import itertools
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from directory import changes
from directory.constants import GENERAL_ATTRIBUTES
from directory.models import Organization, Recipient
from requestor import importer, verify
from requestor.models import (
    Conflict,
    FilteredEntry,
    ImportedChange,
    RequestorConfig,
    Run,
    Verification,
)
from tests.engine.conftest import MASTER_DN
from tests.engine.helpers import cycle, send_signed, synced_fixtures
from tests.transport.documents import reply_doc
from transport import signing, wire
from transport.constants import Direction, Status
from transport.digest import Tally
from transport.inbox import pump
from transport.models import Message

synced_base, synced = synced_fixtures()

OLD, NEW = "0" * 31 + "1", "f" * 32
_TICKS = itertools.count()


def config_of(org) -> RequestorConfig:
    return RequestorConfig.objects.get(pk=org.config.pk)


def receive_reply(org, **fields) -> None:
    """A reply part of the master to `org` handed to the importer as the inbox would (the
    part's entries are left out unless given: what is looked at here is the bookkeeping)."""
    config = config_of(org)
    document = reply_doc(
        epoch=str(config.master_epoch), entries=[], in_reply_to=str(uuid.uuid4()), ack=0
    )
    document.update(fields)
    message = Message(
        direction=Direction.INBOUND,
        status=Status.RECEIVED,
        sender=config.master_address,
        recipient=config.dn,
    )
    importer.handle_reply(message, wire.decode(wire.encode(document)))


def from_the_master(synced, org, **fields) -> Message:
    """A reply part of the master to `org`, signed, received and processed by the inbox."""
    document = reply_doc(
        sender={"organization": "ORG1", "address": MASTER_DN},
        sequence=signing.now_ms() + next(_TICKS),  # increasing within a millisecond too
        epoch=str(config_of(org).master_epoch),
        entries=[],
        in_reply_to=str(uuid.uuid4()),
        ack=0,
    )
    document.update(fields)
    message = send_signed(synced["ORG1"].organization, MASTER_DN, config_of(org).dn, document)
    pump()
    message.refresh_from_db()
    return message


def full_part(synced, org, epoch, batch, part, after, through, **fields) -> Message:
    """Part `part` of 2 of the master's full reply `batch` in `epoch`, (after, through]."""
    fields = {"epoch": epoch, "full": True, "batch": batch, "part": part, "parts": 2, **fields}
    return from_the_master(synced, org, **fields, after=after, through=through)


def standing(org) -> tuple:
    """Where the requestor stands with its master: epoch, master USN, fingerprint at it."""
    config = config_of(org)
    return str(config.master_epoch), config.master_usn, config.master_fingerprint


def entry(origin: str, usn: int, smtp: str, name: str) -> dict:
    return {
        "key": f"{origin}:{uuid.uuid4()}",
        "origin": origin,
        "op": "upsert",
        "kind": "mailbox",
        "usn": usn,
        "attrs": {"display_name": name, "alias": name.split()[0].lower(), "primary_smtp": smtp},
    }


def as_listed(contact: Recipient, usn: int) -> dict:
    """The master's entry of `contact` as the requestor holds it, at master USN `usn`."""
    attrs = {name: getattr(contact, name) for name in GENERAL_ATTRIBUTES}
    return {
        "key": contact.global_key,
        "origin": contact.origin_organization,
        "op": "upsert",
        "kind": "mailbox",
        "usn": usn,
        "attrs": {name: value for name, value in attrs.items() if value},
    }


def an_entry_set_aside(synced, org) -> dict:
    """An entry of ORG3 the master sends `org`, set aside: a local recipient (alias desk)
    holds its address."""
    org.add(alias="desk", primary_smtp="shared@partner.example")
    usn = config_of(org).master_usn
    aside = entry("ORG3", usn + 1, "shared@partner.example", "Old Desk")
    from_the_master(synced, org, after=usn, through=usn + 1, entries=[aside])
    assert Conflict.objects.filter(config=org.config).get().global_key == aside["key"]
    return aside


def free_the_desk(org) -> None:
    desk = Recipient.objects.get(organization=org.organization, alias="desk")
    desk.primary_smtp = "desk@org2.example"
    changes.save_recipient(desk)


@pytest.fixture
def org2(synced):
    """ORG2 after the initial sync, knowing the master's fingerprint OLD at its master USN."""
    org2 = synced["ORG2"]
    RequestorConfig.objects.filter(pk=org2.config.pk).update(master_fingerprint=OLD)
    assert config_of(org2).master_usn >= 5
    return org2


# The part's (after, through) from the requestor's master USN U, and its fingerprint, then the
# master USN and the fingerprint the requestor holds after it. The fingerprint is the master's
# at exactly the requestor's master USN, or none when it does not know that one.
@pytest.mark.parametrize(
    ("span", "fingerprint", "expected"),
    [
        ((0, 5), NEW, (5, NEW)),  # a part that moves it on gives its fingerprint,
        ((0, 5), None, (5, "")),  # or none, and the old one is no longer at that USN
        ((-2, 0), NEW, (0, NEW)),  # a part that ends where it is tells the fingerprint there
        ((-2, 0), None, (0, OLD)),  # and one without any leaves it as it is;
        ((-5, -2), NEW, (0, OLD)),  # a part that ends before, whatever it says, changes nothing
    ],
    ids=["ahead", "ahead-without", "at", "at-without", "behind"],
)
def test_it_keeps_the_masters_fingerprint_at_its_master_usn(org2, span, fingerprint, expected):
    usn = config_of(org2).master_usn
    after, through = (usn + step for step in span)

    receive_reply(org2, after=after, through=through, fingerprint=fingerprint)

    config = config_of(org2)
    assert (config.master_usn - usn, config.master_fingerprint) == expected


@pytest.mark.parametrize(
    ("answers", "asked_again"),
    [("its export", True), ("its full export", False), ("an unknown export", True)],
)
def test_a_reply_asking_for_everything_again_is_heeded_once(org2, answers, asked_again):
    # An administrator at the master rejected a held export: the master's replies ask for a
    # full export until one comes. The reply to that full export still carries the request
    # (the master had not seen it yet): heeding it again would start over for ever.
    run = cycle(org2)
    Run.objects.filter(pk=run.pk).update(full_export=answers == "its full export")
    config = config_of(org2)
    assert (config.last_export_batch, config.requestor_usn) == (run.batch, run.export_through)
    in_reply_to = uuid.uuid4() if answers == "an unknown export" else run.batch
    usn = config.master_usn

    receive_reply(
        org2,
        in_reply_to=str(in_reply_to),
        after=usn,
        through=usn + 1,
        ack=run.export_through,
        export_all=True,
    )

    config = config_of(org2)
    if asked_again:
        assert (config.last_export_batch, config.requestor_usn) == (None, 0)
    else:
        assert (config.last_export_batch, config.requestor_usn) == (run.batch, run.export_through)
    assert config.master_usn == usn + 1


def test_a_reply_naming_another_organizations_export_leaves_its_run_alone(synced):
    # Two requestors of one installation: a reply part to ORG2 that names an export of ORG3's
    # (a master's mistake, or a forged reference) is counted in no run of ORG3's.
    org2, org3 = synced["ORG2"], synced["ORG3"]
    theirs = cycle(org3)
    columns = ["status", "reply_parts_applied", "acknowledged", "master_lag", "finished_at"]
    before = Run.objects.filter(pk=theirs.pk).values(*columns).get()
    usn = config_of(org2).master_usn

    receive_reply(org2, in_reply_to=str(theirs.batch), after=usn, through=usn + 3, ack=1)

    assert Run.objects.filter(pk=theirs.pk).values(*columns).get() == before
    assert config_of(org2).master_usn == usn + 3


def test_a_new_master_epoch_starts_over_with_the_first_part_of_a_full_reply(synced, org2):
    # The master was restored, or is another one: its USNs start over. Only a full reply of
    # the new epoch, from its first part, tells what the address book holds now.
    shown = org2.contacts().count()
    assert shown > 0 and org2.hidden().count() == 0
    old_epoch, epoch, batch = config_of(org2).master_epoch, str(uuid.uuid4()), str(uuid.uuid4())

    partial = from_the_master(synced, org2, epoch=epoch, full=False, after=0, through=3)
    early, listed = org2.contacts().order_by("pk")[:2]
    second = full_part(
        synced, org2, epoch, batch, 2, 4, 9, fingerprint=NEW, entries=[as_listed(listed, 5)]
    )

    assert (partial.status, partial.error) == (
        Status.REJECTED,
        f"This reply belongs to master epoch {epoch}, but this requestor follows epoch "
        f"{old_epoch}; a full reply will replace it.",
    )
    assert (second.status, second.error) == (
        Status.DEFERRED,
        "Waiting for the first part of the master's full reply.",
    )
    assert config_of(org2).master_epoch == old_epoch

    first = full_part(synced, org2, epoch, batch, 1, 0, 4, entries=[as_listed(early, 2)])

    assert first.status == Status.PROCESSED
    second.refresh_from_db()
    assert second.status == Status.PROCESSED  # tried again once the first part was applied
    assert standing(org2) == (epoch, 9, NEW)
    config = config_of(org2)
    # The full reply, whole, listed two of them, one in each part: the others are hidden for
    # their grace period, once the last part was applied (the first did not take the one
    # listed in the second out).
    assert (config.full_reply_pending, config.full_reply_batch) == (False, None)
    assert sorted(org2.contacts().values_list("pk", "master_usn")) == [
        (early.pk, 2),
        (listed.pk, 5),
    ]
    assert org2.hidden().count() == shown - 2
    history = ImportedChange.objects.filter(global_key=listed.global_key, batch=batch)
    assert list(history.values_list("op", flat=True)) == ["updated"]


def test_the_first_part_of_a_new_epochs_full_reply_waits_for_the_rest(synced, org2):
    set_aside = an_entry_set_aside(synced, org2)
    # An earlier reply of two parts, both applied: its second part is not this reply's.
    usn, earlier = config_of(org2).master_usn, str(uuid.uuid4())
    for part in (1, 2):
        fields = {"batch": earlier, "part": part, "parts": 2, "after": usn + part - 1}
        assert (
            from_the_master(synced, org2, **fields, through=usn + part).status == Status.PROCESSED
        )
    epoch, batch = str(uuid.uuid4()), str(uuid.uuid4())
    shown = org2.contacts().count()
    kept = org2.contacts().order_by("pk").first()
    started = timezone.now()

    # It lists one contact as it is, at the new epoch's USN 1.
    first = full_part(synced, org2, epoch, batch, 1, 0, 4, entries=[as_listed(kept, 1)])

    assert first.status == Status.PROCESSED
    assert standing(org2) == (epoch, 4, "")
    config = config_of(org2)
    assert (config.full_reply_pending, str(config.full_reply_batch)) == (True, batch)
    assert config.full_reply_requested_at >= started
    # What the old epoch's USNs said of the contacts and of the entries set aside means nothing
    # now (the digests follow); the contact listed is at its new USN, and none is taken out
    # before the rest of the reply has come.
    usns = dict(org2.contacts().values_list("global_key", "master_usn"))
    assert usns == {key: 1 if key == kept.global_key else 0 for key in usns}
    assert Conflict.objects.get(global_key=set_aside["key"]).master_usn == 0
    counted = Tally()
    for key, at in usns.items():
        counted.add(key, at)
    assert changes.contacts_tally(org2.organization.pk).hex == counted.hex
    assert (org2.contacts().count(), org2.hidden().count()) == (shown, 0)


def test_an_entry_held_at_its_master_usn_is_not_written_again(synced, org2):
    # A full reply lists every entry: those the requestor holds as they are (at the same master
    # USN) are left alone, even if the part says otherwise of them (it cannot, from a master).
    contact = org2.contacts().order_by("pk").first()
    before = Recipient.objects.filter(pk=contact.pk).values().get()
    listed = as_listed(contact, contact.master_usn)
    listed["attrs"]["display_name"] = "Not Written"
    usn = config_of(org2).master_usn

    reply = from_the_master(
        synced, org2, full=True, part=1, parts=2, after=0, through=usn + 1, entries=[listed]
    )

    assert reply.status == Status.PROCESSED
    assert Recipient.objects.filter(pk=contact.pk).values().get() == before
    assert not ImportedChange.objects.filter(
        organization=org2.organization, global_key=contact.global_key, batch=reply.batch
    ).exists()


def test_a_new_epoch_with_nothing_in_it_takes_every_contact_out(synced, org2):
    # A master that starts over empty: its full reply ends at USN 0, without a fingerprint.
    epoch = str(uuid.uuid4())

    reply = from_the_master(synced, org2, epoch=epoch, full=True, after=0, through=0)

    assert reply.status == Status.PROCESSED
    assert standing(org2) == (epoch, 0, "")
    assert not org2.contacts().exists() and org2.hidden().count() > 0


@pytest.mark.parametrize("ends", [0, -2], ids=["where-it-is", "before"])
def test_a_part_the_requestor_is_already_past_adds_nothing(synced, org2, ends):
    # Its entries are older than what was applied since (only a full reply the requestor
    # waits for is applied whatever its USNs).
    usn = config_of(org2).master_usn
    late = entry("ORG3", usn + ends, "late@org3.example", "Late Comer")

    reply = from_the_master(synced, org2, after=usn + ends - 1, through=usn + ends, entries=[late])

    assert reply.status == Status.PROCESSED
    assert not org2.contacts().filter(global_key=late["key"]).exists()
    assert config_of(org2).master_usn == usn


def test_a_part_after_a_gap_waits_for_the_parts_before_it(synced, org2):
    usn = config_of(org2).master_usn

    reply = from_the_master(synced, org2, after=usn + 2, through=usn + 4)

    assert (reply.status, reply.error) == (
        Status.DEFERRED,
        f"Waiting for master USNs ({usn}, {usn + 2}] before this part.",
    )


def test_set_aside_entries_are_tried_again_after_the_whole_reply(synced, org2):
    # An entry set aside because a local recipient held its address is tried again once that
    # address is free, after the last part of a reply: an entry of the reply that takes the
    # address meanwhile is the master's current word and keeps it; the old one stays aside.
    aside = an_entry_set_aside(synced, org2)
    free_the_desk(org2)
    usn = config_of(org2).master_usn

    batch = str(uuid.uuid4())
    other = entry("ORG3", usn + 1, "someone@org3.example", "Someone Else")
    taker = entry("ORG1", usn + 2, "shared@partner.example", "New Desk")
    for part, (after, item) in enumerate([(usn, other), (usn + 1, taker)], start=1):
        fields = {"batch": batch, "part": part, "parts": 2, "after": after}
        from_the_master(synced, org2, **fields, through=after + 1, entries=[item])

    holder = org2.contacts().get(primary_smtp="shared@partner.example")
    assert holder.global_key == taker["key"]
    assert Conflict.objects.filter(config=org2.config).get().global_key == aside["key"]


# A full reply that ends where the requestor already is: applied (its entries written, the
# contacts it does not list taken out) only if the requestor waits for it. Either it is the
# full reply being applied, or one was asked for and this one answers an export sent since.
@pytest.mark.parametrize(
    ("pending", "answers", "started", "applied"),
    [
        (True, "a run", 1, True),  # the run started after the request
        (True, "a run", 0, True),  # at the very moment of it
        (True, "a run", -1, False),  # before it: an older full reply, arriving late
        (False, "a run", 1, False),  # none asked for
        (True, "nothing known", None, False),  # an export this requestor has no run of
        (False, "the batch", None, True),  # the full reply whose first part was applied
    ],
    ids=["after", "at", "before", "not-asked", "unknown-export", "same-batch"],
)
def test_a_full_reply_that_brings_nothing_new_is_applied_only_when_waited_for(
    synced, org2, pending, answers, started, applied
):
    usn, asked = config_of(org2).master_usn, timezone.now() - timedelta(minutes=5)
    run, batch = cycle(org2), uuid.uuid4()
    if started is not None:
        Run.objects.filter(pk=run.pk).update(started_at=asked + timedelta(seconds=started))
    RequestorConfig.objects.filter(pk=org2.config.pk).update(
        full_reply_pending=pending,
        full_reply_requested_at=asked,
        full_reply_batch=batch if answers == "the batch" else None,
    )
    shown = org2.contacts().count()
    listed = entry("ORG3", usn, "listed@org3.example", "Listed Only")
    in_reply_to = run.batch if answers == "a run" else uuid.uuid4()

    reply = from_the_master(
        synced,
        org2,
        batch=str(batch),
        in_reply_to=str(in_reply_to),
        full=True,
        after=0,
        through=usn,
        entries=[listed],
    )

    assert reply.status == Status.PROCESSED
    assert org2.contacts().filter(global_key=listed["key"]).exists() is applied
    assert org2.contacts().count() == (1 if applied else shown)


def test_a_part_reads_no_set_aside_table_while_nothing_is_set_aside(synced, org2):
    # The usual case: no conflict and no filtered entry. Settling the part's keys would look
    # for rows there are none of; the tally of what is set aside says so without a query.
    assert config_of(org2).set_aside_count == 0
    usn = config_of(org2).master_usn
    new = entry("ORG3", usn + 1, "new@org3.example", "New Person")

    with CaptureQueriesContext(connection) as queries:
        receive_reply(org2, after=usn, through=usn + 1, entries=[new])

    assert org2.contacts().filter(global_key=new["key"]).exists()
    tables = ('"requestor_conflict"', '"requestor_filteredentry"')
    assert [q["sql"] for q in queries if any(table in q["sql"] for table in tables)] == []


def test_the_history_says_what_was_set_aside_and_why(synced, org2):
    RequestorConfig.objects.filter(pk=org2.config.pk).update(
        excluded_addresses="left.out@org3.example"
    )
    aside = an_entry_set_aside(synced, org2)
    usn = config_of(org2).master_usn
    left_out = entry("ORG3", usn + 1, "left.out@org3.example", "Left Out")
    from_the_master(synced, org2, after=usn, through=usn + 1, entries=[left_out])

    conflict = Conflict.objects.get(global_key=aside["key"])
    filtered = FilteredEntry.objects.get(global_key=left_out["key"])
    columns = ["op", "origin", "master_usn", "display_name", "primary_smtp", "detail"]
    rows = ImportedChange.objects.filter(organization=org2.organization, op="set_aside")
    assert sorted(rows.values_list(*columns)) == sorted(
        [
            ("set_aside", "ORG3", usn, "Old Desk", "shared@partner.example", conflict.reason),
            (
                "set_aside",
                "ORG3",
                usn + 1,
                "",  # a filtered entry keeps no name
                "left.out@org3.example",
                filtered.get_reason_display(),
            ),
        ]
    )


@pytest.mark.parametrize("grace_days", [0, 7])
def test_a_hidden_contact_left_out_is_in_the_history_once(synced, org2, grace_days):
    # A contact hidden for its grace period whose entry comes back left out by the Import
    # Config (its address excluded meanwhile). Without a grace period any more it is removed at
    # once, and the history says so with the master USN that took it out; with one, it stays
    # hidden, and the history does not say it again.
    contact = org2.contacts().order_by("pk").first()
    usn = config_of(org2).master_usn
    gone = {**as_listed(contact, usn + 1), "op": "delete", "attrs": {}}
    from_the_master(synced, org2, after=usn, through=usn + 1, entries=[gone])
    # Hidden, at the master USN of the delete.
    assert org2.hidden().filter(pk=contact.pk).values_list("master_usn", flat=True).get() == (
        usn + 1
    )
    RequestorConfig.objects.filter(pk=org2.config.pk).update(
        grace_days=grace_days, excluded_addresses=contact.primary_smtp
    )

    back = as_listed(contact, usn + 2)
    from_the_master(synced, org2, after=usn + 1, through=usn + 2, entries=[back])

    assert org2.hidden().filter(pk=contact.pk).exists() is bool(grace_days)
    history = ImportedChange.objects.filter(global_key=contact.global_key, master_usn__gt=usn)
    removed = [] if grace_days else [("removed", usn + 2)]
    assert list(history.order_by("pk").values_list("op", "master_usn")) == [
        ("hidden", usn + 1),
        *removed,
        ("set_aside", usn + 2),
    ]


def test_a_contact_a_full_reply_no_longer_lists_is_hidden_at_its_last_master_usn(synced, org2):
    listed, dropped = org2.contacts().order_by("pk")[:2]
    others = org2.contacts().exclude(pk__in=[listed.pk, dropped.pk])
    usn = config_of(org2).master_usn
    entries = [as_listed(c, c.master_usn) for c in [listed, *others]]

    reply = from_the_master(synced, org2, full=True, after=0, through=usn + 1, entries=entries)

    assert reply.status == Status.PROCESSED
    assert list(org2.hidden().values_list("pk", "master_usn")) == [(dropped.pk, dropped.master_usn)]
    history = ImportedChange.objects.filter(global_key=dropped.global_key, batch=reply.batch)
    assert list(history.values_list("op", "master_usn")) == [("hidden", dropped.master_usn)]


def test_contacts_written_by_a_part_take_local_usns_of_their_own(synced, org2):
    # And not the organization's own USN: that one is the last its own recipients took, which
    # its exports go by.
    own = Organization.objects.get(pk=org2.organization.pk).own_usn
    usn = config_of(org2).master_usn
    new = [entry("ORG3", usn + n, f"new{n}@org3.example", f"New {n}") for n in (1, 2, 3)]
    del new[2]["attrs"]["display_name"]  # an entry may come without a name

    receive_reply(org2, after=usn, through=usn + 3, entries=new)

    written = org2.contacts().filter(global_key__in=[e["key"] for e in new])
    local = sorted(written.values_list("usn", flat=True))
    organization = Organization.objects.get(pk=org2.organization.pk)
    assert local == [organization.usn - 2, organization.usn - 1, organization.usn]
    assert organization.own_usn == own < local[0]
    history = ImportedChange.objects.filter(global_key__in=[e["key"] for e in new])
    columns = ["global_key", "op", "master_usn", "display_name", "primary_smtp", "detail"]
    assert sorted(history.values_list(*columns)) == sorted(
        (
            e["key"],
            "added",
            e["usn"],
            e["attrs"].get("display_name", ""),
            e["attrs"]["primary_smtp"],
            "",
        )
        for e in new
    )


def test_contacts_updated_by_a_part_take_the_newest_local_usns(synced, org2):
    contacts = list(org2.contacts().order_by("pk")[:3])
    usn = config_of(org2).master_usn
    changed = []
    for offset, contact in enumerate(contacts, start=1):
        listed = as_listed(contact, usn + offset)
        listed["attrs"]["display_name"] = f"Renamed {offset}"
        changed.append(listed)

    receive_reply(org2, after=usn, through=usn + 3, entries=changed)

    top = Organization.objects.get(pk=org2.organization.pk).usn
    written = Recipient.objects.filter(pk__in=[c.pk for c in contacts])
    assert sorted(written.values_list("usn", flat=True)) == [top - 2, top - 1, top]


def test_an_updates_history_names_the_entrys_attributes_not_the_alias_chosen_here(synced, org2):
    # The alias is the requestor's own choice (the source's, or a fallback where that one is
    # taken here), not an attribute of the entry: it is not reported as changed.
    contact = org2.contacts().order_by("pk").first()
    usn = config_of(org2).master_usn
    listed = as_listed(contact, usn + 1)
    listed["attrs"].update(alias="renamed.alias", title="Chief Tester")

    receive_reply(org2, after=usn, through=usn + 1, entries=[listed])

    assert Recipient.objects.get(pk=contact.pk).alias == "renamed.alias"
    history = ImportedChange.objects.filter(global_key=contact.global_key, master_usn=usn + 1)
    assert list(history.values_list("op", "detail")) == [("updated", "title")]


def test_a_run_counts_what_its_part_imports_and_the_set_aside_entries_freed_after_it(synced, org2):
    run = cycle(org2)
    aside = an_entry_set_aside(synced, org2)
    free_the_desk(org2)
    usn = config_of(org2).master_usn
    new = entry("ORG3", usn + 1, "new@org3.example", "New Person")

    receive_reply(org2, in_reply_to=str(run.batch), after=usn, through=usn + 1, entries=[new])

    imported = org2.contacts().filter(global_key__in=[aside["key"], new["key"]])
    assert imported.count() == 2
    assert Run.objects.get(pk=run.pk).imported == run.imported + 2


def test_a_run_counts_the_contacts_its_part_updates_and_those_restored_after_it(synced, org2):
    # A contact hidden when its entry moved to an address a local recipient holds comes back
    # once that address is free: counted with the contacts the part itself updated.
    run = cycle(org2)
    moved, renamed = org2.contacts().order_by("pk")[:2]
    desk = org2.add(alias="desk", primary_smtp="shared@partner.example")
    usn = config_of(org2).master_usn
    taken = as_listed(moved, usn + 1)
    taken["attrs"]["primary_smtp"] = "shared@partner.example"
    from_the_master(synced, org2, after=usn, through=usn + 1, entries=[taken])
    assert org2.hidden().filter(pk=moved.pk).exists()
    desk.primary_smtp = "desk@org2.example"
    changes.save_recipient(desk)
    listed = as_listed(renamed, usn + 2)
    listed["attrs"]["display_name"] = "Renamed Meanwhile"

    receive_reply(
        org2, in_reply_to=str(run.batch), after=usn + 1, through=usn + 2, entries=[listed]
    )

    assert org2.contacts().get(pk=moved.pk).primary_smtp == "shared@partner.example"
    assert org2.contacts().get(pk=renamed.pk).display_name == "Renamed Meanwhile"
    assert Run.objects.get(pk=run.pk).updated == run.updated + 2


def test_a_set_aside_entry_kept_without_its_attributes_is_not_tried_again(synced, org2):
    # Conflicts recorded before their attributes were kept have none: even with their address
    # free, they wait for the master's next word on the entry rather than become empty contacts.
    usn = config_of(org2).master_usn
    legacy = Conflict.objects.create(
        config=org2.config,
        global_key=f"ORG3:{uuid.uuid4()}",
        origin="ORG3",
        display_name="Old Record",
        address="free@org3.example",
        reason="The address belongs to a recipient of this organization.",
        master_usn=usn,
        attrs={},
    )
    tally = Tally()
    tally.add(legacy.global_key, usn)
    RequestorConfig.objects.filter(pk=org2.config.pk).update(
        set_aside_digest=tally.hex, set_aside_count=1
    )
    before = Conflict.objects.filter(pk=legacy.pk).values().get()

    receive_reply(org2, after=usn, through=usn + 1)

    assert Conflict.objects.filter(pk=legacy.pk).values().get() == before
    assert not Recipient.objects.filter(global_key=legacy.global_key).exists()


def test_a_freed_entry_the_import_config_now_leaves_out_is_recorded_as_left_out(synced, org2):
    aside = an_entry_set_aside(synced, org2)
    free_the_desk(org2)
    RequestorConfig.objects.filter(pk=org2.config.pk).update(
        excluded_addresses="shared@partner.example"
    )
    usn = config_of(org2).master_usn

    receive_reply(org2, after=usn, through=usn + 1)

    assert not Conflict.objects.filter(global_key=aside["key"]).exists()
    filtered = FilteredEntry.objects.get(global_key=aside["key"])
    assert (filtered.reason, filtered.master_usn) == (FilteredEntry.Reason.ADDRESS, aside["usn"])
    assert not org2.contacts().filter(global_key=aside["key"]).exists()


def test_two_freed_entries_of_one_address_one_is_imported_the_other_stays_aside(synced, org2):
    # Two origins with the same address, both set aside while a local recipient held it.
    first = an_entry_set_aside(synced, org2)
    usn = config_of(org2).master_usn
    second = entry("ORG1", usn + 1, "shared@partner.example", "Other Desk")
    second["kind"] = "distribution_list"
    from_the_master(synced, org2, after=usn, through=usn + 1, entries=[second])
    free_the_desk(org2)

    receive_reply(org2, after=usn + 1, through=usn + 2)

    holder = org2.contacts().get(primary_smtp="shared@partner.example")
    [left] = Conflict.objects.filter(config=org2.config)
    assert {holder.global_key, left.global_key} == {first["key"], second["key"]}
    kinds = {first["key"]: "mailbox", second["key"]: "distribution_list"}
    assert left.kind == kinds[left.global_key]


def test_an_ack_beyond_an_export_that_covered_nothing_means_a_restore(synced, org2):
    # The master acknowledges local USN 1 of an export that covered none: this organization
    # does not remember USNs the master has seen (restored from a backup). It restates its
    # recipients above that USN and sends everything again.
    run = cycle(org2)
    Run.objects.filter(pk=run.pk).update(export_through=0)
    usn = config_of(org2).master_usn

    receive_reply(org2, in_reply_to=str(run.batch), after=usn, through=usn + 1, ack=1)

    config = config_of(org2)
    assert (config.last_export_batch, config.requestor_usn) == (None, 0)


@pytest.mark.parametrize(
    ("verification", "differed"), [(None, 0), (3, 3)], ids=["unverified", "verified"]
)
def test_a_full_export_acknowledged_whole_carries_out_the_export_repair(
    synced, org2, verification, differed
):
    # The repair was asked for at the very moment the run started: the run's full export is
    # the repair. How many entries differed is what the master's verification says, if any.
    run = cycle(org2)
    Run.objects.filter(pk=run.pk).update(full_export=True)
    run.refresh_from_db()
    check = verify.verification(config_of(org2), verify.Side.EXPORT)
    Verification.objects.filter(pk=check.pk).update(
        repair_pending=True, repair_requested_at=run.started_at
    )
    usn = config_of(org2).master_usn
    fields = {"in_reply_to": str(run.batch), "ack": run.export_through}
    if verification is not None:
        digest = {"digest": "0" * 32, "count": 0}
        fields["verification"] = {"holdings": digest, "exports": digest, "changed": verification}

    receive_reply(org2, after=usn, through=usn + 1, **fields)

    check.refresh_from_db()
    assert (check.repair_pending, check.last_repair_differed) == (False, differed)
    assert Run.objects.get(pk=run.pk).repair == verify.Side.EXPORT  # the run that carried it out


def test_a_run_adds_up_what_each_part_of_its_reply_did(synced, org2):
    # Three parts, the last one empty (it closes the reply at the same master USN).
    run = cycle(org2)
    Run.objects.filter(pk=run.pk).update(
        status="waiting",
        finished_at=None,
        imported=0,
        updated=0,
        deleted=0,
        conflicts=0,
        master_lag=None,
        reply_parts=None,
        reply_parts_applied=0,
        full_reply=False,
    )
    org2.add(alias="desk", primary_smtp="shared@partner.example")
    renamed, gone = org2.contacts().order_by("pk")[:2]
    usn = config_of(org2).master_usn
    update = as_listed(renamed, usn + 1)
    update["attrs"]["display_name"] = "Renamed"
    parts = [
        (usn, usn + 2, [update, entry("ORG3", usn + 2, "new@org3.example", "New Person")]),
        (
            usn + 2,
            usn + 5,
            [
                {**as_listed(gone, usn + 3), "op": "delete", "attrs": {}},
                entry("ORG3", usn + 5, "shared@partner.example", "Taken Desk"),
            ],
        ),
        (usn + 5, usn + 5, []),
    ]
    batch = str(uuid.uuid4())
    for number, (after, through, entries) in enumerate(parts, start=1):
        fields = {"batch": batch, "part": number, "parts": 3, "in_reply_to": str(run.batch)}
        reply = from_the_master(
            synced, org2, **fields, after=after, through=through, entries=entries, ack=7
        )
        assert reply.status == Status.PROCESSED

    run.refresh_from_db()
    counted = ["imported", "updated", "deleted", "conflicts", "master_lag", "acknowledged"]
    assert [getattr(run, name) for name in counted] == [1, 1, 1, 1, 5, 7]
    assert (run.reply_parts, run.reply_parts_applied, run.status) == (3, 3, "ok")
    assert run.finished_at is not None and run.full_reply is False


def test_a_run_answered_by_a_full_reply_says_so(synced, org2):
    run = cycle(org2)
    Run.objects.filter(pk=run.pk).update(full_reply=False)
    usn = config_of(org2).master_usn
    everyone = [as_listed(c, c.master_usn) for c in org2.contacts()]

    reply = from_the_master(
        synced, org2, in_reply_to=str(run.batch), full=True, after=0, through=usn, entries=everyone
    )

    assert reply.status == Status.PROCESSED
    assert Run.objects.get(pk=run.pk).full_reply is True
