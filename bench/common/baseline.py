"""The skeleton of the plain aiokafka loops the benchmarks compare against: each runs
in a child process, reads a pre-produced topic from the beginning to the end it had,
and tells the parent when it was ready on its standard output."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

from aiokafka import TopicPartition

from bench.common.kafka import plain_consumer
from streams.config.settings import Settings


def mark(what: str, *rest: Any) -> None:
    """Tell the parent process `what` happened now: a line `WHAT <epoch> [rest...]`."""
    print(what, f"{time.time():.6f}", *rest, flush=True)


class InputReader:
    """Reads every partition of `topic` from the beginning to the end offsets it had
    when the reader was entered (the input is all produced before the loop starts)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
        self.consumer = plain_consumer(settings)
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]
        self.ends: dict[TopicPartition, int] = {}

    async def __aenter__(self) -> InputReader:
        """Connect and position at the start of every partition."""
        await self.consumer.start()
        self.consumer.assign(self.tps)
        await self.consumer.seek_to_beginning(*self.tps)
        self.ends = await self.consumer.end_offsets(self.tps)
        # Resolve the positions now, so that the first fetch is all that is left.
        for tp in self.tps:
            await self.consumer.position(tp)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.consumer.stop()

    async def batches(self, first: Callable[[], None]) -> AsyncIterator[list[Any]]:
        """Each fetched partition's records, until every partition is read to its end;
        `first()` is called as soon as the first fetch brought anything."""
        pending = {tp for tp in self.tps if self.ends[tp] > 0}
        started = False
        while pending:
            batch = await self.consumer.getmany(*pending, timeout_ms=500)
            if batch and not started:
                first()
                started = True
            for records in batch.values():
                yield records
            pending = {tp for tp in pending if await self.consumer.position(tp) < self.ends[tp]}
