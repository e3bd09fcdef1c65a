"""How long a fetch may wait at the broker for data: short, so that an event crosses the
worker's agents in milliseconds, not seconds.

faust creates its Kafka consumer with `fetch_max_wait_ms=1500`. A fetch request names
only the partitions that have nothing buffered in the client when it is sent; one whose
data arrives while such a request waits at the broker is fetched only by the next
request, up to 1.5 s later. Inside one worker every routed event takes that hop (the
router writes `engine.executions`, the window agent reads it), so a window's final
record waited up to 1.5 s more for each. Here the wait is `fetch_wait_s`
(`ENGINESTREAM_FETCH_WAIT`, 0.1 s by default): on an idle worker that is a fetch every
0.1 s per broker, under load no difference (a fetch answers as soon as data is there).
"""

from __future__ import annotations

from typing import Any, ClassVar

import aiokafka
from faust.transport.drivers import aiokafka as aiokafka_driver

# aiokafka's consumer keeps the setting here until `start` builds its fetcher from it.
FETCH_WAIT_ATTRIBUTE = "_fetch_max_wait_ms"


class ShortFetchWaitThread(aiokafka_driver.AIOKafkaConsumerThread):
    """faust's consumer thread, whose Kafka consumer waits at most the transport's
    `fetch_wait_ms` for data."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        client = super()._create_worker_consumer(transport)
        wait_ms = getattr(transport, "fetch_wait_ms", None)
        if wait_ms is not None:
            if not hasattr(client, FETCH_WAIT_ATTRIBUTE):
                raise RuntimeError(
                    f"aiokafka's consumer has no {FETCH_WAIT_ATTRIBUTE}: this aiokafka "
                    "version is not one this worker was built for"
                )
            setattr(client, FETCH_WAIT_ATTRIBUTE, int(wait_ms))
        return client


class ShortFetchWait(aiokafka_driver.Consumer):
    """faust's aiokafka Consumer with ShortFetchWaitThread."""

    # The faust internals this mixin overrides (checked at start, see
    # streams.runtime.versions.check_internals).
    OVERRIDES: ClassVar[tuple[str, ...]] = ("_new_consumer_thread",)
    PRIVATES: ClassVar[tuple[str, ...]] = ("_thread._create_worker_consumer",)

    def _new_consumer_thread(self) -> aiokafka_driver.AIOKafkaConsumerThread:
        """faust's, with the thread above."""
        return ShortFetchWaitThread(self, loop=self.loop, beacon=self.beacon)
