"""The import's handling of addresses and aliases taken, given up and claimed within one reply
part (requestor.importer: who holds what, what the part's own contacts release, which entries
become conflicts, which alias each contact gets).

The parts are applied directly, entry by entry, to one organization: each test states exactly
which contact ends up with which address and alias, and why an entry was set aside.
"""

import hashlib

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from directory.constants import Kind, Role
from requestor.importer import Counts, _choose_aliases, _fallback_alias, apply_entries
from requestor.models import Conflict
from tests.engine.conftest import make_org
from transport import wire
from transport.digest import Tally


@pytest.fixture
def org(db):
    return make_org(2, Role.REQUESTOR)


def entry(
    key: str, smtp: str | None, alias: str | None = None, usn: int = 1, kind="mailbox", **attrs
) -> wire.Entry:
    values = {"display_name": f"Name of {key}", **attrs}
    if smtp is not None:
        values["primary_smtp"] = smtp
    if alias is not None:
        values["alias"] = alias
    return wire.Entry(key=key, origin="ORG1", op="upsert", kind=kind, usn=usn, attrs=values)


def deleted(key: str, usn: int) -> wire.Entry:
    return wire.Entry(key=key, origin="ORG1", op="delete", kind="mailbox", usn=usn, attrs={})


def apply(org, *entries: wire.Entry) -> Counts:
    """Apply one reply part's entries, as the import does inside its transaction."""
    config = org.config
    counts = Counts()
    set_aside = Tally.of(config.set_aside_digest, config.set_aside_count)
    apply_entries(config, list(entries), counts, set_aside)
    config.set_aside_digest, config.set_aside_count = set_aside.hex, set_aside.count
    config.save(update_fields=["set_aside_digest", "set_aside_count"])
    return counts


def fallback(alias: str, key: str) -> str:
    """The alias made unique with a hash of the key (8 hex digits of its SHA-1)."""
    return f"{alias}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def held(org) -> dict[str, tuple[str, str]]:
    """(primary SMTP, alias) of every contact in the address book, by global key."""
    rows = org.contacts().values_list("global_key", "primary_smtp", "alias")
    return {key: (smtp, alias) for key, smtp, alias in rows}


def conflicts(org) -> dict[str, Conflict]:
    return {row.global_key: row for row in Conflict.objects.filter(config=org.config)}


def test_a_contact_keeps_its_alias_when_a_new_entry_of_the_part_wants_it_too(org):
    apply(org, entry("x", "ann@org1.example", "ann"))

    # The newcomer comes first in the part, in another case: the contact still keeps its alias.
    apply(org, entry("y", "other@org1.example", "Ann"), entry("x", "ann@org1.example", "ann", 2))

    assert held(org) == {
        "x": ("ann@org1.example", "ann"),
        "y": ("other@org1.example", fallback("Ann", "y")),
    }
    assert not conflicts(org)


def test_an_entry_cannot_take_the_address_a_contact_of_the_same_part_keeps(org):
    apply(org, entry("x", "ann@org1.example", "ann"))

    counts = apply(
        org,
        entry("y", "Ann@ORG1.example", "newcomer"),
        entry("x", "ann@org1.example", "ann", 2, display_name="Ann, renamed"),
    )

    assert held(org) == {"x": ("ann@org1.example", "ann")}
    assert org.contacts().get().display_name == "Ann, renamed"
    (conflict,) = conflicts(org).values()
    assert conflict.global_key == "y"
    assert conflict.reason == "ann@org1.example belongs to the contact imported for x."
    assert conflict.local_recipient_id is None
    assert (counts.updated, counts.imported, len(counts.conflicts)) == (1, 0, 1)


def test_addresses_and_aliases_given_up_in_a_part_are_free_for_its_other_entries(org):
    apply(
        org,
        entry("x", "ann@org1.example", "ann"),
        entry("z", "zed@org1.example", "zed"),
        entry("q", "quiet@org1.example", "quiet"),
    )

    # The newcomers come before the entries that give up what they take.
    counts = apply(
        org,
        entry("y", "ANN@org1.example", "Ann"),
        entry("w", "zed@org1.example", "zed"),
        entry("x", "ann.moved@org1.example", "ann.moved", 2),
        deleted("z", 2),
        # Moves to an address and alias nobody else in the part wants.
        entry("q", "quiet.moved@org1.example", "quiet.moved", 2),
    )

    assert held(org) == {
        "x": ("ann.moved@org1.example", "ann.moved"),
        "y": ("ANN@org1.example", "Ann"),
        "w": ("zed@org1.example", "zed"),
        "q": ("quiet.moved@org1.example", "quiet.moved"),
    }
    assert not conflicts(org)
    assert (counts.imported, counts.updated, counts.deleted, counts.readdressed) == (2, 2, 1, 2)


