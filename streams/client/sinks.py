"""Where an engine's events go: one small interface, three implementations.

`EventSink` is the transport-agnostic contract an engine codes against: an async
`emit(event_type, event)` that is best effort (it never raises for transport
trouble and never blocks indefinitely). Every sink here also has the synchronous
`publish(event_type, event)` of `EventPublisher`, so code that cannot await (a
`SessionRecorder`, a thread) uses the same sinks.

- `KafkaSink` wraps a `Publisher` (batched, idempotent, best effort).
- `NoopSink` discards events: the degraded mode when there is no broker to talk
  to (a `Publisher` also falls back to it on its own while the broker is down).
- `InMemorySink` keeps events for inspection, for tests (thread-safe `snapshot()`).

All three make the same checks as the publisher (`streams.client.checks`): the
confidentiality refusal always, schema validation unless `validate=False`. A bug
that puts prompt text into a lifecycle event therefore fails the same way in a
unit test with `InMemorySink`, on a laptop without Kafka and in production.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import orjson

from streams.client.buffer import PublisherStats
from streams.client.checks import check_event
from streams.client.publisher import Publisher
from streams.domain.validation import SchemaRegistry, default_registry


@runtime_checkable
class EventSink(Protocol):
    """Emits events. Best effort: never raises for transport trouble, never blocks
    indefinitely (it does raise `InvalidEvent` / `ConfidentialityError` for events
    the SDK refuses)."""

    async def emit(self, event_type: str, event: Mapping[str, Any]) -> None:
        """Send `event` (a dict of the `event_type` schema), best effort."""
        ...


@runtime_checkable
class EventPublisher(Protocol):
    """The synchronous side: `publish` answers whether the event was accepted."""

    def publish(self, event_type: str, event: Mapping[str, Any]) -> bool:
        """Accept `event` for sending (True) or drop it (False); never blocks on I/O."""
        ...


class NoopSink:
    """Discards every event after checking it, and counts them (`discarded`)."""

    def __init__(self, *, validate: bool = True, registry: SchemaRegistry | None = None) -> None:
        self._validate = validate
        self._registry = registry or default_registry()
        self._lock = threading.Lock()
        self._discarded = 0

    @property
    def discarded(self) -> int:
        """How many events were published to this sink (and discarded)."""
        return self._discarded

    def publish(self, event_type: str, event: Mapping[str, Any]) -> bool:
        """Check `event`, then discard it; answers False (nothing was sent)."""
        check_event(event_type, event, validate=self._validate, registry=self._registry)
        with self._lock:
            self._discarded += 1
        return False

    async def emit(self, event_type: str, event: Mapping[str, Any]) -> None:
        """`publish`, as an `EventSink`."""
        self.publish(event_type, event)


class InMemorySink:
    """Keeps every accepted event, in order, for tests. Thread-safe.

    Events are stored encoded, so a snapshot is a copy that neither the publishing
    code nor the test can change behind the other's back, and an event that would
    not serialise fails at publish time as it would with a real publisher."""

    def __init__(self, *, validate: bool = True, registry: SchemaRegistry | None = None) -> None:
        self._validate = validate
        self._registry = registry or default_registry()
        self._lock = threading.Lock()
        self._events: list[tuple[str, bytes]] = []

    def publish(self, event_type: str, event: Mapping[str, Any]) -> bool:
        """Check `event` and keep a copy; answers True."""
        doc = check_event(event_type, event, validate=self._validate, registry=self._registry)
        body = orjson.dumps(doc)
        with self._lock:
            self._events.append((event_type, body))
        return True

    async def emit(self, event_type: str, event: Mapping[str, Any]) -> None:
        """`publish`, as an `EventSink`."""
        self.publish(event_type, event)

    def snapshot(self) -> list[tuple[str, dict[str, Any]]]:
        """A copy of every (event type, event) kept so far, in publish order."""
        with self._lock:
            kept = list(self._events)
        return [(event_type, orjson.loads(body)) for event_type, body in kept]

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """A copy of the events kept so far (of one type when given)."""
        return [doc for t, doc in self.snapshot() if event_type is None or t == event_type]

    def clear(self) -> None:
        """Forget every event kept so far."""
        with self._lock:
            self._events.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)


class KafkaSink:
    """An `EventSink` (and `EventPublisher`) over a `Publisher`."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    @classmethod
    async def connect(cls, **options: Any) -> KafkaSink:
        """A sink over `await Publisher.connect(**options)` (never raises for an
        unreachable broker: the publisher starts in its no-op mode)."""
        return cls(await Publisher.connect(**options))

    def publish(self, event_type: str, event: Mapping[str, Any]) -> bool:
        """`Publisher.publish`."""
        return self.publisher.publish(event_type, event)

    async def emit(self, event_type: str, event: Mapping[str, Any]) -> None:
        """`Publisher.publish`, as an `EventSink`."""
        self.publisher.publish(event_type, event)

    async def flush(self, timeout: float | None = 10.0) -> bool:
        """`Publisher.flush`."""
        return await self.publisher.flush(timeout)

    async def close(self, timeout: float = 10.0) -> PublisherStats:
        """`Publisher.close`."""
        return await self.publisher.close(timeout)

    @property
    def stats(self) -> PublisherStats:
        """The publisher's counters."""
        return self.publisher.stats
