"""Broker and topic setup shared by the Kafka benchmarks: settings, the local broker's
pid, the pre-produced input, and the group-less consumer every reader uses."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.common import ROOT
from bench.common.machine import command
from streams.config.settings import Settings
from streams.kafka.admin import client_options

KAFKA_SH = ROOT / "ops" / "kafka" / "kafka.sh"
# Large enough for a whole JSON array of input events in one message.
MAX_BYTES = 8 * 1024 * 1024


def bench_settings(partitions: int, prefix: str | None = None) -> Settings:
    """Settings for the broker of KAFKA_BOOTSTRAP_SERVERS (the local one by default),
    with `partitions` per topic and, if given, topic names under `prefix`."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        "ENGINESTREAM_PARTITIONS": str(partitions),
    }
    if prefix is not None:
        env["ENGINESTREAM_TOPIC_PREFIX"] = prefix
    return Settings.from_env(env)


def broker_pid() -> int | None:
    """The local broker's pid, as ops/kafka/kafka.sh reports it (None if not local):
    its CPU is sampled with the processor's."""
    found = re.search(r"pid (\d+)", command(str(KAFKA_SH), "status", timeout=30))
    return int(found.group(1)) if found else None


@dataclass(frozen=True, slots=True)
class InputMessage:
    """One message of a benchmark's input. No partition: round robin over them."""

    value: bytes
    events: int
    partition: int | None = None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


def json_array(bodies: Sequence[bytes]) -> bytes:
    """Encoded JSON documents as one JSON array (the batch shape of the input)."""
    return b"[" + b",".join(bodies) + b"]"


async def produce_input(settings: Settings, topic: str, messages: list[InputMessage]) -> float:
    """Produce `messages` to `topic` (acks=all), each to its partition or round robin;
    answer the seconds it took. Done before any processor starts, so that every one
    reads the same input from the broker."""
    producer = AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        linger_ms=20,
        max_batch_size=1024 * 1024,
        max_request_size=MAX_BYTES,
    )
    await producer.start()
    started = time.monotonic()
    try:
        futures = []
        for i, msg in enumerate(messages):
            futures.append(
                await producer.send(
                    topic,
                    msg.value,
                    key=msg.key,
                    partition=i % settings.partitions if msg.partition is None else msg.partition,
                    headers=list(msg.headers) or None,
                )
            )
        await producer.flush()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.monotonic() - started


async def produce_shape(
    settings: Settings, shape: str, topic: str, messages: list[InputMessage]
) -> dict[str, float]:
    """Produce one input shape's messages, say so, and answer its entry of the results'
    "inputs" (message count and seconds to produce)."""
    seconds = await produce_input(settings, topic, messages)
    print(f"{shape}: produced {len(messages)} messages in {seconds:.1f}s", flush=True)
    return {"messages": len(messages), "produce_s": round(seconds, 2)}


def plain_consumer(settings: Settings, **options: Any) -> AIOKafkaConsumer:
    """A consumer without a group (partitions are assigned by hand, nothing is
    committed) that reads from the beginning and takes whole batch messages."""
    return AIOKafkaConsumer(
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_BYTES,
        fetch_max_bytes=4 * MAX_BYTES,
        **options,
    )
