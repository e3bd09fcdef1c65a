"""Pack routed events into outgoing Kafka messages, one partition at a time.

Per-message overhead, not per-event work, limits a Python stream processor, so the
router writes the valid events bound for one partition of one typed topic as one
message: a JSON array of events (or a single event object, keyed by its id, when it
is alone), bounded in bytes. The partition is the one Kafka's default partitioner
chooses for the event's entity id, so every event of an entity lands together
whether it travelled alone or in a batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from streams.domain.router import RoutedEvent
from streams.kafka.partitioner import partition_for


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to produce."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes
    count: int
    # Highest source position (offset, index in its message) of the events it holds.
    source_position: tuple[int, int] = (-1, -1)


def pack(
    events: Iterable[RoutedEvent],
    typed_topics: dict[str, str],
    partitions: dict[str, int],
    max_bytes: int,
) -> list[Outgoing]:
    """Group `events` by destination partition into messages of at most `max_bytes`
    (an event larger than that alone still gets a message of its own).

    `typed_topics` maps event type to topic, `partitions` topic to partition count.
    """
    groups: dict[tuple[str, int], list[tuple[bytes, bytes, tuple[int, int]]]] = {}
    for event in events:
        key = event.key.encode("utf-8")
        topic = typed_topics[event.event_type]
        where = (topic, partition_for(key, partitions[topic]))
        body = event.body if event.body is not None else orjson.dumps(event.doc)
        groups.setdefault(where, []).append((key, body, (event.offset, event.index)))
    out: list[Outgoing] = []
    for (topic, partition), items in groups.items():
        chunk: list[tuple[bytes, bytes, tuple[int, int]]] = []
        size = 1  # the array's length: "[" and "]", and a comma before all but the first
        for item in items:
            body = item[1]
            if chunk and size + len(body) + 1 > max_bytes:
                out.append(_message(topic, partition, chunk))
                chunk, size = [], 1
            chunk.append(item)
            size += len(body) + 1
        out.append(_message(topic, partition, chunk))
    return out


def _message(
    topic: str, partition: int, chunk: list[tuple[bytes, bytes, tuple[int, int]]]
) -> Outgoing:
    top = max(position for _, _, position in chunk)
    if len(chunk) == 1:
        key, body, _ = chunk[0]
        return Outgoing(topic, partition, key, body, 1, top)
    keys = {key for key, _, _ in chunk}
    shared_key = next(iter(keys)) if len(keys) == 1 else None
    value = b"[" + b",".join(body for _, body, _ in chunk) + b"]"
    return Outgoing(topic, partition, shared_key, value, len(chunk), top)
