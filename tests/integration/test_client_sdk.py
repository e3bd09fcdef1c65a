"""The engine-side SDK against real brokers.

- 20,000 events of several types through `Publisher` and through `SyncPublisher`
  (from four threads) arrive on `engine.ingest` exactly once, batched (fewer
  messages than events), each message with the `event-type` header, one type per
  message, every event of a message on its entity's partition.
- A broker restart under load, on a private broker (the shared one stays up): an
  engine thread publishes every 2 ms while the broker is stopped and started
  again. No publish call waits on the broker or raises; the outage's events are
  dropped and counted; publishing resumes by itself; and every attempt is
  accounted for: arrived (exactly once) + dropped == attempts.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.client import (
    COMPARISON_RESULT,
    DROP_REASONS,
    ENGINE_EVENT,
    ENGINE_EXECUTION,
    EVENT_TYPE_HEADER,
    ML_JOB_COMMAND,
    SESSION_EVENT,
    Publisher,
    PublisherStats,
    SyncPublisher,
    events,
)
from streams.config.settings import Settings
from streams.config.topics import EVENT_ROUTES, TopicNames
from streams.domain.validation import default_registry
from streams.kafka.admin import ensure_topics
from streams.kafka.partitioner import partition_for
from tests.private_broker import PrivateBroker

pytestmark = pytest.mark.integration

EVENTS = 20_000
REGISTRY = default_registry()


# --- events with an identity, and reading them back -------------------------------------


def make_event(i: int) -> tuple[str, dict[str, Any]]:
    """Event number `i`: five types in turn, each identifiable (see `identity`)."""
    engine = f"engine-{i % 11}"
    kind = i % 5
    if kind == 0:
        return ENGINE_EXECUTION, events.execution(
            engine, f"input {i}", f"output {i}", latency_ms=i % 900, trace_id=f"t-{i}"
        )
    if kind == 1:
        return ENGINE_EVENT, events.request_served(engine, "/v1/chat", "qwen3-4b", "local", i, 200)
    if kind == 2:
        return SESSION_EVENT, events.inference_recorded(f"sess-{i % 17}", "wav2vec2", "1.0", i)
    if kind == 3:
        return ML_JOB_COMMAND, events.submit_job("train", engine, job_id=f"{i:032x}")[1]
    candidates = [events.candidate("a", "x", quality_score=0.5), events.candidate("b", "y")]
    return COMPARISON_RESULT, events.comparison(
        f"query {i}", candidates, "b", 0.9, comparison_id=f"c-{i}"
    )


def identity(event_type: str, doc: dict[str, Any]) -> str:
    """What makes an event of `make_event` unique."""
    if event_type == ENGINE_EXECUTION:
        return str(doc["trace_id"])
    if event_type == COMPARISON_RESULT:
        return str(doc["comparison_id"])
    if event_type == ML_JOB_COMMAND:
        return str(doc["job_id"])
    return f"{event_type}:{doc['latency_ms']}"


@dataclass(frozen=True)
class Message:
    """One message read back from engine.ingest, decoded."""

    partition: int
    offset: int
    key: bytes | None
    headers: dict[str, bytes]
    event_type: str
    docs: list[dict[str, Any]]
    batched: bool


def decode(record: Any) -> Message:
    headers = {k: v for k, v in record.headers}
    value = orjson.loads(record.value)
    return Message(
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        headers=headers,
        event_type=headers.get(EVENT_TYPE_HEADER, b"").decode(),
        docs=value if isinstance(value, list) else [value],
        batched=isinstance(value, list),
    )


async def read_ingest(
    bootstrap: str, topic: str, done: Callable[[list[Message]], bool], timeout: float
) -> list[Message]:
    """Read `topic` from the beginning until `done(messages)` holds (TimeoutError at the
    deadline), then on to the end offsets, so that duplicates would show."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    messages: list[Message] = []
    try:
        found = consumer.partitions_for_topic(topic)
        while not found:
            await consumer._client.force_metadata_update()
            found = consumer.partitions_for_topic(topic)
        partitions = [TopicPartition(topic, p) for p in sorted(found)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout

        async def more() -> None:
            batch = await consumer.getmany(timeout_ms=300, max_records=5_000)
            for records in batch.values():
                messages.extend(decode(r) for r in records)

        while not done(messages):
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met in {timeout}s ({len(messages)} messages)")
            await more()
        ends = await consumer.end_offsets(partitions)
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            await more()
    finally:
        await consumer.stop()
    return messages


def event_count(messages: list[Message]) -> int:
    return sum(len(m.docs) for m in messages)


def check_messages(messages: list[Message], partitions: int) -> Counter[str]:
    """Every message: the event-type header, one type, valid events, all on the
    partition of their entity id and keyed by it when they share it. Answers how many
    times each event identity arrived."""
    seen: Counter[str] = Counter()
    for message in messages:
        assert message.event_type in EVENT_ROUTES, message.headers
        key_field = EVENT_ROUTES[message.event_type].key_field
        keys = set()
        for doc in message.docs:
            assert REGISTRY.check(message.event_type, doc) is None
            key = doc[key_field].encode()
            keys.add(key)
            assert partition_for(key, partitions) == message.partition
            seen[identity(message.event_type, doc)] += 1
        assert message.key == (next(iter(keys)) if len(keys) == 1 else None)
        assert message.batched == (len(message.docs) > 1)
    return seen


def prepare(env: dict[str, str]) -> Settings:
    settings = Settings.from_env(env)
    asyncio.run(ensure_topics(settings))
    return settings


def assert_all_arrived_once(
    settings: Settings, sent: dict[str, tuple[str, dict[str, Any]]], stats: PublisherStats
) -> list[Message]:
    topic = TopicNames(settings.topic_prefix).ingest
    messages = asyncio.run(
        read_ingest(settings.bootstrap_servers, topic, lambda m: event_count(m) >= len(sent), 120)
    )
    seen = check_messages(messages, settings.partitions)
    assert set(seen) == set(sent) and set(seen.values()) == {1}  # exactly once
    for message in messages:
        for doc in message.docs:
            event_type, original = sent[identity(message.event_type, doc)]
            assert event_type == message.event_type and doc == original
    assert len(messages) < len(sent) // 10  # batched: far fewer messages than events
    assert stats.batches_sent == len(messages) and stats.published == len(sent)
    assert stats.dropped_total == 0 and stats.pending == 0 and stats.send_errors == 0
    return messages


# --- throughput and exactly once -------------------------------------------------------


def test_publisher_delivers_every_event_once_in_batches(isolated_env: dict[str, str]) -> None:
    settings = prepare(isolated_env)
    sent: dict[str, tuple[str, dict[str, Any]]] = {}

    async def scenario() -> PublisherStats:
        publisher = await Publisher.connect(
            settings=settings, buffer_events=50_000, compression="gzip"
        )
        assert publisher.state == "connected"
        for i in range(EVENTS):
            event_type, doc = make_event(i)
            sent[identity(event_type, doc)] = (event_type, doc)
            assert publisher.publish(event_type, doc)
            if i % 200 == 0:
                await asyncio.sleep(0)  # as a serving engine would, between requests
        assert await publisher.flush(timeout=60)
        return await publisher.close()

    stats = asyncio.run(asyncio.wait_for(scenario(), 180))
    assert len(sent) == EVENTS
    assert_all_arrived_once(settings, sent, stats)


def test_sync_publisher_delivers_every_event_once_from_threads(
    isolated_env: dict[str, str],
) -> None:
    settings = prepare(isolated_env)
    sent: dict[str, tuple[str, dict[str, Any]]] = {}
    slowest: list[float] = []
    errors: list[BaseException] = []
    threads = 4

    with SyncPublisher(settings, buffer_events=50_000) as publisher:
        assert publisher.state == "connected"

        def engine(n: int) -> None:
            worst = 0.0
            try:
                for i in range(n, EVENTS, threads):
                    event_type, doc = make_event(i)
                    sent[identity(event_type, doc)] = (event_type, doc)
                    started = time.monotonic()
                    assert publisher.publish(event_type, doc)
                    worst = max(worst, time.monotonic() - started)
            except BaseException as exc:
                errors.append(exc)
            slowest.append(worst)

        workers = [threading.Thread(target=engine, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert errors == []
        assert publisher.flush(timeout=60)
    stats = publisher.stats
    assert stats.state == "closed" and len(sent) == EVENTS
    assert_all_arrived_once(settings, sent, stats)
    # Never waiting on the broker: what remains is thread scheduling (GIL) jitter.
    assert max(slowest) < 0.5, f"slowest publish call: {max(slowest):.3f}s"


# --- broker restart under load ---------------------------------------------------------


@dataclass
class Engine:
    """A thread that publishes one uniquely identified execution every `interval`
    seconds, timing every publish call."""

    publisher: SyncPublisher
    interval: float = 0.002
    attempts: list[str] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)
    durations: list[float] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="engine", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        i = 0
        while not self.stopping.is_set():
            trace_id = f"r-{i}"
            doc = events.execution("engine-r", "in", "out", latency_ms=1, trace_id=trace_id)
            started = time.monotonic()
            try:
                ok = self.publisher.publish(ENGINE_EXECUTION, doc)
            except BaseException as exc:  # the guarantee under test: this never happens
                self.errors.append(exc)
                return
            self.durations.append(time.monotonic() - started)
            self.attempts.append(trace_id)
            if ok:
                self.accepted.add(trace_id)
            i += 1
            self.stopping.wait(self.interval)

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=10)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout}s")
        time.sleep(0.02)


