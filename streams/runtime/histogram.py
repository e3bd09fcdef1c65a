"""A cumulative histogram the worker observes durations into, read by GET /metrics.

Pure (no Faust, no client library) so an agent can keep one without importing the
web layer; streams.web.metrics_collectors turns it into a Prometheus histogram.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

# Upper bounds (seconds) of the sink flush histogram: a flush is a write, an fsync and
# an atomic checkpoint replace (two more fsyncs), so milliseconds on SSDs, more on disks.
FLUSH_SECONDS_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)


@dataclass
class Histogram:
    """Observations counted into buckets by upper bound (not thread-safe: use it from
    the event loop)."""

    bounds: Sequence[float] = FLUSH_SECONDS_BUCKETS
    counts: list[int] = field(default_factory=list)  # per bucket, not cumulative; +Inf last
    sum: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if list(self.bounds) != sorted(set(self.bounds)):
            raise ValueError(f"histogram bounds must increase strictly: {self.bounds}")
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations up to it) per bucket, ``inf`` last: the
        cumulative counts Prometheus' ``_bucket`` samples carry."""
        running = 0
        answer = []
        for bound, count in zip([*self.bounds, float("inf")], self.counts, strict=True):
            running += count
            answer.append((bound, running))
        return answer
