"""Kafka's default partitioner, the one place both the worker and the SDK take it from.

Every event of one entity (engine, comparison, sample, session, job) lands on the
partition Kafka's default partitioner gives its id, whether it travelled alone (keyed
by the id) or packed with others; the router and the SDK must agree with Kafka and
with each other, so there is one function.
"""

from __future__ import annotations

import functools

from aiokafka.partitioner import murmur2


@functools.lru_cache(maxsize=65_536)
def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives `key`.

    Cached: aiokafka's murmur2 is pure Python, and entity ids repeat (an engine
    sends many events). A topic without partitions has no answer: ValueError."""
    if partitions < 1:
        raise ValueError(f"a topic needs at least one partition, it reports {partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % partitions
