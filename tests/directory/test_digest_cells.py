"""An organization's digest cells add up to its recipients after any change, by any path.

The cells are kept by each change as it is written (directory.changes.CellDelta), never counted
again in passing: a change that forgot them, or counted a member in the wrong cell or at the
wrong version, would make every later verification report a difference that is not there, or
miss one that is. The oracle counts them here, from the recipients as stored: one cell per
(container, kind, trust level, hidden, imported), holding the XOR of its members' hashes and
their number; an own recipient is its GUID at its local USN, an imported contact its global key
at its master USN (0 while it has none); hidden means kept from the other organizations or in
the grace period; no empty cell is kept. Another organization's cells never move.

Each change also does what it says to the recipients it touches (fresh USNs in order, the
organization's own USN left alone by contacts, the count it returns), checked as it goes.
"""

import itertools
import uuid

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from directory import changes
from directory.constants import Kind
from directory.factories import ContainerFactory, RecipientFactory
from directory.models import DigestCell, Organization, Recipient
from transport.digest import member, to_hex

pytestmark = pytest.mark.django_db

KINDS = [Kind.MAILBOX, Kind.DISTRIBUTION_LIST, Kind.CUSTOM_RECIPIENT]
numbers = itertools.count(1)


def counted(organization_id: int) -> dict[tuple, tuple[str, int]]:
    """The oracle: the cells as they should be, counted from the recipients."""
    sums: dict[tuple, list[int]] = {}
    rows = Recipient.objects.filter(organization_id=organization_id).values(
        "container_id", "kind", "trust_level", "hidden_from_others", "hidden_at", "global_key",
        "guid", "usn", "master_usn",
    )  # fmt: skip
    for row in rows:
        imported = row["global_key"] is not None
        hidden = row["hidden_from_others"] or row["hidden_at"] is not None
        key = (row["container_id"], row["kind"], row["trust_level"], hidden, imported)
        if imported:
            identity, version = row["global_key"], row["master_usn"] or 0
        else:
            identity, version = str(row["guid"]), row["usn"]
        total = sums.setdefault(key, [0, 0])
        total[0] ^= member(identity, version)
        total[1] += 1
    return {key: (to_hex(value), count) for key, (value, count) in sums.items()}


def stored(organization_id: int) -> dict[tuple, tuple[str, int]]:
    return {
        (c.container_id, c.kind, c.trust_level, c.hidden, c.imported): (c.digest, c.count)
        for c in DigestCell.objects.filter(organization_id=organization_id)
    }


def usns(organization_id: int) -> tuple[int, int]:
    return Organization.objects.values_list("usn", "own_usn").get(pk=organization_id)


def pick(recipients: list[Recipient], choices: list[int]) -> list[Recipient]:
    """Recipients chosen by position (modulo their number), each once, in the order chosen."""
    if not recipients:
        return []
    chosen = {}
    for choice in choices:
        recipient = recipients[choice % len(recipients)]
        chosen.setdefault(recipient.pk, recipient)
    return list(chosen.values())


create = st.tuples(
    st.just("create"),
    st.integers(0, 1),
    st.sampled_from(KINDS),
    st.integers(0, 2),
    st.booleans(),
)
update = st.tuples(
    st.just("update"),
    st.integers(0, 50),
    st.sampled_from(["trust_level", "hidden_from_others", "container", "display_name"]),
    st.booleans(),  # only that field saved
)
insert = st.tuples(
    st.just("insert"),
    st.integers(1, 3),
    st.one_of(st.none(), st.integers(1, 9)),  # the contacts' master USN, or none yet
    st.booleans(),  # the trust level given, or left to its default
    st.booleans(),  # COPY (where the database has it), or bulk_create
    st.booleans(),  # GUIDs given (as a directory scan gives them), or made
    st.booleans(),  # imported contacts, or the organization's own recipients (a scan, a seed)
)
hide = st.tuples(
    st.just("hide"),
    st.lists(st.integers(0, 50), max_size=3),
    st.booleans(),  # with the delete's master USN
)
delete = st.tuples(st.just("delete"), st.lists(st.integers(0, 50), max_size=2))
touch = st.tuples(st.just("touch"), st.lists(st.integers(0, 50), max_size=3))
rebuild = st.tuples(st.just("rebuild"), st.sampled_from([None, True, False]))
operations = st.lists(
    st.one_of(create, update, insert, hide, delete, touch, rebuild), min_size=1, max_size=12
)


