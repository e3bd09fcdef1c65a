"""Read output partitions back from given offsets to their ends, with one consumer:
what a takeover of the exactly-once protocol (streams.durable.exactly_once) reads to
learn which outputs of its sources are written already."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.config.settings import Settings
from streams.kafka.admin import client_options

Destination = tuple[str, int]  # (topic, partition)


class KafkaTails:
    """Reads destination partitions from given offsets to their ends (one consumer)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> KafkaTails:
        self.consumer = AIOKafkaConsumer(
            **client_options(self.settings), enable_auto_commit=False
        )
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    async def end_offsets(self, destinations: list[Destination]) -> dict[Destination, int]:
        """The next offset of each destination."""
        assert self.consumer is not None
        tps = [TopicPartition(t, p) for t, p in destinations]
        self.consumer.assign(tps)
        ends = await self.consumer.end_offsets(tps)
        return {(tp.topic, tp.partition): end for tp, end in ends.items()}

    async def records(
        self, destination: Destination, start: int, end: int
    ) -> AsyncIterator[tuple[int, list[tuple[str, bytes]]]]:
        """(offset, headers) of each record of `destination` in [start, end)."""
        assert self.consumer is not None
        tp = TopicPartition(*destination)
        self.consumer.seek(tp, start)
        while await self.consumer.position(tp) < end:
            batch = await self.consumer.getmany(tp, timeout_ms=1000)
            for record in batch.get(tp, []):
                if record.offset < end:
                    yield record.offset, list(record.headers or ())
