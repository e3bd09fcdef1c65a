"""A patch for aiokafka's producer: space its metadata retries during an outage.

aiokafka retries a failed metadata update at once: while a partition has no known
leader (a broker that answered NotLeaderForPartition on its way down) and no broker
answers, its sender asks for metadata in a tight loop - thousands of attempts a
second, a CPU core taken from the engine for the whole outage.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaProducer


def space_metadata_retries(producer: AIOKafkaProducer, backoff_s: float) -> None:
    """Make `producer` wait `backoff_s` before retrying a failed metadata update.

    This wraps the client's `force_metadata_update` (the sender's only way in) so
    that a request within `backoff_s` of a failed one is made when that time is up.
    """
    client = producer.client
    update = client.force_metadata_update
    failed_at = [float("-inf")]

    def record(future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None and future.result() is False:
            failed_at[0] = time.monotonic()

    def fresh() -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = update()
        future.add_done_callback(record)
        return future

    async def later(delay: float) -> Any:
        await asyncio.sleep(delay)
        return await fresh()

    def force_metadata_update() -> asyncio.Future[Any]:
        delay = failed_at[0] + backoff_s - time.monotonic()
        if delay <= 0:
            return fresh()
        return asyncio.ensure_future(later(delay))

    client.force_metadata_update = force_metadata_update