@pytest.fixture
def places(container, other_container):
    """Two containers of ORG1, and a recipient of ORG2 whose cells must never move."""
    second = ContainerFactory(site=container.site, name="Second")
    RecipientFactory(container=other_container)
    return [container, second], other_container.organization_id


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations)
def test_the_cells_add_up_to_the_recipients_after_any_change(places, steps):
    containers, other = places
    organization_id = containers[0].organization_id
    others = stored(other)
    with transaction.atomic():  # each example starts from the fixture's state
        for step in steps:
            apply(step, organization_id, containers)
            assert stored(organization_id) == counted(organization_id), step
            assert stored(other) == others
        transaction.set_rollback(True)


def apply(step, organization_id: int, containers) -> None:
    own = list(Recipient.objects.filter(organization_id=organization_id).order_by("pk"))
    usn, own_usn = usns(organization_id)
    match step:
        case ("create", where, kind, trust, hidden):
            n = next(numbers)
            recipient = RecipientFactory.build(
                container=containers[where],
                kind=kind,
                trust_level=trust,
                hidden_from_others=hidden,
                alias=f"new{n}",
                primary_smtp=f"new{n}@org1.example",
            )
            changes.save_recipient(recipient)
            assert usns(organization_id) == (usn + 1, usn + 1)
        case ("update", choice, field, alone):
            (recipient,) = pick(own, [choice]) or [None]
            if recipient is None:
                return
            if field == "trust_level":
                recipient.trust_level = (recipient.trust_level + 1) % 3
            elif field == "hidden_from_others":
                recipient.hidden_from_others = not recipient.hidden_from_others
            elif field == "container":
                recipient.container = next(c for c in containers if c.pk != recipient.container_id)
            else:
                recipient.display_name += "!"
            changes.save_recipient(recipient, update_fields=[field] if alone else None)
            column = "container_id" if field == "container" else field
            assert Recipient.objects.values_list(column, "usn").get(pk=recipient.pk) == (
                getattr(recipient, column),
                usn + 1,
            )
            imported = recipient.global_key is not None
            assert usns(organization_id) == (usn + 1, own_usn if imported else usn + 1)
        case ("insert", count, master_usn, with_trust, copy, with_guids, imported):
            fields = ["organization_id", "container_id", "kind", "display_name", "alias"]
            fields += ["primary_smtp", "global_key", "master_usn", "usn"]
            first = changes.allocate_usns(organization_id, count, own=not imported)
            rows = []
            for offset in range(count):
                n = next(numbers)
                rows.append(
                    (organization_id, containers[n % 2].pk, KINDS[n % 3], f"Contact {n}")
                    + (f"contact{n}", f"contact{n}@org2.example")
                    + ((f"ORG2:{n}", master_usn) if imported else (None, None))
                    + (first + offset,)
                    + ((n % 3,) if with_trust else ())
                )
            if with_trust:
                fields.append("trust_level")
            guids = [uuid.uuid4() for _ in rows] if with_guids else []
            if guids:
                fields.append("guid")
                rows = [(*row, guid) for row, guid in zip(rows, guids, strict=True)]
            assert changes.insert_recipients(organization_id, fields, rows, copy=copy) == count
            made = Recipient.objects.filter(organization_id=organization_id, usn__gt=usn)
            made = made.values_list("guid", flat=True)
            assert len(set(made)) == count
            if guids:
                assert set(made) == set(guids)
            assert usns(organization_id) == (usn + count, own_usn if imported else usn + count)
        case ("hide", choices, with_master_usn):
            chosen = pick(own, choices)
            hidden = [c for c in chosen if c.global_key is not None and c.hidden_at is None]
            before = {c.pk: (c.hidden_at, c.usn, c.master_usn) for c in chosen}
            # The delete's master USN where the caller knows it: here for the first one only.
            given_usns = {chosen[0].pk: 100} if with_master_usn and chosen else None
            assert changes.hide_contacts(organization_id, chosen, given_usns) == len(hidden)
            assert usns(organization_id) == (usn + len(hidden), own_usn)
            after = {
                r["pk"]: (r["hidden_at"], r["usn"], r["master_usn"])
                for r in Recipient.objects.filter(pk__in=before).values(
                    "pk", "hidden_at", "usn", "master_usn"
                )
            }
            for offset, contact in enumerate(hidden):
                hidden_at, new_usn, master = after.pop(contact.pk)
                assert hidden_at is not None
                assert new_usn == usn + 1 + offset
                assert master == (given_usns or {}).get(contact.pk, before[contact.pk][2])
            assert after == {pk: before[pk] for pk in after}  # the others are left alone
        case ("delete", choices):
            chosen = pick(own, choices)
            assert changes.delete_recipients(chosen) == len(chosen)
            assert not Recipient.objects.filter(pk__in=[r.pk for r in chosen]).exists()
        case ("touch", choices):
            chosen = pick(own, choices)
            restated = sorted(
                (r for r in chosen if r.global_key is None), key=lambda r: (r.usn, r.pk)
            )
            queryset = Recipient.objects.filter(pk__in=[r.pk for r in chosen])
            assert changes.touch(organization_id, queryset) == len(restated)
            now = dict(queryset.values_list("pk", "usn"))
            assert [now[r.pk] for r in restated] == list(range(usn + 1, usn + 1 + len(restated)))
            last = usn + len(restated)
            assert usns(organization_id) == ((last, last) if restated else (usn, own_usn))
        case ("rebuild", imported):
            changes.rebuild_cells(organization_id, imported=imported)


