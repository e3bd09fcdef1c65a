"""streams.runtime.stall_guard: a partition is stalled only when it stays behind its end with
nothing in flight, unchanged, for the whole wait."""

from __future__ import annotations

import pytest

from streams.runtime.stall_guard import PartitionProgress, StallGuard

BEHIND = PartitionProgress(committed=10, end=15, in_flight=0)


def test_a_partition_behind_with_nothing_in_flight_is_stalled_after_the_wait() -> None:
    guard: StallGuard[str] = StallGuard(after_s=15.0)
    assert guard.check({"a": BEHIND}, now=0.0) == []
    assert guard.check({"a": BEHIND}, now=14.9) == []
    assert guard.check({"a": BEHIND}, now=15.0) == ["a"]
    # Once per stall: the clock starts again.
    assert guard.check({"a": BEHIND}, now=16.0) == []
    assert guard.check({"a": BEHIND}, now=31.0) == ["a"]


@pytest.mark.parametrize(
    "progress",
    [
        PartitionProgress(committed=15, end=15, in_flight=0),  # caught up
        PartitionProgress(committed=10, end=15, in_flight=1),  # an agent is on it
        PartitionProgress(committed=None, end=15, in_flight=0),  # start unknown
        PartitionProgress(committed=10, end=None, in_flight=0),  # end unknown
    ],
)
def test_not_stalled(progress: PartitionProgress) -> None:
    guard: StallGuard[str] = StallGuard(after_s=1.0)
    for now in (0.0, 5.0, 100.0):
        assert guard.check({"a": progress}, now) == []


def test_progress_or_work_in_between_starts_the_clock_again() -> None:
    guard: StallGuard[str] = StallGuard(after_s=10.0)
    guard.check({"a": BEHIND}, now=0.0)
    guard.check({"a": PartitionProgress(10, 15, in_flight=3)}, now=5.0)  # busy
    assert guard.check({"a": BEHIND}, now=11.0) == []
    assert guard.check({"a": BEHIND}, now=20.0) == []
    assert guard.check({"a": BEHIND}, now=21.0) == ["a"]
    moved = PartitionProgress(committed=12, end=15, in_flight=0)
    guard.check({"a": moved}, now=22.0)
    assert guard.check({"a": moved}, now=31.9) == []
    assert guard.check({"a": moved}, now=32.0) == ["a"]


def test_partitions_are_judged_apart_and_revoked_ones_forgotten() -> None:
    guard: StallGuard[str] = StallGuard(after_s=10.0)
    caught_up = PartitionProgress(15, 15, 0)
    guard.check({"a": BEHIND, "b": caught_up}, now=0.0)
    guard.check({"b": caught_up}, now=5.0)  # a revoked
    assert guard.check({"a": BEHIND, "b": caught_up}, now=12.0) == []  # a starts anew
    assert guard.check({"a": BEHIND, "b": caught_up}, now=22.0) == ["a"]


def test_reset_forgets_and_the_wait_must_be_positive() -> None:
    guard: StallGuard[str] = StallGuard(after_s=10.0)
    guard.check({"a": BEHIND}, now=0.0)
    guard.reset()
    assert guard.check({"a": BEHIND}, now=10.0) == []
    with pytest.raises(ValueError, match="after_s"):
        StallGuard(after_s=0)
