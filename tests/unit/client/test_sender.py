"""The sender (streams.client.sender) against a fake producer: what it hands over and
how it counts each outcome, and how it keeps the connection.

Due events go out packed, to their partition, with the event-type header; the
broker's acknowledgement counts them published, the producer's failure dropped;
a message the producer will not take goes back to the buffer and the publisher
turns unavailable; so does a publisher whose messages wait too long for an
acknowledgement, and the next acknowledgement (or a fresh producer) ends that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from streams.client import sender as sender_module
from streams.client.buffer import Buffer
from streams.client.sender import Sender
from streams.kafka.partitioner import partition_for

TOPIC = "engine.ingest"
E = "engine_execution"


@dataclass
class Sent:
    value: bytes
    key: bytes | None
    partition: int | None
    headers: list[tuple[str, bytes]]
    future: asyncio.Future[Any]


@dataclass
class Broker:
    """What the fake producers meet: a broker that answers or not, and takes
    messages or refuses them."""

    reachable: bool = True
    refuse: BaseException | None = None  # raised by send()
    partitions: int = 4
    producers: list[FakeProducer] = field(default_factory=list)

    @property
    def sent(self) -> list[Sent]:
        return [sent for producer in self.producers for sent in producer.sent]


class FakeAccumulator:
    def __init__(self) -> None:
        self.failed: list[BaseException] = []

    def fail_all(self, exc: BaseException) -> None:
        self.failed.append(exc)


class FakeProducer:
    def __init__(self, broker: Broker, **options: Any) -> None:
        self.broker = broker
        self.options = options
        self.sent: list[Sent] = []
        self.stopped = False
        self._message_accumulator = FakeAccumulator()
        cluster = type("Cluster", (), {"partitions_for_topic": self._partitions})()
        self.client = type("Client", (), {"cluster": cluster})()
        self.client.force_metadata_update = self._update

    def _partitions(self, topic: str) -> set[int]:
        return set(range(self.broker.partitions))

    def _update(self) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(True)
        return future

    async def start(self) -> None:
        if not self.broker.reachable:
            raise ConnectionError("no broker")

    async def partitions_for(self, topic: str) -> set[int]:
        return self._partitions(topic)

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        assert topic == TOPIC
        if self.broker.refuse is not None:
            raise self.broker.refuse
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append(Sent(value, key, partition, headers or [], future))
        return future

    async def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Broker:
    broker = Broker()

    def make(**options: Any) -> FakeProducer:
        producer = FakeProducer(broker, **options)
        broker.producers.append(producer)
        return producer

    monkeypatch.setattr(sender_module, "AIOKafkaProducer", make)
    return broker


def setup(unavailable_after_s: float = 5.0) -> tuple[Buffer, Sender]:
    buffer = Buffer(1_000, batch_events=100, batch_bytes=100_000, linger_s=0.0)
    sender = Sender(
        buffer,
        TOPIC,
        {"bootstrap_servers": "fake:9092", "retry_backoff_ms": 250},
        connect_timeout_s=1.0,
        unavailable_after_s=unavailable_after_s,
        backoff_s=(0.01, 0.05),
    )
    return buffer, sender


def publish(buffer: Buffer, sender: Sender, key: bytes, n: int) -> None:
    accepted, wake = buffer.offer(E, key, b'{"n":%d}' % n, 0.0)
    assert accepted
    if wake:
        sender.wake()


async def until(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_due_events_are_handed_over_packed_and_counted_when_acknowledged(broker: Broker) -> None:
    async def scenario() -> None:
        buffer, sender = setup()
        await sender.start()
        assert buffer.state == "connected" and sender.running
        for n in range(6):
            publish(buffer, sender, b"gpt-x" if n % 2 else b"sess-42", n)
        await until(lambda: sum(s.value.count(b"{") for s in broker.sent) == 6)
        for sent in broker.sent:
            assert sent.headers == [("event-type", E.encode())]
            assert sent.key in (b"gpt-x", b"sess-42") or sent.key is None
            if sent.key is not None:
                assert sent.partition == partition_for(sent.key, 4)
        assert buffer.stats().in_flight == 6
        for sent in broker.sent:
            sent.future.set_result(None)
        await until(lambda: buffer.stats().published == 6)
        stats = buffer.stats()
        assert stats.batches_sent == len(broker.sent) and stats.pending == 0
        await sender.stop()
        assert sender.give_up() == (0, 0)
        await sender.close_producer(abandon=False)
        assert broker.producers[0].stopped

    run(scenario)


def test_a_failed_delivery_drops_the_message_as_broker_unavailable_or_too_large(
    broker: Broker,
) -> None:
    async def scenario() -> None:
        buffer, sender = setup()
        await sender.start()
        publish(buffer, sender, b"a", 0)
        await until(lambda: len(broker.sent) == 1)
        broker.sent[0].future.set_exception(KafkaTimeoutError())
        publish(buffer, sender, b"a", 1)
        await until(lambda: len(broker.sent) == 2)
        broker.sent[1].future.set_exception(MessageSizeTooLargeError())
        await until(lambda: buffer.pending() == 0)
        stats = buffer.stats()
        assert stats.dropped["broker_unavailable"] == 1 and stats.dropped["too_large"] == 1
        assert stats.send_errors == 2 and stats.published == 0
        await sender.stop()

    run(scenario)


def test_a_message_the_producer_refuses_as_too_large_is_dropped_at_once(broker: Broker) -> None:
    async def scenario() -> None:
        buffer, sender = setup()
        await sender.start()
        broker.refuse = MessageSizeTooLargeError()
        publish(buffer, sender, b"a", 0)
        await until(lambda: buffer.pending() == 0)
        assert buffer.stats().dropped["too_large"] == 1 and buffer.state == "connected"
        await sender.stop()

    run(scenario)


def test_a_message_not_taken_goes_back_and_a_fresh_producer_sends_it(broker: Broker) -> None:
    async def scenario() -> None:
        buffer, sender = setup()
        await sender.start()
        broker.refuse = KafkaTimeoutError()
        publish(buffer, sender, b"a", 0)
        await until(lambda: buffer.state == "unavailable")
        assert buffer.stats().buffered == 1  # kept, not dropped
        broker.refuse = None
        # Nothing in flight: the sender starts a fresh producer and resumes.
        await until(lambda: buffer.state == "connected" and len(broker.producers) == 2)
        assert broker.producers[0].stopped and buffer.stats().reconnects == 1
        await until(lambda: len(broker.sent) == 1)
        broker.sent[0].future.set_result(None)
        await until(lambda: buffer.stats().published == 1)
        await sender.stop()

    run(scenario)


def test_no_acknowledgement_in_time_is_an_outage_the_next_one_ends(broker: Broker) -> None:
    async def scenario() -> None:
        buffer, sender = setup(unavailable_after_s=0.1)
        await sender.start()
        publish(buffer, sender, b"a", 0)
        await until(lambda: len(broker.sent) == 1)
        await until(lambda: buffer.state == "unavailable")
        assert buffer.offer(E, b"a", b"{}", 0.0) == (False, False)  # no-op mode
        broker.sent[0].future.set_result(None)  # the same producer delivers it late
        await until(lambda: buffer.state == "connected")
        stats = buffer.stats()
        assert stats.published == 1 and stats.reconnects == 1 and len(broker.producers) == 1
        assert stats.dropped["broker_unavailable"] == 1
        await sender.stop()

    run(scenario)


def test_an_unreachable_broker_is_unavailable_and_retried_with_backoff(broker: Broker) -> None:
    async def scenario() -> None:
        broker.reachable = False
        buffer, sender = setup()
        await sender.start()
        assert buffer.state == "unavailable" and sender.running
        await until(lambda: len(broker.producers) >= 3)  # backoff 0.01 s doubling to 0.05
        # Each failed attempt's producer is stopped before the next one is made (the
        # newest may still be starting).
        assert all(p.stopped for p in broker.producers[:-1])
        broker.reachable = True
        await until(lambda: buffer.state == "connected")
        assert buffer.stats().reconnects == 1
        await sender.stop()
        await sender.close_producer(abandon=False)

    run(scenario)


def test_close_gives_up_on_messages_in_flight(broker: Broker) -> None:
    async def scenario() -> None:
        buffer, sender = setup()
        await sender.start()
        for n in range(3):
            publish(buffer, sender, b"a", n)
        await until(lambda: len(broker.sent) == 1)  # the three in one message
        await sender.stop()
        assert not sender.running
        assert sender.give_up() == (1, 3)
        producer = broker.producers[0]
        await sender.close_producer(abandon=True)
        assert producer.stopped and len(producer._message_accumulator.failed) == 1
        broker.sent[0].future.set_result(None)  # too late: already given up on
        await asyncio.sleep(0.01)
        assert buffer.stats().published == 0 and buffer.stats().in_flight == 3

    run(scenario)
