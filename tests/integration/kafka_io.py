"""Produce to and read back from the real broker, for integration tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


@dataclass(frozen=True)
class Record:
    """One message read back."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class Sent:
    """Where a produced message landed."""

    topic: str
    partition: int
    offset: int


async def produce_all(
    bootstrap: str,
    messages: Sequence[tuple[Any, ...]],
) -> list[Sent]:
    """Produce (topic, value, headers, key[, partition]) messages; answer where each
    landed."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        max_request_size=8 * 1024 * 1024,
        linger_ms=5,
    )
    await producer.start()
    try:
        futures = [
            await producer.send(
                m[0], m[1], key=m[3], headers=m[2], partition=m[4] if len(m) > 4 else None
            )
            for m in messages
        ]
        results = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [Sent(r.topic, r.partition, r.offset) for r in results]


async def read_until(
    bootstrap: str,
    topics: list[str],
    done: Callable[[list[Record]], bool],
    timeout: float,
) -> list[Record]:
    """Read `topics` from the beginning until `done(records)` holds (or fail at the
    deadline), then on to the current end offsets, so duplicates would show."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    records: list[Record] = []
    try:
        partitions = []
        for topic in topics:
            found = consumer.partitions_for_topic(topic)
            while not found:
                await consumer._client.force_metadata_update()
                found = consumer.partitions_for_topic(topic)
            partitions += [TopicPartition(topic, p) for p in sorted(found)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout
        while not done(records):
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met after {timeout}s ({len(records)} read)")
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp_records in batch.values():
                records += [
                    Record(r.topic, r.partition, r.offset, r.key, r.value or b"")
                    for r in tp_records
                ]
        ends = await consumer.end_offsets(partitions)
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp_records in batch.values():
                records += [
                    Record(r.topic, r.partition, r.offset, r.key, r.value or b"")
                    for r in tp_records
                ]
    finally:
        await consumer.stop()
    return records