def test_a_contact_that_moves_keeps_its_alias_and_gives_up_only_its_address(org):
    apply(org, entry("x", "ann@org1.example", "ann"))

    apply(
        org, entry("y", "ann@org1.example", "ann"), entry("x", "ann.moved@org1.example", "ann", 2)
    )

    assert held(org) == {
        "x": ("ann.moved@org1.example", "ann"),
        "y": ("ann@org1.example", fallback("ann", "y")),
    }


def test_two_contacts_swap_their_aliases_in_one_part(org):
    apply(org, entry("x", "x@org1.example", "ann"), entry("y", "y@org1.example", "bob"))

    counts = apply(
        org, entry("x", "x@org1.example", "bob", 2), entry("y", "y@org1.example", "ann", 2)
    )

    assert held(org) == {"x": ("x@org1.example", "bob"), "y": ("y@org1.example", "ann")}
    assert (counts.updated, counts.readdressed, len(counts.conflicts)) == (2, 0, 0)


def test_two_contacts_swap_their_addresses_in_one_part(org):
    apply(org, entry("x", "ann@org1.example", "ann"), entry("y", "bob@org1.example", "bob"))

    counts = apply(
        org, entry("x", "bob@org1.example", "ann", 2), entry("y", "ann@org1.example", "bob", 2)
    )

    assert held(org) == {"x": ("bob@org1.example", "ann"), "y": ("ann@org1.example", "bob")}
    assert (counts.updated, counts.readdressed, len(counts.conflicts)) == (2, 2, 0)


def test_an_address_or_alias_held_by_a_recipient_of_the_organization_in_another_case(org):
    desk = org.add(
        alias="Desk",
        display_name="Partner Desk",
        kind=Kind.CUSTOM_RECIPIENT,
        primary_smtp="Desk@Partner.example",
        container=org.contractors,
    )

    counts = apply(
        org,
        entry("y", "desk@partner.example", "desk", 7, title="Clerk", kind="custom_recipient"),
        entry("v", "visitor@partner.example", "DESK"),
    )

    assert held(org) == {"v": ("visitor@partner.example", fallback("DESK", "v"))}
    conflict = conflicts(org)["y"]
    assert conflict.reason == "desk@partner.example belongs to a recipient of this organization."
    assert conflict.local_recipient_id == desk.pk
    assert (conflict.address, conflict.display_name, conflict.origin) == (
        "desk@partner.example",
        "Name of y",
        "ORG1",
    )
    assert (conflict.master_usn, conflict.kind) == (7, "custom_recipient")
    assert conflict.attrs == {
        "display_name": "Name of y",
        "primary_smtp": "desk@partner.example",
        "alias": "desk",
        "title": "Clerk",
    }
    assert [row.global_key for row in counts.conflicts] == ["y"]


def test_a_hidden_contact_holds_no_address(org):
    org.config.grace_days = 30
    org.config.save(update_fields=["grace_days"])
    apply(org, entry("x", "ann@org1.example", "ann"))
    apply(org, deleted("x", 2))
    assert org.hidden().count() == 1

    apply(org, entry("y", "ann@org1.example", "ann"))

    assert held(org) == {"y": ("ann@org1.example", "ann")}


def test_entries_of_one_part_claiming_one_address(org):
    counts = apply(
        org,
        entry("y1", "shared@org1.example", "one"),
        entry("y2", "Shared@Org1.example", "two"),
        entry("y3", "third@org1.example", "three"),
    )

    assert held(org) == {
        "y1": ("shared@org1.example", "one"),
        "y3": ("third@org1.example", "three"),
    }
    conflict = conflicts(org)["y2"]
    assert conflict.reason == "shared@org1.example is also the address of y1 in the same reply."
    assert conflict.local_recipient_id is None
    assert counts.imported == 2


def test_a_contact_whose_entry_moves_to_a_taken_address_leaves_the_address_book(org):
    org.add(alias="desk", primary_smtp="desk@partner.example", container=org.contractors)
    apply(org, entry("x", "ann@org1.example", "ann"), entry("k", "kept@org1.example", "kept"))

    counts = apply(org, entry("x", "desk@partner.example", "ann", 2))

    assert held(org) == {"k": ("kept@org1.example", "kept")}
    assert conflicts(org)["x"].reason == (
        "desk@partner.example belongs to a recipient of this organization."
    )
    assert counts.deleted == 1


def test_a_contact_whose_entry_loses_its_address_leaves_the_address_book(org):
    apply(org, entry("x", "ann@org1.example", "ann"))

    counts = apply(
        org,
        entry("x", None, "ann", 2),
        entry("y", "ann@org1.example", "newcomer"),
        entry("z", None),  # no alias either
    )

    assert held(org) == {"y": ("ann@org1.example", "newcomer")}
    assert conflicts(org).keys() == {"x", "z"}
    conflict = conflicts(org)["x"]
    assert conflict.reason == "The entry has no valid primary SMTP address ('')."
    assert (conflict.address, conflict.local_recipient_id) == ("", None)
    assert (counts.deleted, counts.imported) == (1, 1)


