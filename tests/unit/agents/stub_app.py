"""A stand-in for the parts of a faust app that the agents' processors use: a producer
that records what it is asked to send (and answers offsets per partition, as a broker
would), the takeover's read of what it sent (`StubTails`), a table with a plain dict,
and messages as the consumer hands them over."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import orjson

from streams.durable import exactly_once


@dataclass
class Sent:
    """One message the producer was asked to send."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None
    offset: int = -1
    headers: list[tuple[str, bytes]] = field(default_factory=list)

    def doc(self) -> Any:
        return None if self.value is None else orjson.loads(self.value)


@dataclass
class StubProducer:
    """Records every send; each future resolves to the next offset of its partition."""

    sent: list[Sent] = field(default_factory=list)
    next_offset: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
        timestamp: Any, headers: Any,
    ) -> asyncio.Future[Any]:
        where = (topic, partition or 0)
        offset = self.next_offset[where]
        self.sent.append(Sent(topic, key, value, partition, offset, list(headers or [])))
        self.next_offset[where] += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(SimpleNamespace(topic=topic, partition=partition or 0, offset=offset))
        return future

    def to(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == topic]


class StubTails:
    """What the takeover reads back, from the stub producer's record of sends."""

    def __init__(self, producer: StubProducer) -> None:
        self.producer = producer

    async def __aenter__(self) -> StubTails:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    async def end_offsets(self, destinations: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {d: self.producer.next_offset[d] for d in destinations}

    async def records(
        self, destination: tuple[str, int], start: int, end: int
    ) -> AsyncIterator[tuple[int, list[tuple[str, bytes]]]]:
        for sent in self.producer.sent:
            if (sent.topic, sent.partition or 0) == destination and start <= sent.offset < end:
                yield sent.offset, sent.headers


class StubTable:
    """A table's data and changelog: `send_changelog` is recorded like a send."""

    def __init__(self, name: str, producer: StubProducer) -> None:
        self.name = name
        self.data: dict[bytes, bytes] = {}
        self.producer = producer
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: f"{name}-changelog")

    def send_changelog(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.producer.sent.append(Sent(f"{self.name}-changelog", key, value, partition))


def stub_app(monkeypatch: Any = None) -> Any:
    """An object with the app attributes the processors read. With `monkeypatch`, the
    takeovers of the processors built on it read back from its producer."""
    producer = StubProducer()
    if monkeypatch is not None:
        monkeypatch.setattr(exactly_once, "KafkaTails", lambda settings: StubTails(producer))
    consumer = SimpleNamespace(assignment=lambda: set())
    return SimpleNamespace(producer=producer, consumer=consumer, rebalancing=False)


def message(topic: str, partition: int, offset: int, value: bytes | None) -> Any:
    """A consumed message (the fields the processors read)."""
    return SimpleNamespace(topic=topic, partition=partition, offset=offset, value=value,
                           timestamp=1_700_000_000.0, headers=())  # fmt: skip


def event(msg: Any) -> Any:
    """A faust event wrapping `msg` (what take_events hands over)."""
    return SimpleNamespace(message=msg)
