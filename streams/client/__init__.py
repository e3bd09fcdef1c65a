"""enginestream's engine-side SDK: publish telemetry to Kafka without ever getting in
the way of inference. `pip install enginestream` brings it alone (aiokafka, orjson
and schema validation; no Faust, nothing platform-specific), so engines can depend
on it without the worker.

    import asyncio
    from streams.client import Publisher

    async def main() -> None:
        publisher = await Publisher.connect(bootstrap_servers="127.0.0.1:9092")
        publisher.engine_started("gpt-x", "qwen3-4b", port=8080)
        publisher.execution("gpt-x", "What is 2+2?", "4", latency_ms=42.0)
        await publisher.close()  # flushes; never raises for broker trouble

    asyncio.run(main())

Threads instead of asyncio: `with SyncPublisher(bootstrap_servers=...) as publisher:`
and the same calls. There is one method per builder in `streams.client.events`
(`execution`, `comparison`, `engine_started`, `request_served`, `session_started`,
`submit_job`, ...), and `publish(event_type, event)` for a prepared event.
Guarantees (see `streams.client.publisher`): a call never blocks beyond
`block_budget` (5 ms) and never raises for broker trouble; events go into a bounded
buffer, batched per type into one message on `engine.ingest`; drops are counted by
reason in `publisher.stats`; while the broker is unreachable the publisher is a
no-op sink and reconnects in the background; one left open is flushed and closed at
exit, within `exit_timeout`. The options' durations are seconds, as are the
timeouts of `flush()` and `close()`. A lifecycle event with
content fields (prompt, completion, ...) is refused with `ConfidentialityError`, and
an off-schema event with `InvalidEvent`: both are bugs.
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
