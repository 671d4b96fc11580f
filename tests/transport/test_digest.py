"""The digests that prove two sides hold the same (transport.digest): a fixed definition both sides
compute alike, order-independent, and telling different sets apart."""

from hypothesis import given, settings
from hypothesis import strategies as st

from transport import digest
from transport.digest import Tally

members = st.sets(
    st.tuples(st.text(min_size=1, max_size=40), st.integers(min_value=0, max_value=2**40)),
    max_size=20,
)


def tally(pairs) -> Tally:
    result = Tally()
    for identity, version in pairs:
        result.add(identity, version)
    return result


def test_a_member_hashes_as_the_protocol_defines_it():
    # BLAKE2b-128 of "identity \\x1f version", read big-endian: the same on every installation.
    assert digest.to_hex(digest.member("ORG2:1f3e", 42)) == "0d875446a31b010dfcb8ca5e7aa7377a"


def test_the_empty_set_and_the_printed_form():
    assert Tally().hex == digest.EMPTY == "0" * 32
    one = tally([("a", 1)])
    assert str(one) == f"{one.hex[:12]}…/1"
    assert Tally.of(one.hex, one.count) == one
    assert digest.from_hex("") == 0


@settings(max_examples=200, deadline=None)
@given(members, members)
def test_equal_sets_have_equal_digests_and_different_sets_different_ones(a, b):
    first, second = tally(a), tally(b)
    assert (first.hex == second.hex and first.count == second.count) == (a == b)


@settings(max_examples=100, deadline=None)
@given(members, st.randoms())
def test_the_order_of_changes_does_not_matter(pairs, rng):
    ordered = sorted(pairs)
    shuffled = list(pairs)
    rng.shuffle(shuffled)
    assert tally(ordered) == tally(shuffled)


@settings(max_examples=100, deadline=None)
@given(members, members)
def test_merging_and_removing_sets_follow_the_sets(a, b):
    union, only_a = tally(a | b), tally(a - b)
    assert tally(a - b).merge(tally(b)) == union
    assert union.without(tally(b)) == only_a
    removed = tally(a)
    for identity, version in a & b:
        removed.remove(identity, version)
    assert removed == tally(a - b)


def test_the_version_counts_as_much_as_the_identity():
    assert digest.member("k", 1) != digest.member("k", 2)
    assert digest.member("k", 12) != digest.member("k1", 2)
