"""Follow a topic and print its messages, for `enginestream tail`."""

from __future__ import annotations

from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.config.settings import Settings
from streams.kafka.admin import check_broker, client_options, describe_topics


async def tail(
    settings: Settings,
    topic: str,
    from_beginning: bool,
    limit: int | None,
    echo: Callable[[str], None],
) -> int:
    """Print messages of `topic` (all partitions) until `limit` or cancellation."""
    await check_broker(settings)
    described = await describe_topics(settings, [topic])
    count = described[0].partitions if described else 0
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    shown = 0
    try:
        tps = [TopicPartition(topic, p) for p in range(count)]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        while limit is None or shown < limit:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    value = (record.value or b"").decode("utf-8", "replace")
                    echo(f"{record.topic}/{record.partition}/{record.offset}\t{value}")
                    shown += 1
                    if limit is not None and shown >= limit:
                        return shown
    finally:
        await consumer.stop()
    return shown
