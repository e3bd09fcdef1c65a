"""The window benchmark's input: engine_execution events with historical event times,
each on its engine's partition, in one-event and JSON-array messages."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.common.kafka import InputMessage, json_array
from streams.config.settings import Settings
from streams.kafka.partitioner import partition_for

WINDOW_S = 60
BASE_TIME = 1_670_000_000.0  # 2022-12-02T16:53:20Z
JITTER_S = 2.0


@dataclass
class Workload:
    """The events, encoded once: (partition, engine id, JSON bytes) in time order."""

    events: list[tuple[int, bytes, bytes]]
    engines: int
    span_s: float

    @property
    def total(self) -> int:
        """Number of events."""
        return len(self.events)


def make_workload(n: int, engines: int, span_s: float, partitions: int, seed: int = 1) -> Workload:
    """`n` engine_execution events of `engines` engines over `span_s` seconds of
    event time (seeded)."""
    rng = random.Random(seed)
    ids = [f"engine-{i:04d}" for i in range(engines)]
    where = {e: partition_for(e.encode(), partitions) for e in ids}
    step = span_s / n
    out: list[tuple[int, bytes, bytes]] = []
    for i in range(n):
        engine = ids[rng.randrange(engines)]
        ok = rng.random() > 0.05
        doc = {
            "schema_version": 1,
            "trace_id": f"t-{i}",
            "task_id": f"task-{i % 977}",
            "engine_id": engine,
            "engine_instance_id": f"{engine}-0",
            "timestamp": round(BASE_TIME + i * step - rng.uniform(0, JITTER_S), 3),
            "input": "translate this",
            "output": "traduire ceci",
            "metrics": {
                "latency_ms": round(rng.lognormvariate(3.5, 0.6), 2),
                "memory_mb": round(rng.uniform(200, 4000), 1),
                "cpu_percent": round(rng.uniform(1, 100), 1),
                "success": ok,
                "quality_score": round(rng.random(), 3),
            },
            "status": "ok" if ok else "error",
        }
        out.append((where[engine], engine.encode(), orjson.dumps(doc)))
    return Workload(out, engines, span_s)


def single_messages(work: Workload) -> list[InputMessage]:
    """One event per message, keyed by its engine id, in time order."""
    return [InputMessage(body, 1, partition=p, key=key) for p, key, body in work.events]


def batched_messages(work: Workload, batch: int) -> list[InputMessage]:
    """JSON arrays of up to `batch` events of one partition, in time order (the shape
    the router and the SDK write: no key unless every event is of one engine)."""
    by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
    for p, engine, body in work.events:
        by_partition.setdefault(p, []).append((engine, body))
    out: list[InputMessage] = []
    for p, items in sorted(by_partition.items()):
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            keys = {k for k, _ in chunk}
            shared: bytes | None = next(iter(keys)) if len(keys) == 1 else None
            value = json_array([b for _, b in chunk])
            out.append(InputMessage(value, len(chunk), partition=p, key=shared))
    return out


@dataclass(frozen=True)
class Stage:
    """What every run on one input shape shares: the broker (its settings and pid),
    the pre-produced topic (prefix, name, end offsets), the workload and the number of
    messages it was produced in, and the directory for the runs' logs and state."""

    settings: Settings
    shape: str
    prefix: str
    topic: str
    work: Workload
    n_messages: int
    ends: dict[int, int]
    tmp: Path
    broker: int | None