def test_a_delta_saved_twice_writes_its_changes_once(container):
    recipient = RecipientFactory(container=container)
    assert stored(container.organization_id) == counted(container.organization_id) != {}
    delta = changes.CellDelta(container.organization_id)
    delta.remove(recipient)
    with transaction.atomic():
        delta.save()
        delta.save()
    assert stored(container.organization_id) == {}


def test_a_cell_that_does_not_add_up_is_kept_for_the_verification_to_see(container):
    """Only a cell that is truly empty (no member, nothing in its digest) is deleted: one whose
    count and digest disagree was broken by something else, and deleting it would hide that."""
    first = RecipientFactory(container=container, trust_level=1)
    second = RecipientFactory(container=container, trust_level=2)
    one, two = (DigestCell.objects.get(trust_level=level) for level in (1, 2))
    # Broken around directory.changes: one cell counts a member too many, the other's digest
    # lacks its member.
    DigestCell.objects.filter(pk=one.pk).update(count=2)
    DigestCell.objects.filter(pk=two.pk).update(digest=to_hex(0))
    changes.delete_recipients([first, second])
    left = {c.pk: (c.count, c.digest) for c in DigestCell.objects.all()}
    assert left == {
        one.pk: (1, to_hex(0)),  # a count left, nothing in the digest
        two.pk: (0, to_hex(member(str(second.guid), second.usn))),  # no member, a digest
    }


def test_the_contacts_tally_of_cells_already_read_reads_nothing_again(container):
    RecipientFactory(container=container)  # own: not among the contacts
    contact = RecipientFactory(container=container, global_key="ORG2:abc", master_usn=7)
    known = changes.cells(container.organization_id)
    with CaptureQueriesContext(connection) as queries:
        tally = changes.contacts_tally(container.organization_id, known)
    assert len(queries) == 0
    assert (tally.value, tally.count) == (member("ORG2:abc", 7), 1)
    changes.hide_contacts(container.organization_id, [contact])
    assert changes.contacts_tally(container.organization_id).count == 0  # read again: hidden
