"""The worker's Kafka producer (streams.runtime.producer): idempotent with acks=all, so a
batch retried after a broker dies is not written twice; and every topic it writes to
tracked in its client's metadata, so a refresh never drops the leaders of a topic with a
batch waiting."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from streams.config.settings import Settings
from streams.runtime.app import create_app
from streams.runtime.producer import WorkerProducer


def test_the_worker_producer_is_idempotent_with_acks_all(tmp_path: Path) -> None:
    async def client_options() -> tuple[type, bool, int]:
        settings = Settings(bootstrap_servers="127.0.0.1:1", data_dir=tmp_path)
        app = create_app(settings)
        producer = app.producer
        client = producer._new_producer()  # type: ignore[attr-defined]
        try:
            return type(producer), client._txn_manager is not None, client._sender._acks
        finally:
            await client.stop()

    kind, idempotent, acks = asyncio.run(client_options())
    assert kind is WorkerProducer
    assert idempotent  # aiokafka keeps a producer id and sequence numbers only then
    assert acks == -1  # all in-sync replicas


class FakeClient:
    def __init__(self) -> None:
        self.tracked: list[str] = []

    def add_topic(self, topic: str) -> None:
        self.tracked.append(topic)


class FakeKafkaProducer:
    """What faust's send calls: aiokafka's producer, recording what it is given."""

    def __init__(self) -> None:
        self.client = FakeClient()
        self.sent: list[tuple[Any, ...]] = []

    async def send(self, topic: str, value: bytes, **kwargs: Any) -> str:
        self.sent.append((topic, value, kwargs["partition"]))
        return "future"


def test_every_topic_sent_to_is_tracked_once_before_its_first_send(tmp_path: Path) -> None:
    async def send_some() -> tuple[list[str], list[tuple[Any, ...]], list[Any]]:
        app = create_app(Settings(bootstrap_servers="127.0.0.1:1", data_dir=tmp_path))
        producer = app.producer
        fake = FakeKafkaProducer()
        producer._producer = fake  # type: ignore[attr-defined]
        answers = [
            await producer.send(topic, None, b"v", partition, None, None)
            for topic, partition in (("a", 0), ("b", 1), ("a", 2), ("c", 0), ("b", 0))
        ]
        return fake.client.tracked, fake.sent, answers

    tracked, sent, answers = asyncio.run(send_some())
    assert tracked == ["a", "b", "c"]
    assert sent == [("a", b"v", 0), ("b", b"v", 1), ("a", b"v", 2), ("c", b"v", 0),
                    ("b", b"v", 0)]  # fmt: skip
    assert answers == ["future"] * 5


class FakeMetadata:
    def __init__(self, partitions: dict[str, set[int]]) -> None:
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions.get(topic)


def test_a_key_of_a_topic_without_known_partitions_is_a_timeout_not_a_type_error(
    tmp_path: Path,
) -> None:
    """A forwarded view asks which worker owns a key before the changelog's partitions
    are known: a TimeoutError (503, asked again), and the topic tracked from then on."""
    import pytest

    app = create_app(Settings(bootstrap_servers="127.0.0.1:1", data_dir=tmp_path))
    producer = app.producer
    fake = FakeKafkaProducer()
    fake._metadata = FakeMetadata({})  # type: ignore[attr-defined]
    producer._producer = fake  # type: ignore[attr-defined]
    with pytest.raises(TimeoutError, match="changelog-x"):
        producer.key_partition("changelog-x", b"k")
    assert fake.client.tracked == ["changelog-x"]


def test_every_table_changelog_is_tracked_once_the_first_rebalance_is_complete(
    tmp_path: Path,
) -> None:
    from streams.runtime.app import raw_table

    async def start() -> tuple[list[str], list[str]]:
        app = create_app(Settings(bootstrap_servers="127.0.0.1:1", data_dir=tmp_path))
        raw_table(app, "jobs", 4, "jobs")
        raw_table(app, "sessions", 4, "sessions")
        producer = app.producer
        fake = FakeKafkaProducer()

        async def no_start() -> None:
            producer._producer = fake  # type: ignore[attr-defined]

        producer._new_producer = lambda: fake  # type: ignore[attr-defined,method-assign]
        fake.start = no_start  # type: ignore[attr-defined]
        await producer.on_start()
        # Not at start: the tables have not created their changelogs yet, and each
        # metadata refresh would log the missing topics as errors.
        at_start = list(fake.client.tracked)
        await app.on_rebalance_complete.send()
        return at_start, fake.client.tracked

    at_start, after = asyncio.run(start())
    assert at_start == []
    assert sorted(after) == sorted(
        ["enginestream-jobs-changelog", "enginestream-sessions-changelog"]
    )
