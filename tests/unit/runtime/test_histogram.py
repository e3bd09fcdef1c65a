"""The pure Histogram of streams.runtime.histogram: buckets by upper bound, inclusive,
and the cumulative counts Prometheus reads."""

from __future__ import annotations

import math

import pytest

from streams.runtime.histogram import FLUSH_SECONDS_BUCKETS, Histogram


def test_observations_fall_in_the_first_bucket_whose_bound_holds_them() -> None:
    histogram = Histogram((0.01, 0.1, 1.0))
    for value in (0.005, 0.01, 0.05, 0.5, 3.0):
        histogram.observe(value)
    assert histogram.counts == [2, 1, 1, 1]  # 0.01 is "le 0.01"; 3.0 goes to +Inf
    assert histogram.count == 5
    assert histogram.sum == pytest.approx(3.565)
    assert histogram.cumulative() == [(0.01, 2), (0.1, 3), (1.0, 4), (math.inf, 5)]


def test_the_default_bounds_are_the_flush_buckets() -> None:
    histogram = Histogram()
    assert [bound for bound, _ in histogram.cumulative()] == [*FLUSH_SECONDS_BUCKETS, math.inf]
    assert all(count == 0 for _, count in histogram.cumulative())


@pytest.mark.parametrize("bounds", [(1.0, 0.5), (0.1, 0.1)])
def test_bounds_must_increase_strictly(bounds: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="increase strictly"):
        Histogram(bounds)
