"""The worker's Kafka producer: faust's aiokafka Producer, idempotent, and keeping the
leaders of every topic it writes to.

Idempotent as well as acks=all: faust asks for idempotence only inside its transactions,
which the worker does not use (docs/exactly-once.md). Without it a batch whose
acknowledgement was lost when a broker died or a leader moved is written again on
retry: the same outputs twice on their destination, where the agents reading it count
them twice.

Every topic it writes to tracked in the client's metadata: aiokafka's client asks for
the metadata of all topics until the first send to a topic it does not know yet (a
changelog faust has just created); from then on it asks only for the topics it was
told to track. A topic first written to while all were known was never added, so the
next refresh drops its leaders: its pending batch can no longer be sent, the agent
waiting for the acknowledgement stops, and nothing writes to the topic again to bring
it back. Seen on a three-node cluster at a worker's start, where new topics reach the
brokers' metadata more slowly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any

from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types.tuples import RecordMetadata

__all__ = ["WorkerProducer"]


class WorkerProducer(aiokafka_driver.Producer):
    """faust's aiokafka Producer, idempotent, tracking every topic it sends to (see the
    module docstring)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._tracked: set[str] = set()

    async def on_start(self) -> None:
        """Start the client; track every table's changelog once the first rebalance is
        complete: faust finds which worker owns a table's key (for a view forwarded to
        it) from this producer's metadata of the changelog, also on a worker that never
        writes to that table. Not before: the tables declare their changelogs after
        the producer starts, and each refresh until then would log every changelog of
        a new app as an error ("not found in cluster metadata")."""
        await super().on_start()
        self.app.on_rebalance_complete.connect(self._track_changelogs)  # type: ignore[arg-type]

    async def _track_changelogs(self, sender: Any = None, **kwargs: Any) -> None:
        for topic in sorted(self.app.tables.changelog_topics):
            self._track(topic)

    def key_partition(self, topic: str, key: bytes) -> Any:
        """faust's key_partition, or TimeoutError while `topic`'s partitions are not
        known yet (the view answers 503 and is asked again), never a TypeError."""
        self._track(topic)
        if self._ensure_producer()._metadata.partitions_for_topic(topic) is None:
            raise TimeoutError(f"the partitions of {topic} are not known yet")
        return super().key_partition(topic, key)

    def _track(self, topic: str) -> None:
        if topic not in self._tracked:
            # The refresh add_topic starts is not awaited: aiokafka's send waits for the
            # topic's metadata itself when it has none.
            self._ensure_producer().client.add_topic(topic)
            self._tracked.add(topic)

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
        *,
        transactional_id: str | None = None,
    ) -> Awaitable[RecordMetadata]:
        """faust's send, once `topic` is among the topics the client keeps metadata of."""
        self._track(topic)
        return await super().send(
            topic, key, value, partition, timestamp, headers, transactional_id=transactional_id
        )
