"""Pack events into Kafka messages, one partition at a time: for the router and the SDK.

Per-message overhead, not per-event work, limits a Python stream processor, so both
the router (routed events to their typed topics) and the engine-side SDK (published
events to `engine.ingest`) write the events bound for one partition as one message:
a JSON array of events (or the event object itself when it is alone), bounded in
events and bytes. The partition is the one Kafka's default partitioner chooses for
the event's entity id, so every event of an entity lands together whether it
travelled alone or in a batch. `pack_by_partition` is that grouping and chunking,
once; `pack` is the router's use of it.

Nothing here imports the router's domain code at run time: the SDK imports this
module and must stay light (no Faust, no jsonschema beyond its own checks).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import orjson

from streams.kafka.partitioner import partition_for

if TYPE_CHECKING:
    from streams.domain.router import RoutedEvent

# An item to pack: a tuple that starts with (entity key or None, encoded event); what
# follows is the caller's (the router keeps each event's source position there).
ItemT = TypeVar("ItemT", bound="tuple[bytes | None, bytes, *tuple[object, ...]]")


@dataclass(slots=True)  # not frozen: that would make building one slower
class Packed(Generic[ItemT]):
    """Items bound for one partition (None: any), to send as one message."""

    partition: int | None
    # The items' entity key when they all share it and the partition is known, else
    # None (the message is then sent unkeyed to `partition`).
    key: bytes | None
    items: list[ItemT]

    @property
    def count(self) -> int:
        """How many events the message carries."""
        return len(self.items)

    def value(self) -> bytes:
        """The message value: the event itself when alone, else a JSON array."""
        if len(self.items) == 1:
            return self.items[0][1]
        return b"[" + b",".join(item[1] for item in self.items) + b"]"


def pack_by_partition(
    items: Iterable[ItemT],
    partitions: int | None,
    max_bytes: int,
    max_events: int | None = None,
) -> list[Packed[ItemT]]:
    """Split `items` (in order) into messages for one topic of `partitions` partitions.

    Each message holds items of one partition (by entity key; keyless items, or all
    when `partitions` is None because it is unknown, go together to no partition in
    particular), in their order, at most `max_events` of them and `max_bytes` bytes
    of value (an item larger than that alone still gets a message of its own)."""
    by_partition: dict[int | None, list[ItemT]] = {}
    for item in items:
        key = item[0]
        where = None if key is None or partitions is None else partition_for(key, partitions)
        by_partition.setdefault(where, []).append(item)
    out: list[Packed[ItemT]] = []
    for where, group in by_partition.items():
        chunk: list[ItemT] = []
        size = 1  # the array's "[" and "]", and a comma before all but the first item
        for item in group:
            grow = len(item[1]) + 1
            if chunk and (
                size + grow > max_bytes or (max_events is not None and len(chunk) >= max_events)
            ):
                out.append(_packed(where, chunk))
                chunk, size = [], 1
            chunk.append(item)
            size += grow
        out.append(_packed(where, chunk))
    return out


def _packed(partition: int | None, chunk: list[ItemT]) -> Packed[ItemT]:
    first = chunk[0][0]
    if partition is None:
        return Packed(None, None, chunk)
    if len(chunk) == 1 or all(item[0] == first for item in chunk):
        return Packed(partition, first, chunk)
    return Packed(partition, None, chunk)


# --- the router's messages -----------------------------------------------------------

# (key, body, source position, the body decoded: None when only `body` is JSON)
Positioned = tuple[bytes, bytes, tuple[int, int], dict[str, Any] | None]


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
    # The events it holds, decoded (for streams.runtime.handoff); empty when one of
    # them came from a binary wire and only its encoded form is JSON.
    docs: list[dict[str, Any]] = field(default_factory=list)


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
    by_topic: dict[str, list[Positioned]] = {}
    for event in events:
        body = event.body if event.body is not None else orjson.dumps(event.doc)
        doc = None if event.binary else event.doc
        item: Positioned = (event.key.encode("utf-8"), body, (event.offset, event.index), doc)
        by_topic.setdefault(typed_topics[event.event_type], []).append(item)
    out: list[Outgoing] = []
    for topic, items in by_topic.items():
        for message in pack_by_partition(items, partitions[topic], max_bytes):
            assert message.partition is not None  # every item has a key
            chunk = message.items
            top = chunk[0][2] if len(chunk) == 1 else max(item[2] for item in chunk)
            docs = [item[3] for item in chunk]
            out.append(Outgoing(
                topic, message.partition, message.key, message.value(), message.count, top,
                [] if None in docs else cast(list[dict[str, Any]], docs),
            ))  # fmt: skip
    return out
