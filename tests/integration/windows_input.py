"""Generated executions for the window tests, and the offline recomputation they are
checked against.

The recomputation is written independently of streams.domain.windows: a direct simulation
of the contract's rules per partition in offset order (watermark = highest event time
minus lateness; final when the watermark reaches end + grace; later events are late
revisions until end + grace + retention, then too late), over plain lists.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field
from typing import Any

from streams.kafka.partitioner import partition_for

T0 = 1_700_000_000  # a day in November 2023: replayed, historical event time
SIZES = (60, 300)
LATENESS = 10.0
GRACE = 5.0
RETENTION = 600.0


def generate(seed: int, events: int, engines: int, partitions: int) -> dict[int, list[dict]]:
    """Executions per partition, in the order they are published. Most are out of order
    within the lateness; about 1% arrive after the grace period (late revisions), about
    0.2% after the retention (too late)."""
    rng = random.Random(seed)
    per_partition: dict[int, list[dict]] = {p: [] for p in range(partitions)}
    span = 3000.0
    for i in range(events):
        base = T0 + span * i / events
        roll = rng.random()
        if roll < 0.002:
            delay = RETENTION + GRACE + LATENESS + 300 + rng.uniform(0, 300)
        elif roll < 0.012:
            delay = LATENESS + GRACE + 60 + rng.uniform(0, 400)
        else:
            delay = rng.uniform(0, LATENESS * 0.9)
        ts = round(max(T0, base - delay), 3)
        engine = f"engine-{rng.randrange(engines):03d}"
        metrics: dict[str, Any] = {
            "latency_ms": round(rng.lognormvariate(3.5, 0.8), 3),
            "success": rng.random() < 0.93,
        }
        if rng.random() < 0.6:
            metrics["quality_score"] = round(rng.random(), 4)
        if rng.random() < 0.8:
            metrics["memory_mb"] = round(rng.uniform(100, 8000), 2)
            metrics["cpu_percent"] = round(rng.uniform(0, 100), 2)
        event = {
            "schema_version": 1,
            "trace_id": f"t-{seed}-{i}",
            "task_id": f"task-{i % 97}",
            "engine_id": engine,
            "timestamp": ts,
            "input": "q",
            "output": "a",
            "metrics": metrics,
        }
        per_partition[partition_for(engine.encode(), partitions)].append(event)
    return per_partition


@dataclass
class _Window:
    events: list[dict] = field(default_factory=list)
    closed: bool = False
    late: int = 0
    emitted: int = 0


@dataclass
class Expected:
    """Records keyed by (engine, size, start, revision), and the too-late count."""

    records: dict[tuple[str, int, int, int], dict[str, Any]] = field(default_factory=dict)
    too_late: int = 0


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def summarise(events: list[dict]) -> dict[str, Any]:
    """The metrics of a window computed directly from its events."""
    lat = [e["metrics"]["latency_ms"] for e in events]
    ok = sum(1 for e in events if e["metrics"]["success"])

    def mean(name: str) -> float | None:
        found = [e["metrics"][name] for e in events if name in e["metrics"]]
        return math.fsum(found) / len(found) if found else None

    return {
        "count": len(events),
        "success_count": ok,
        "success_rate": ok / len(events),
        "latency_min_ms": min(lat),
        "latency_max_ms": max(lat),
        "latency_avg_ms": math.fsum(lat) / len(lat),
        "latency_p50_ms": exact_quantile(lat, 0.50),
        "latency_p95_ms": exact_quantile(lat, 0.95),
        "latency_p99_ms": exact_quantile(lat, 0.99),
        "quality_score_mean": mean("quality_score"),
        "memory_mb_mean": mean("memory_mb"),
        "cpu_percent_mean": mean("cpu_percent"),
    }


def recompute(per_partition: dict[int, list[dict]], retention: float = RETENTION) -> Expected:
    """Every record the contract says a worker emits for this input."""
    out = Expected()
    for events in per_partition.values():
        windows: dict[tuple[str, int, int], _Window] = {}
        closing: list[tuple[float, tuple[str, int, int]]] = []
        max_ts = -math.inf

        def emit(key: tuple[str, int, int], w: _Window) -> None:
            engine, size, start = key
            out.records[(engine, size, start, w.emitted)] = {
                "window_start": start,
                "window_end": start + size,
                "late_events": w.late,
                **summarise(w.events),
            }
            w.emitted += 1

        for event in events:
            ts = event["timestamp"]
            watermark = max_ts - LATENESS
            smallest = min(SIZES)
            if math.floor(ts / smallest) * smallest + smallest + GRACE + retention <= watermark:
                out.too_late += 1
                continue
            for size in SIZES:
                start = math.floor(ts / size) * size
                key = (event["engine_id"], size, start)
                w = windows.get(key)
                if w is None:
                    # A window whose time has passed is final from the start: empty.
                    w = windows[key] = _Window(closed=start + size + GRACE <= watermark)
                    heapq.heappush(closing, (start + size + GRACE, key))
                w.events.append(event)
                if w.closed:
                    w.late += 1
                    emit(key, w)
            if ts > max_ts:
                max_ts = ts
                watermark = max_ts - LATENESS
                while closing and closing[0][0] <= watermark:
                    _, key = heapq.heappop(closing)
                    w = windows[key]
                    if not w.closed:
                        w.closed = True
                        emit(key, w)
        for key, w in windows.items():  # the idle partition closes the rest
            if not w.closed:
                w.closed = True
                emit(key, w)
    return out
