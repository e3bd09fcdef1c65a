"""enginestream's engine-side SDK: publish telemetry to Kafka without ever getting in
the way of inference. It does not import Faust (only aiokafka, orjson and the
project's schemas), so engines can depend on it alone.

    import asyncio
    from streams.client import ENGINE_EVENT, Publisher, events

    async def main() -> None:
        publisher = await Publisher.connect(bootstrap_servers="127.0.0.1:9092")
        publisher.publish(ENGINE_EVENT, events.engine_started("gpt-x", "qwen3-4b", port=8080))
        publisher.publish(ENGINE_EVENT, events.request_served(
            "gpt-x", "/v1/chat", "qwen3-4b", "local", latency_ms=42, status_code=200))
        await publisher.close()  # flushes; never raises for broker trouble

    asyncio.run(main())

Threads instead of asyncio: `with SyncPublisher(bootstrap_servers=...) as publisher:`
and the same `publisher.publish(...)`. Guarantees (see `streams.client.publisher`):
`publish()` never blocks beyond `block_budget_ms` (5 ms) and never raises for broker
trouble; events go into a bounded buffer, batched per type into one message on
`engine.ingest`; drops are counted by reason in `publisher.stats`; while the broker
is unreachable the publisher is a no-op sink and reconnects in the background.
A lifecycle event with content fields (prompt, completion, ...) is refused with
`ConfidentialityError`, and an off-schema event with `InvalidEvent`: both are bugs.
"""

from streams.client import events
from streams.client.batching import EVENT_TYPE_HEADER
from streams.client.buffer import DROP_REASONS, PublisherStats
from streams.client.checks import ConfidentialityError, InvalidEvent, check_event
from streams.client.events import (
    COMPARISON_RESULT,
    ENGINE_EVENT,
    ENGINE_EXECUTION,
    ML_JOB_COMMAND,
    SESSION_EVENT,
    TRAINING_SAMPLE,
)
from streams.client.publisher import Publisher
from streams.client.session import ModelUsage, SessionRecorder, SessionSummary
from streams.client.sinks import EventPublisher, EventSink, InMemorySink, KafkaSink, NoopSink
from streams.client.sync import SyncPublisher

__all__ = [
    "COMPARISON_RESULT",
    "DROP_REASONS",
    "ENGINE_EVENT",
    "ENGINE_EXECUTION",
    "EVENT_TYPE_HEADER",
    "ML_JOB_COMMAND",
    "SESSION_EVENT",
    "TRAINING_SAMPLE",
    "ConfidentialityError",
    "EventPublisher",
    "EventSink",
    "InMemorySink",
    "InvalidEvent",
    "KafkaSink",
    "ModelUsage",
    "NoopSink",
    "Publisher",
    "PublisherStats",
    "SessionRecorder",
    "SessionSummary",
    "SyncPublisher",
    "check_event",
    "events",
]
