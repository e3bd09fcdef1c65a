"""Read back what a processor wrote to an output partition after its state was saved.

Processors that emit records and then save their state (window finals, training
samples) record in that state the next offset of each output partition they have
accounted for. After a crash the state can be older than the output; reading each
output partition from the recorded offset to its end tells which records already
exist, so recomputing them does not write them twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.config.settings import Settings
from streams.kafka.admin import client_options


async def written_since(
    settings: Settings,
    topic: str,
    offsets: dict[int, int],
    identify: Callable[[Any], Any],
) -> set[Any]:
    """Ids (by `identify` on each decoded record; None to ignore a record) of the
    records of `topic` from `offsets[partition]` to the end of each partition."""
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    found: set[Any] = set()
    try:
        tps = [TopicPartition(topic, p) for p in offsets]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            if offsets[tp.partition] >= ends[tp]:
                continue
            consumer.seek(tp, offsets[tp.partition])
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for record in batch.get(tp, []):
                    value = orjson.loads(record.value) if record.value else None
                    docs = value if isinstance(value, list) else [value]
                    for doc in docs:
                        ident = identify(doc) if isinstance(doc, dict) else None
                        if ident is not None:
                            found.add(ident)
    finally:
        await consumer.stop()
    return found
