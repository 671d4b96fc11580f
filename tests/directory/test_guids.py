"""Object GUIDs (directory.guids): version 7, in order within a process, on the clock, and
different in forked workers."""

import os
import time
import uuid

from hypothesis import given
from hypothesis import strategies as st

from directory import guids
from directory.models import new_guid

# Milliseconds from 1970 to 2200: what a clock reads, forwards, still, or stepped back.
readings = st.lists(st.integers(min_value=0, max_value=7_258_118_400_000), min_size=1)


def timestamp_ms(guid: uuid.UUID) -> int:
    return guid.int >> 80


@given(readings)
def test_guids_stay_in_order_and_on_the_clock_whatever_it_reads(clock):
    sequence = guids.Sequence()
    made = [sequence.next(now) for now in clock]

    assert made == sorted(made)
    assert len(set(made)) == len(made)
    for index, guid in enumerate(made):
        assert guid.version == 7
        assert guid.variant == uuid.RFC_4122
        # The clock's own time, or the latest it read when it stepped back: never ahead.
        assert timestamp_ms(guid) == max(clock[: index + 1])


def test_a_counter_that_runs_out_borrows_the_next_millisecond():
    sequence = guids.Sequence()
    first = sequence.next(1_000)
    sequence.last_counter = (1 << guids.RANDOM_BITS) - 1  # the top of the counter
    second = sequence.next(1_000)

    assert timestamp_ms(second) == 1_001
    assert second > first
    assert second.version == 7


def test_a_bulk_of_guids_keeps_to_the_clock():
    before = time.time_ns() // 1_000_000
    made = [new_guid() for _ in range(50_000)]
    after = time.time_ns() // 1_000_000

    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert before <= timestamp_ms(made[0]) and timestamp_ms(made[-1]) <= after


def test_within_one_millisecond_the_guids_are_not_one_apart():
    sequence = guids.Sequence()
    made = [sequence.next(5_000).int for _ in range(100)]

    steps = {later - earlier for earlier, later in zip(made, made[1:], strict=False)}
    assert len(steps) > 90  # random steps, not a plain counter


def test_a_forked_worker_makes_other_guids_than_its_parent():
    new_guid()  # the parent has a last GUID and a random state to hand down
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child reports through the pipe)
        try:
            os.write(writer, b"".join(new_guid().bytes for _ in range(1_000)))
        finally:
            os._exit(0)
    os.close(writer)
    received = b""
    while chunk := os.read(reader, 65536):
        received += chunk
    os.close(reader)
    os.waitpid(child, 0)
    theirs = [uuid.UUID(bytes=received[i : i + 16]) for i in range(0, len(received), 16)]
    ours = [new_guid() for _ in range(1_000)]

    assert len(set(theirs)) == 1_000
    # Not even their random bits: a child with its parent's random state would repeat them.
    assert not {random_bits(guid) for guid in theirs} & {random_bits(guid) for guid in ours}


def random_bits(guid: uuid.UUID) -> int:
    return guid.int & ((1 << 62) - 1)