def test_publishing_survives_a_broker_restart(tmp_path: Path, isolated_env: dict[str, str]) -> None:
    broker = PrivateBroker(tmp_path / "kafka")
    budget_s = 0.005
    # Scheduling slack: the GIL switch interval (5 ms), GC pauses and a loaded test
    # machine. Waiting on the broker would take seconds (connect and request timeouts).
    slack_s = 0.2
    publisher: SyncPublisher | None = None
    engine: Engine | None = None
    try:
        env = {**isolated_env, "KAFKA_BOOTSTRAP_SERVERS": broker.start()}
        settings = prepare(env)
        topic = TopicNames(settings.topic_prefix).ingest
        publisher = SyncPublisher(
            settings,
            block_budget=budget_s,
            buffer_events=250,  # fills while a stall is being detected: buffer_full
            unavailable_after=1.0,
        )
        assert publisher.state == "connected"
        engine = Engine(publisher)
        engine.start()
        wait_until(lambda: publisher.stats.published >= 200, 30, "events published at first")

        broker.stop()  # returns once the broker process has exited
        stopped_at = time.monotonic()
        wait_until(lambda: publisher.state == "unavailable", 30, "no-op mode")
        # Keep publishing into the outage for a few seconds.
        wait_until(lambda: time.monotonic() - stopped_at >= 3.0, 10, "the outage")
        assert publisher.stats.dropped["broker_unavailable"] > 0

        broker.start()  # same home, data and ports: the topics are still there
        first_after_restart = len(engine.attempts)

        def arrived_after_restart(messages: list[Message]) -> bool:
            return any(
                int(doc["trace_id"][2:]) >= first_after_restart for m in messages for doc in m.docs
            )

        asyncio.run(read_ingest(broker.bootstrap, topic, arrived_after_restart, 120))
        wait_until(lambda: publisher.state == "connected", 30, "publishing resumed")

        engine.stop()
        final = publisher.close(timeout=30)
        messages = asyncio.run(
            read_ingest(broker.bootstrap, topic, lambda m: event_count(m) >= final.published, 60)
        )
    finally:
        if engine is not None:
            engine.stop()
        if publisher is not None:
            publisher.close(timeout=5)
        broker.stop()

    assert engine.errors == []
    slowest = max(engine.durations)
    assert slowest <= budget_s + slack_s, f"slowest publish call: {slowest:.3f}s"

    arrived = Counter(doc["trace_id"] for m in messages for doc in m.docs)
    attempts = len(engine.attempts)
    assert set(arrived.values()) == {1}, "duplicates on the topic"
    assert set(arrived) <= engine.accepted  # an event refused at publish never arrives
    assert final.attempts == attempts and final.pending == 0
    assert len(arrived) == final.published
    assert len(arrived) + final.dropped_total == attempts
    assert set(final.dropped) == set(DROP_REASONS)
    assert final.dropped["broker_unavailable"] > 0 and final.reconnects >= 1
    assert final.dropped["invalid"] == final.dropped["too_large"] == 0
    # Events from after the restart made it (the wait above), and so did the rest.
    assert max(int(t[2:]) for t in arrived) >= first_after_restart
    print(
        f"\nrestart: {attempts} attempts, {len(arrived)} arrived, dropped {dict(final.dropped)},"
        f" {final.reconnects} reconnect(s), {len(messages)} messages,"
        f" slowest publish {slowest * 1000:.2f} ms,"
        f" p99 {sorted(engine.durations)[int(attempts * 0.99)] * 1000:.3f} ms"
    )
