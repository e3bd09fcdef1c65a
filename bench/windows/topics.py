"""What the window benchmark asks the broker about a run: the input's end offsets, when
a group's commits reached them, and, at the end, which topics to delete."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.config.settings import Settings
from streams.kafka.admin import client_options


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """End offset of every partition of `topic`."""
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: int(offset) for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def wait_committed(
    settings: Settings, group: str, topic: str, ends: dict[int, int], timeout: float = 60.0
) -> float | None:
    """Poll `group`'s committed offsets on `topic` until they reach `ends`; answer the
    epoch time they did (None on timeout)."""
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=10_000)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            offsets = await admin.list_consumer_group_offsets(group)
            got = {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
            if all(got.get(p, -1) >= end for p, end in ends.items() if end > 0):
                return time.time()
            await asyncio.sleep(0.1)
        return None
    finally:
        await admin.close()


async def delete_topics(settings: Settings, run_id: str) -> int:
    """Delete every topic whose name holds `run_id`: the inputs, the worker's outputs
    and internal topics, Quix's changelog and repartition topics. Answer how many."""
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=30_000)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if run_id in t]
        if names:
            await admin.delete_topics(names)
        return len(names)
    finally:
        await admin.close()