def test_a_conflict_without_a_display_name_has_an_empty_one(org):
    org.add(alias="desk", primary_smtp="desk@partner.example", container=org.contractors)
    nameless = wire.Entry(
        key="n",
        origin="ORG1",
        op="upsert",
        kind="mailbox",
        usn=3,
        attrs={"primary_smtp": "desk@partner.example"},
    )

    apply(org, nameless)

    assert conflicts(org)["n"].display_name == ""


def test_aliases_that_recur_in_one_part_get_distinct_fallbacks_after_the_first(org):
    apply(
        org,
        entry("a", "a@org1.example", "Ann"),
        entry("b", "b@org1.example", "ANN"),
        entry("c", "c@org1.example", "ann"),
        entry("d", "d@org1.example", "bob"),
        entry("e", "e@org1.example", "Bob"),
    )

    assert held(org) == {
        "a": ("a@org1.example", "Ann"),
        "b": ("b@org1.example", fallback("ANN", "b")),
        "c": ("c@org1.example", fallback("ann", "c")),
        "d": ("d@org1.example", "bob"),
        "e": ("e@org1.example", fallback("Bob", "e")),
    }


def test_aliases_nobody_holds_need_no_query_and_no_fallback(org):
    wanted = {"a": "Ann", "b": "Bob"}

    with CaptureQueriesContext(connection) as queries:
        chosen = _choose_aliases(org.config, wanted, {})

    assert chosen == wanted
    assert len(queries) == 0


def test_the_alias_of_an_entry_without_one(org):
    apply(
        org,
        entry("x", "first.last@org1.example"),
        entry("y", "blank@org1.example", "   "),
        entry("z", '"a@b"@org1.example'),
    )

    assert held(org) == {
        "x": ("first.last@org1.example", "first.last"),
        "y": ("blank@org1.example", "contact"),
        "z": ('"a@b"@org1.example', '"a@b"'),
    }


def test_a_conflict_keeps_an_address_that_lower_case_lengthens_within_its_column(org):
    # 256 characters on the wire; "İ" in lower case is two ("i" and a combining dot).
    address = "İ" + "a" * 242 + "@org1.example"
    assert len(address) == 256 and len(address.lower()) == 257

    apply(org, entry("x", address, "long"))

    assert conflicts(org)["x"].address == address.lower()[:256]


def test_a_fallback_alias_someone_already_holds_is_not_taken_twice(org):
    # The organization's own recipient holds "ann", and another holds the fallback "ann" would
    # get for entry x: x must get a third alias, not fail the part on the unique index.
    local = {"ann", fallback("ann", "x")}
    org.add(alias="ann", display_name="Ann Local", primary_smtp="ann@org2.example")
    org.add(alias=fallback("ann", "x"), display_name="Ann Two", primary_smtp="ann2@org2.example")

    counts = apply(org, entry("x", "ann@org1.example", "ann"), entry("y", "y@org1.example", "ann"))

    aliases = {alias.lower() for _, alias in held(org).values()}
    assert len(aliases) == 2 and not aliases & local
    assert held(org)["y"] == ("y@org1.example", fallback("ann", "y"))
    assert held(org)["x"] == ("ann@org1.example", _fallback_alias("ann", "x", 1))
    assert (counts.imported, len(counts.conflicts)) == (2, 0)


def test_each_next_fallback_is_asked_of_the_database_before_it_is_taken(org):
    # The first and the second fallback of entry x are both held by recipients of the
    # organization (unknown to the part): x gets the third.
    taken = ["ann", _fallback_alias("ann", "x"), _fallback_alias("ann", "x", 1)]
    for number, alias in enumerate(taken):
        org.add(alias=alias.upper(), primary_smtp=f"local{number}@org2.example")

    apply(org, entry("x", "ann@org1.example", "ann"))

    assert held(org)["x"] == ("ann@org1.example", _fallback_alias("ann", "x", 2))


def test_fallbacks_taken_again_and_again_are_passed_over(org):
    # Whoever holds the fallback candidates one after the other, the entry gets the next free one.
    wanted = {"x": "ann"}
    holders = {"ann": {None}}
    taken = ["ann"]
    for attempt in range(3):
        candidate = _fallback_alias("ann", "x", attempt)
        holders[candidate.lower()] = {None}
        taken.append(candidate)

    chosen = _choose_aliases(org.config, wanted, dict(holders))

    assert chosen["x"] == _fallback_alias("ann", "x", 3)
    assert chosen["x"] not in taken
