"""The SDK's Kafka messages: buffered events of one type, packed per ingest partition.

A message holds events of one type (named by its `event-type` header) whose entity
id (`engine_id`, `session_id`, `job_id`, ... the key of their typed topic) maps to
the same partition of `engine.ingest` under Kafka's default partitioner; it goes to
that partition, keyed by the id when all its events share it. The grouping and the
bounds are the router's too (`streams.kafka.packing.pack_by_partition`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from streams.kafka.packing import Packed, pack_by_partition

EVENT_TYPE_HEADER = "event-type"

Item = tuple[bytes | None, bytes]  # (entity key, encoded event)


@dataclass(slots=True)
class Batch(Packed[Item]):
    """One Kafka message to send: events of one type bound for one partition."""

    event_type: str

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        """The message's headers: its events' type."""
        return [(EVENT_TYPE_HEADER, self.event_type.encode())]


def pack(
    event_type: str,
    items: Sequence[Item],
    partitions: int | None,
    batch_events: int,
    batch_bytes: int,
) -> list[Batch]:
    """Split `items` (in publish order) into messages: one partition each (by entity
    key; keyless events, or all when `partitions` is unknown, go unkeyed to any
    partition), at most `batch_events` events and `batch_bytes` bytes each (an
    event larger than that still gets a message of its own)."""
    return [
        Batch(message.partition, message.key, message.items, event_type)
        for message in pack_by_partition(items, partitions, batch_bytes, batch_events)
    ]
