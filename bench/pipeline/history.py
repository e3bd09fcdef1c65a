"""The history case's set-up: the worker's output topics already holding records before
it starts (window records on engine.metrics.windows, dead letters on
engine.dead-letter, half each), as a worker that has run for a while leaves them, and,
for a restart, its group's offsets on them committed at their ends (its sinks wrote
them to files before)."""

from __future__ import annotations

import asyncio
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common.kafka import MAX_BYTES
from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.kafka.admin import client_options

WINDOW_TEMPLATE = {
    "engine_id": "engine-000", "kind": "engine", "window_start": 0, "window_end": 60,
    "window_start_iso": "", "window_end_iso": "", "window_size_s": 60, "revision": 0,
    "late_events": 0, "count": 6, "success_count": 6, "success_rate": 1.0,
    "latency_mean_ms": 40.0, "latency_min_ms": 20.0, "latency_max_ms": 80.0,
    "latency_p50_ms": 40.0, "latency_p95_ms": 75.0, "latency_p99_ms": 79.0,
    "quality_score_mean": None, "memory_mb_mean": 1000.0, "cpu_percent_mean": 50.0,
}  # fmt: skip
DEAD_TEMPLATE = {
    "id": "", "reason": "schema_violation",
    "error": {"message": "'engine_id' is a required property", "rule": "required",
              "path": "", "schema_path": "/required"},
    "source": {"topic": "engine.ingest", "partition": 0, "offset": 0, "batch_index": None,
               "message_timestamp_ms": 1670000000000},
    "original": "eyJzY2hlbWFfdmVyc2lvbiI6MX0=", "original_size": 19,
    "original_truncated": False, "dead_lettered_at": 1670000000.0,
    "event_type": "engine_execution",
}  # fmt: skip


async def fill_outputs(settings: Settings, names: TopicNames, records: int) -> float:
    """Produce `records` records to the worker's window and dead-letter topics (round
    robin over their partitions, no compression, large batches); answer the seconds."""
    producer = AIOKafkaProducer(
        **client_options(settings), acks=1, linger_ms=50,
        max_batch_size=1024 * 1024, max_request_size=MAX_BYTES,
    )  # fmt: skip
    await producer.start()
    started = time.monotonic()
    dumps = orjson.dumps
    parts = settings.partitions
    try:
        futures = []
        for i in range(records):
            p = i % parts
            if i % 2:
                letter = {**DEAD_TEMPLATE, "id": f"{names.ingest}/{p}/{i}/-"}
                value = dumps(letter)
                topic, key = names.dead_letter, None
            else:
                engine = f"engine-{i % 1000:03d}"
                start = 1_600_000_000 + (i // 1000) * 60
                window = {**WINDOW_TEMPLATE, "engine_id": engine, "window_start": start,
                          "window_end": start + 60}  # fmt: skip
                value, topic, key = dumps(window), names.metrics_windows, engine.encode()
            futures.append(await producer.send(topic, value, key=key, partition=p))
            if len(futures) >= 50_000:
                await asyncio.gather(*futures)
                futures.clear()
        await producer.flush()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.monotonic() - started


async def commit_at_ends(settings: Settings, group: str, topics: list[str]) -> None:
    """Commit `group`'s offsets at the end of every partition of `topics`: what a worker
    of that group leaves once its sinks have written them."""
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=group,
                                enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit({tp: offset for tp, offset in ends.items()})
    finally:
        await consumer.stop()
