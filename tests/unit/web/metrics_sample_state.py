"""A worker's state to scrape in the unit tests of GET /metrics: every counter, window
partition, sink and assigned partition the collectors read, with the edge cases (a
label value to escape, a partition without watermark, a sink that has not flushed, a
changelog and the leader topic among the assigned partitions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from streams.domain.windows import Clock
from streams.runtime.histogram import Histogram
from streams.runtime.router_counters import RouterCounters

# The wall clock of the scrape, in seconds.
NOW = 1_700_000_100.0
CHANGELOG = "es-test-windows-changelog"


@dataclass
class FakeWindows:
    """A source partition's windows: only the clock is read."""

    clock: Clock


@dataclass
class FakeProcessor:
    """What the collectors read of a WindowProcessor."""

    emitted: int = 12
    late_events: int = 3
    too_late: int = 1
    events_in: int = 5000
    topic_of_kind: dict[str, str] = field(
        default_factory=lambda: {"engine": "engine.executions", "route": "engine.events"}
    )
    partitions: dict[tuple[str, int], FakeWindows] = field(default_factory=dict)
    revoked: set[tuple[str, int]] = field(default_factory=set)

    def owned(self) -> dict[tuple[str, int], FakeWindows]:
        """The partitions still assigned: those built but since revoked are left out."""
        return {k: w for k, w in self.partitions.items() if k not in self.revoked}


@dataclass(frozen=True)
class TP:
    """A topic partition, as the consumer names it."""

    topic: str
    partition: int


class FakeConsumer:
    """Assignment, fetch positions and high watermarks, as Faust's consumer answers."""

    def __init__(self, positions: dict[TP, int | None], highs: dict[TP, int | None]) -> None:
        self.positions = positions
        self.highs = highs

    def assignment(self) -> set[TP]:
        return set(self.positions)

    async def position(self, tp: TP) -> int | None:
        return self.positions[tp]

    def highwater(self, tp: TP) -> int | None:
        return self.highs[tp]


def fake_app(consumer: Any) -> Any:
    """An app with `consumer` and one changelog topic."""
    return SimpleNamespace(consumer=consumer, tables=SimpleNamespace(changelog_topics={CHANGELOG}))


def sink(name: str, **extra: Any) -> Any:
    """A ChannelSink of channel `name` with ten lines written and two duplicates."""
    return SimpleNamespace(
        channel=SimpleNamespace(name=name), lines_written=10, duplicates=2, **extra
    )


def router_counters() -> RouterCounters:
    """Every router counter with a label or two, one of them to escape."""
    counters = RouterCounters()
    counters.messages_in["engine.ingest"] += 7
    counters.messages_in["engine.executions.raw"] += 2
    counters.events_routed["engine_execution"] += 100
    counters.messages_out["engine.executions"] += 3
    counters.dead_letters["malformed_json"] += 2
    counters.dead_letters['odd "reason"\\\n'] += 1
    return counters


def processor() -> FakeProcessor:
    """Two partitions with a watermark and one without."""
    return FakeProcessor(
        partitions={
            ("engine", 1): FakeWindows(Clock(watermark=1_700_000_000.0)),
            ("engine", 0): FakeWindows(Clock(watermark=1_700_000_090.5)),
            ("route", 0): FakeWindows(Clock()),  # no event yet: no watermark, no sample
            ("engine", 3): FakeWindows(Clock(watermark=1_600_000_000.0)),  # revoked: no sample
        },
        revoked={("engine", 3)},
    )


def sinks() -> list[Any]:
    """One sink that has flushed (three flushes) and one that has not."""
    flushes = Histogram()
    for seconds in (0.0004, 0.003, 0.7):
        flushes.observe(seconds)
    return [
        sink("events", bytes_written=4096, flush_seconds=flushes),
        sink("dead_letters", bytes_written=0, flush_seconds=Histogram()),
    ]


def consumer() -> FakeConsumer:
    """Two source partitions with a known position, one without, the changelog and
    the leader topic (both to leave out)."""
    ingest0, ingest1 = TP("engine.ingest", 0), TP("engine.ingest", 1)
    execs = TP("engine.executions", 2)
    changelog, leader = TP(CHANGELOG, 0), TP("es-test-__assignor-__leader", 0)
    return FakeConsumer(
        {ingest0: 90, ingest1: 10, execs: None, changelog: 0, leader: 0},
        {ingest0: 100, ingest1: 10, execs: 5, changelog: 999, leader: 3},
    )
