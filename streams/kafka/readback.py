"""Read output partitions back from given offsets to their ends, with one consumer:
what a takeover of the exactly-once protocol (streams.durable.exactly_once) reads to
learn which outputs of its sources are written already.

A broker that does not answer (restarting, or failing over) is waited for: nothing
is lost by waiting, since the read comes before the outputs it decides. It is waited
for as long as the worker's producer waits to write (faust's producer request
timeout, 20 minutes); only then does the read fail, and the worker with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

from streams.config.settings import Settings
from streams.kafka.admin import client_options

log = logging.getLogger(__name__)

Destination = tuple[str, int]  # (topic, partition)
T = TypeVar("T")

PATIENCE_S = 1200.0
RETRY_S = 1.0
# What a broker that is down or restarting makes aiokafka raise (end_offsets times
# out after its request timeout; start fails at once when no bootstrap server answers).
UNAVAILABLE = (KafkaConnectionError, KafkaTimeoutError)


class KafkaTails:
    """Reads destination partitions from given offsets to their ends (one consumer)."""

    def __init__(self, settings: Settings, patience_s: float = PATIENCE_S) -> None:
        self.settings = settings
        self.patience_s = patience_s
        self.consumer: AIOKafkaConsumer | None = None
        self._deadline = 0.0

    async def __aenter__(self) -> KafkaTails:
        self._deadline = time.monotonic() + self.patience_s

        async def start() -> AIOKafkaConsumer:
            consumer = AIOKafkaConsumer(**client_options(self.settings), enable_auto_commit=False)
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
            return consumer

        self.consumer = await self._patiently(start, "connect")
        return self

    async def _patiently(self, step: Callable[[], Awaitable[T]], what: str) -> T:
        """`step()`, again every RETRY_S while the broker is unavailable, until the
        deadline of this read."""
        warned = False
        while True:
            try:
                return await step()
            except UNAVAILABLE as exc:
                if time.monotonic() + RETRY_S > self._deadline:
                    raise
                if not warned:
                    log.warning("reading outputs back: cannot %s (%r); waiting for the broker",
                                what, exc)
                    warned = True
            await asyncio.sleep(RETRY_S)

    async def __aexit__(self, *exc_info: object) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    async def end_offsets(self, destinations: list[Destination]) -> dict[Destination, int]:
        """The next offset of each destination."""
        assert self.consumer is not None
        tps = [TopicPartition(t, p) for t, p in destinations]
        consumer = self.consumer
        consumer.assign(tps)
        ends = await self._patiently(lambda: consumer.end_offsets(tps), "read the end offsets")
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
