"""The router benchmark's topics and its measure: every topic is created with the
broker's append time as the message timestamp, and the events on the output topics
are counted until they account for every input event."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.common.cpu import CpuMeter
from bench.common.kafka import plain_consumer
from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.kafka.admin import client_options, describe_topics

DEADLINE_S = 600.0
# The outputs are counted once they have been quiet this long (see OutputCounter).
QUIET_S = 2.0
POLL_S = 0.05
TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}
LOG_APPEND_TIME = 1


async def create_topics(settings: Settings, names: list[str]) -> None:
    """Create `names` (none may exist) with the settings' partition count and
    LogAppendTime timestamps; wait until their metadata shows every partition."""
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=15_000)
    await admin.start()
    try:
        response = await admin.create_topics(
            [
                NewTopic(
                    name,
                    settings.partitions,
                    settings.replication_factor or 1,
                    topic_configs=TOPIC_CONFIG,
                )
                for name in names
            ]
        )
        for name, code, *rest in response.topic_errors:
            if code != 0:
                raise RuntimeError(f"creating topic {name} failed: error {code} {rest}")
    finally:
        await admin.close()
    states = await describe_topics(settings, names)
    short = [s.name for s in states if s.partitions != settings.partitions]
    if len(states) != len(names) or short:
        raise RuntimeError(f"topics not ready: {short or names}")
    await _wait_for_leaders(settings, names)


async def _wait_for_leaders(settings: Settings, names: list[str], timeout: float = 30.0) -> None:
    """Wait until every partition of `names` has a leader (a fresh topic may show its
    partitions in metadata before their leaders are elected)."""
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=15_000)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            described = await admin.describe_topics(names)
            leaderless = [
                f"{t['topic']}:{p['partition']}"
                for t in described
                for p in t["partitions"]
                if p.get("leader", -1) < 0
            ]
            if not leaderless and len(described) == len(names):
                # Leaders are known before they serve: give them a moment.
                await asyncio.sleep(1.0)
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"partitions without a leader: {leaderless[:5]}")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


@dataclass
class Measurement:
    """What the outputs held at the end of one run, and when."""

    typed_events: dict[str, int] = field(default_factory=dict)
    typed_messages: int = 0
    dead_letters: int = 0
    first_append_ms: int | None = None
    last_append_ms: int | None = None
    non_log_append: int = 0

    @property
    def total(self) -> int:
        """Events accounted for: typed events plus dead letters."""
        return sum(self.typed_events.values()) + self.dead_letters


class OutputCounter:
    """Counts the events on a set of output topics, read from the beginning.

    While a run goes on it only polls end offsets (cheap for the processes being
    measured); once the outputs have been quiet for QUIET_S it reads what is new and
    counts it, and goes back to polling if the count is still short."""

    def __init__(self, settings: Settings, names: TopicNames) -> None:
        self.settings = settings
        self.names = names
        self.type_of = {topic: t for t, topic in names.typed.items()}
        topics = [*names.typed.values(), names.dead_letter]
        self.tps = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
        self.consumer = plain_consumer(settings, fetch_max_wait_ms=100)
        self.result = Measurement(typed_events={t: 0 for t in names.typed})
        self.counted_messages = 0

    async def start(self) -> None:
        """Connect, and position at the start of every output partition."""
        await self.consumer.start()
        self.consumer.assign(self.tps)
        await self.consumer.seek_to_beginning(*self.tps)

    async def stop(self) -> None:
        """Disconnect."""
        await self.consumer.stop()

    async def end_total(self) -> int:
        """Messages on the outputs now (sum of end offsets)."""
        ends = await self.consumer.end_offsets(self.tps)
        return int(sum(ends.values()))

    async def drain(self) -> None:
        """Read and count every output message up to the current end offsets."""
        ends = await self.consumer.end_offsets(self.tps)
        pending = {tp for tp in self.tps if await self.consumer.position(tp) < ends[tp]}
        while pending:
            batch = await self.consumer.getmany(*pending, timeout_ms=500, max_records=20_000)
            for tp, records in batch.items():
                for rec in records:
                    self._count(tp.topic, rec.value or b"", rec.timestamp, rec.timestamp_type)
            pending = {tp for tp in pending if await self.consumer.position(tp) < ends[tp]}

    def _count(self, topic: str, value: bytes, stamp: int, stamp_type: int) -> None:
        res = self.result
        self.counted_messages += 1
        if stamp_type != LOG_APPEND_TIME:
            res.non_log_append += 1
        res.first_append_ms = (
            stamp if res.first_append_ms is None else min(res.first_append_ms, stamp)
        )
        res.last_append_ms = stamp if res.last_append_ms is None else max(res.last_append_ms, stamp)
        if topic == self.names.dead_letter:
            res.dead_letters += 1
            return
        event_type = self.type_of[topic]
        res.typed_messages += 1
        events = len(orjson.loads(value)) if value[:1] == b"[" else 1
        res.typed_events[event_type] += events

    async def wait_for(
        self, expected: int, check_alive: Callable[[], None], meter: CpuMeter
    ) -> Measurement:
        """Block until the outputs account for `expected` events; fail after
        DEADLINE_S, on more events than expected, or when `check_alive` raises."""
        deadline = time.monotonic() + DEADLINE_S
        last_end, last_change = -1, time.monotonic()
        while True:
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(
                    f"outputs hold {self.result.total} of {expected} events after "
                    f"{DEADLINE_S:.0f}s: {self.result}"
                )
            meter.sample()
            end = await self.end_total()
            if end != last_end:
                last_end, last_change = end, now
            elif end > self.counted_messages and now - last_change >= QUIET_S:
                await self.drain()
                if self.result.total == expected:
                    return self.result
                if self.result.total > expected:
                    raise AssertionError(
                        f"outputs hold {self.result.total} events, more than the "
                        f"{expected} sent: {self.result}"
                    )
            check_alive()
            await asyncio.sleep(POLL_S)
