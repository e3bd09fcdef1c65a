"""A faust app without a broker, and raw messages, for the consumer's and the bulk
agents' unit tests."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from streams.runtime.bulk import BulkConsumer

TOPIC = "t.engine.executions"


def message(
    offset: int, partition: int = 0, generation: int = 0, value: bytes = b"{}"
) -> ConsumerMessage:
    """A message of TOPIC as faust's consumer makes it."""
    return ConsumerMessage(
        TOPIC, partition, offset, 0.0, 0, None, b"k", value, None,
        tp=TP(TOPIC, partition), generation_id=generation,
    )  # fmt: skip


def bulk_consumer(app: faust.App, handler: Any) -> BulkConsumer:
    """A BulkConsumer of TOPIC, subscribed (TOPIC is then an acked topic)."""
    bulk = BulkConsumer(app, [TOPIC], handler, max_batch=10, within_s=0.0, name="test")
    loop = asyncio.get_event_loop()
    loop.run_until_complete(app.topics._update_indices())  # as at subscription
    assert app.topics.acks_enabled_for(TOPIC)
    return bulk
