"""The pipeline benchmark's input: seed-format events for `engine.ingest`, in the shapes
the issue names, and the sentinels that close every real window by event time.

Events come from streams.kafka.fleet (the generator `enginestream fleet` uses), with
historical event times spread evenly over `span_s` seconds. Every message carries the
`event-type` header, as the SDK and the fleet send them, and goes to the partition
Kafka's default partitioner gives its entity id (so each engine's events stay in order
on one ingest partition, and on the same partition of every topic downstream).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from bench.common.kafka import InputMessage, json_array
from streams.config.topics import EVENT_ROUTES
from streams.kafka.fleet import Fleet
from streams.kafka.partitioner import partition_for

BASE_TIME = 1_670_000_000.0  # 2022-12-02T16:53:20Z
EXECUTION = "engine_execution"
SENTINEL_PREFIX = "sentinel-"
# Past the last real event by more than a window, the worker's lateness (5 s) and
# grace, and Quix's grace (5 s): every real window is final once a sentinel is seen.
SENTINEL_GAP_S = 150.0


@dataclass
class Input:
    """One shape's messages, and what a system must show for them to be done."""

    shape: str
    messages: list[InputMessage]
    executions: int  # real engine_execution events (windowed and written to the file)
    events: int  # every real event of every type
    sentinels: int  # sentinel executions after them (one line each in the file)

    @property
    def lines(self) -> int:
        """Lines the JSONL file of executions holds when a system is done."""
        return self.executions + self.sentinels


def key_of(event_type: str, doc: dict[str, Any]) -> bytes:
    """The entity id an event is partitioned by (streams.config.topics)."""
    return str(doc[EVENT_ROUTES[event_type].key_field]).encode()


def fleet_events(
    n: int, engines: int, span_s: float, mixed: bool, seed: int = 1, base: float = BASE_TIME
) -> Iterator[tuple[str, dict[str, Any]]]:
    """`n` events (executions only, or the fleet's mix of every type) of `engines`
    engines, event times from `base` evenly over `span_s` seconds."""
    fleet = Fleet(rng=random.Random(seed), engines=engines, clock=base)
    step = span_s / n
    source = fleet.mixed()
    for i in range(n):
        fleet.clock = round(base + i * step, 3)
        if mixed:
            yield next(source)
        else:
            yield EXECUTION, fleet.execution()


def sentinel_ids(partitions: int) -> list[str]:
    """One engine id per partition, each on that partition (Kafka's partitioner)."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < partitions:
        name = f"{SENTINEL_PREFIX}{i}"
        found.setdefault(partition_for(name.encode(), partitions), name)
        i += 1
    return [found[p] for p in range(partitions)]


def sentinel_messages(partitions: int, last_time: float) -> list[InputMessage]:
    """One engine_execution per partition, SENTINEL_GAP_S after the last event time."""
    fleet = Fleet(rng=random.Random(0), engines=1, clock=round(last_time + SENTINEL_GAP_S, 3))
    out = []
    for p, engine in enumerate(sentinel_ids(partitions)):
        body = orjson.dumps(fleet.execution(engine))
        out.append(message([(engine.encode(), body)], p, EXECUTION))
    return out


def message(items: list[tuple[bytes, bytes]], partition: int, event_type: str) -> InputMessage:
    """A message of (key, body) items of one partition: the object alone, keyed, or a
    JSON array (keyed only if every event shares the key)."""
    keys = {k for k, _ in items}
    key = next(iter(keys)) if len(keys) == 1 else None
    value = items[0][1] if len(items) == 1 else json_array([b for _, b in items])
    return InputMessage(value, len(items), partition, key, (("event-type", event_type.encode()),))


def pack(
    events: Iterator[tuple[str, dict[str, Any]]], partitions: int, batch: int
) -> tuple[list[InputMessage], dict[str, int], float]:
    """Events in order as messages of up to `batch` events of one type and partition
    (a partition's chunk is sent when full, so partitions fill side by side); answer
    the messages, the events per type and the last event time."""
    open_chunks: dict[tuple[str, int], list[tuple[bytes, bytes]]] = {}
    out: list[InputMessage] = []
    counts: dict[str, int] = {}
    last = BASE_TIME
    for event_type, doc in events:
        key = key_of(event_type, doc)
        where = (event_type, partition_for(key, partitions))
        chunk = open_chunks.setdefault(where, [])
        chunk.append((key, orjson.dumps(doc)))
        counts[event_type] = counts.get(event_type, 0) + 1
        last = max(last, float(doc.get("timestamp", doc.get("created_at", last))))
        if len(chunk) >= batch:
            out.append(message(chunk, where[1], event_type))
            open_chunks[where] = []
    for (event_type, p), chunk in open_chunks.items():
        if chunk:
            out.append(message(chunk, p, event_type))
    return out, counts, last


def make_input(
    shape: str, n: int, engines: int, span_s: float, partitions: int, batch: int, seed: int = 1
) -> Input:
    """The messages of one shape: `single` (one execution per message), `batch` (arrays
    of `batch` executions) or `mixed` (the fleet's mix, arrays of `batch` per type),
    then one sentinel per partition."""
    per_message = 1 if shape == "single" else batch
    events = fleet_events(n, engines, span_s, mixed=shape == "mixed", seed=seed)
    messages, counts, last = pack(events, partitions, per_message)
    sentinels = sentinel_messages(partitions, last)
    return Input(shape, messages + sentinels, counts.get(EXECUTION, 0), n, len(sentinels))


def memory_input(windows: int, partitions: int, batch: int) -> Input:
    """`windows` engines, one execution each, all in one 60 s window: as many open
    windows at once (arrays of `batch`); no sentinel (the windows stay open)."""
    fleet = Fleet(rng=random.Random(3), engines=1, clock=BASE_TIME + 1.0)
    events = ((EXECUTION, fleet.execution(f"engine-{i:07d}")) for i in range(windows))
    messages, counts, _ = pack(events, partitions, batch)
    return Input("memory", messages, counts.get(EXECUTION, 0), windows, 0)


def live_messages(
    fleet: Fleet, events: int, partitions: int, batch: int, now: float
) -> list[InputMessage]:
    """`events` executions stamped `now` (live traffic), packed as the batch shape."""
    fleet.clock = round(now, 3)
    events_now = ((EXECUTION, fleet.execution()) for _ in range(events))
    messages, _, _ = pack(events_now, partitions, batch)
    return messages
