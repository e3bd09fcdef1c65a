"""The engine-side producer: batched, idempotent, and best effort.

`Publisher.publish(event_type, event)` is a plain (non-async) call that checks the
event (see `streams.client.checks`), encodes it and appends it to a bounded
in-memory buffer; a background task on the publisher's event loop sends the buffer
to `engine.ingest`. The call never waits on the broker:

- It returns True when the event was accepted, False when it was dropped. A drop is
  counted in `stats.dropped` by reason: `buffer_full` (the bound `buffer_events` is
  reached), `broker_unavailable` (the publisher is in its no-op mode, or an accepted
  event could not be delivered), `too_large` (one event over `max_event_bytes`),
  `invalid` (refused by the checks) and `closed` (published after `close()`, or
  still buffered when a publisher that was never started is closed).
- It is thread-safe. Called on the publisher's own event loop it never waits at
  all; called from another thread (see `SyncPublisher`) while the buffer is full it
  waits at most `block_budget` seconds for room, then drops the event.
- It raises only for programming errors: `ConfidentialityError` (a lifecycle event
  with content fields; always checked, even with `validate=False`) and
  `InvalidEvent` (unknown type, not a JSON object, or off-schema with validation on).
  With `on_invalid="drop"` schema errors are dropped and counted as `invalid`
  instead (and logged with the rule and path, never values); confidentiality
  refusals always raise. Raising is the default because a schema error is a bug
  that a test should catch, not a condition of the running system.

**Batches.** Events of one type are packed into one Kafka message, a JSON array
(a lone event is sent as an object), bounded by `batch_events`, `batch_bytes` and
a `linger` wait (seconds) for more, with the `event-type` header. Each message holds only
events whose entity id (`engine_id`, `session_id`, `job_id`, ... the key of their
typed topic) maps to the same partition of `engine.ingest` under Kafka's default
partitioner, and is sent to that partition: keyed by that id when all its events
share it (always so for a lone event), unkeyed otherwise. So every event of one
entity travels through one ingest partition in publish order - a job's `start`
never overtakes its `submit` - although the router re-keys everything anyway.

**Delivery.** One idempotent producer (`acks="all"`, `enable_idempotence=True`)
per publisher: retries after a broker error or restart never duplicate a message.
Once a message is handed to the producer its events count as `in_flight` until
the broker acknowledges them (`published`) or the producer gives up on them
(dropped as `broker_unavailable`, counted in `send_errors`). Every `publish()` call
ends in exactly one place: `attempts == published + dropped_total + pending`.

**Unavailable broker.** When the first connection fails (within
`connect_timeout`), or later when messages wait for an acknowledgement and
none comes for `unavailable_after` (or a message cannot be handed to the
producer in that time), the publisher switches to its no-op mode: `publish()`
drops every new event at once as `broker_unavailable`. A broker that answers but
turns the publisher away (a refused SASL login, a certificate it does not accept)
is logged once at ERROR with the setting to fix, since waiting will not mend it.
Accepted events keep their place: those already with the producer are retried by
it (the same idempotent producer, so no duplicates when the broker comes back), the
rest stay buffered.
A background task reconnects (backoff 0.5 s doubling to 5 s), and the first
acknowledgement or successful connection (`reconnects`) resumes normal
publishing. `close(timeout)` flushes what it can within the timeout and drops the
rest as `broker_unavailable`.

**Exit.** A publisher still open when its work ends is closed for you: it sends
for at most `exit_timeout` seconds (5), then stops its producer (at most 5 s more
when a broker does not answer). That happens when `asyncio.run()` ends with the
publisher open (the loop cancels its sender, which first sends what is buffered and
waits for the acknowledgements; a `close()` of a task cancelled by the same
shutdown waits for that), or at interpreter exit (`streams.client.exit_flush`, which
also says what Python allows there) when its loop is still there to run on. What
is still undelivered then is dropped as `broker_unavailable` and logged, never lost
without a word. `exit_timeout=0` turns this off.

Every duration in the options is in seconds, as are `flush(timeout)` and
`close(timeout)`.

**Outages.** During an outage the producer's metadata retries
are spaced by its retry backoff (aiokafka alone retries in a tight loop, taking a
CPU core from the engine).

One limit, from Kafka itself: a message whose request reached the broker just as
it went down, and whose retries only fail after aiokafka's batch expiry
(`request_timeout_ms`, 40 s, with the partition leaderless), is counted as dropped
although the broker may have written it; so is a message still unacknowledged
when `close(timeout)` gives up. Outages shorter than that, with the publisher
kept open until the broker is back, are counted exactly.

**Where it lives.** This module is the public face (options, `publish`, `flush`,
`close`); `streams.client.buffer` holds the bounded buffer and the counts,
`streams.client.sender` the producer and the task that feeds it,
`streams.client.batching` the messages' format, and
`streams.client.metadata_backoff` the spacing of aiokafka's metadata retries,
`streams.client.typed` the one-call methods (`publisher.execution(...)`) and
`streams.client.exit_flush` the closing at exit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal

import orjson

from streams.client import exit_flush
from streams.client.batching import EVENT_TYPE_HEADER
from streams.client.buffer import DROP_REASONS, Buffer, PublisherStats, State
from streams.client.checks import ConfidentialityError, InvalidEvent, check_event, entity_key
from streams.client.sender import Sender
from streams.client.typed import EventMethods
from streams.config.settings import Settings, parse_bootstrap
from streams.config.topics import TopicNames
from streams.domain.validation import SchemaRegistry, default_registry
from streams.kafka.admin import client_options
from streams.kafka.refusal import refusal_reason
from streams.tls import ENV_NAMES

# The names this module has always offered, wherever they are defined now.
__all__ = ["DROP_REASONS", "EVENT_TYPE_HEADER", "Publisher", "PublisherStats", "State"]

log = logging.getLogger(__name__)

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
COMPRESSIONS = (None, "gzip", "snappy", "lz4", "zstd")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be positive, not {value!r}")


class Publisher(EventMethods):
    """Best-effort, batched publisher of events to `engine.ingest` (see the module
    docstring for the guarantees). Create it with `await Publisher.connect(...)`, or
    `Publisher(settings)` and `await start()`; end with `await close()`. Publish with
    `publish(event_type, event)` or the one-call methods: `execution(...)`,
    `engine_started(...)`, ... (one per builder in `streams.client.events`).

    Durations are seconds: `linger` (0.05) waits for more events of a type before
    sending, `block_budget` (0.005) bounds a call from another thread while the
    buffer is full, `connect_timeout` (5) bounds connecting, `unavailable_after` (3)
    is how long unacknowledged messages wait before the no-op mode,
    `reconnect_backoff` (0.5, 5) spaces reconnections, and `exit_timeout` (5) bounds
    the flush when the publisher is closed for you at exit (0: no such flush).

    `settings` defaults to `Settings.from_env()`; keyword options override it. TLS:
    `ssl_cafile` (the CA that signed the broker's certificate) and, for mutual TLS,
    `ssl_certfile`, `ssl_keyfile` and `ssl_key_password` (PEM files); a file that
    cannot be used raises `streams.tls.TLSConfigError` (a ValueError) naming it. The
    work is shared by a `Buffer` (what is accepted, and the counts) and a `Sender`
    (the producer and the task that feeds it, on the event loop).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        bootstrap_servers: str | None = None,
        topic_prefix: str | None = None,
        validate: bool = True,
        on_invalid: Literal["raise", "drop"] = "raise",
        buffer_events: int = 10_000,
        batch_events: int = 500,
        batch_bytes: int = 512_000,
        linger: float = 0.05,
        block_budget: float = 0.005,
        max_event_bytes: int | None = None,
        compression: str | None = None,
        client_id: str = "enginestream-client",
        connect_timeout: float = 5.0,
        unavailable_after: float = 3.0,
        reconnect_backoff: tuple[float, float] = (0.5, 5.0),
        exit_timeout: float = 5.0,
        security_protocol: str | None = None,
        sasl_mechanism: str | None = None,
        sasl_username: str | None = None,
        sasl_password: str | None = None,
        ssl_cafile: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        ssl_key_password: str | None = None,
        registry: SchemaRegistry | None = None,
    ) -> None:
        base = settings if settings is not None else Settings.from_env()
        overrides: dict[str, Any] = {
            "bootstrap_servers": parse_bootstrap(bootstrap_servers)
            if bootstrap_servers is not None
            else None,
            "topic_prefix": topic_prefix,
            "security_protocol": security_protocol,
            "sasl_mechanism": sasl_mechanism,
            "sasl_username": sasl_username,
            "sasl_password": sasl_password,
            "ssl_cafile": ssl_cafile,
            "ssl_certfile": ssl_certfile,
            "ssl_keyfile": ssl_keyfile,
            "ssl_key_password": ssl_key_password,
        }
        self.settings = dataclasses.replace(
            base, **{k: v for k, v in overrides.items() if v is not None}
        )
        if self.settings.security_protocol not in SECURITY_PROTOCOLS:
            raise ValueError(f"security_protocol must be one of {', '.join(SECURITY_PROTOCOLS)}")
        if compression not in COMPRESSIONS:
            raise ValueError("compression must be None or one of gzip, snappy, lz4, zstd")
        if on_invalid not in ("raise", "drop"):
            raise ValueError('on_invalid must be "raise" or "drop"')
        for name, value in (
            ("buffer_events", buffer_events),
            ("batch_events", batch_events),
            ("batch_bytes", batch_bytes),
            ("connect_timeout", connect_timeout),
            ("unavailable_after", unavailable_after),
            ("reconnect_backoff[0]", reconnect_backoff[0]),
        ):
            _positive(name, value)
        for name, value in (
            ("linger", linger), ("block_budget", block_budget), ("exit_timeout", exit_timeout)
        ):
            if value < 0:
                raise ValueError(f"{name} must not be negative, not {value!r} (seconds)")
        if reconnect_backoff[1] < reconnect_backoff[0]:
            raise ValueError("reconnect_backoff must be (initial, maximum), initial <= maximum")

        self.topic = TopicNames(self.settings.topic_prefix).ingest
        self._validate = validate
        self._on_invalid = on_invalid
        self._registry = registry or default_registry()
        self._budget = block_budget
        self.exit_timeout = exit_timeout
        self.connect_timeout = connect_timeout
        self._max_event_bytes = max_event_bytes or self.settings.max_message_bytes
        _positive("max_event_bytes", self._max_event_bytes)
        self._logged_invalid: set[tuple[str, str | None, str]] = set()
        self._buffer = Buffer(buffer_events, batch_events, batch_bytes, linger)
        # A TLS file that cannot be used is named as the caller gave it: the keyword
        # option, or the environment variable when it came from there.
        tls_names = {
            key: name if settings is None and overrides[f"ssl_{key}"] is None else f"ssl_{key}"
            for key, name in ENV_NAMES.items()
        }
        producer_options: dict[str, Any] = {
            **client_options(self.settings, tls_names),
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 0,  # batching is done here, per event type
            "max_batch_size": max(16_384, batch_bytes + 16_384),
            "max_request_size": max(batch_bytes, self._max_event_bytes) + 65_536,
            "compression_type": compression,
            "retry_backoff_ms": 250,
        }
        self._sender = Sender(
            self._buffer,
            self.topic,
            producer_options,
            connect_timeout_s=connect_timeout,
            unavailable_after_s=unavailable_after,
            backoff_s=reconnect_backoff,
            last_flush_s=exit_timeout,
            on_loop_end=self._finish,
            explain=lambda: refusal_reason(
                self.settings, client_options(self.settings, tls_names), min(connect_timeout, 5.0)
            ),
        )

    # --- construction and shutdown ---------------------------------------------------

    @classmethod
    async def connect(
        cls,
        bootstrap_servers: str | None = None,
        topic_prefix: str | None = None,
        **options: Any,
    ) -> Publisher:
        """A started publisher (same options as the constructor). Never raises for an
        unreachable broker: it then starts in its no-op mode and keeps reconnecting.
        Waits at most `connect_timeout` seconds for the first connection."""
        publisher = cls(bootstrap_servers=bootstrap_servers, topic_prefix=topic_prefix, **options)
        await publisher.start()
        return publisher

    async def start(self) -> Publisher:
        """Connect (bounded by `connect_timeout`) and start the background sender on
        the running event loop. Events published before this are kept (bounded)."""
        if self._sender.running or self._buffer.state == "closed":
            return self
        await self._sender.start()
        if self.exit_timeout > 0:
            exit_flush.track(self)
        return self

    async def flush(self, timeout: float | None = 10.0) -> bool:
        """Send everything buffered now (without lingering) and wait until every
        accepted event is acknowledged or dropped; False when `timeout` seconds
        pass first (for example while the broker is unavailable)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._buffer.flushing():
            self._sender.wake()
            while True:
                if self._buffer.pending() == 0:
                    return True
                if not self._sender.running or (
                    deadline is not None and time.monotonic() >= deadline
                ):
                    return False
                await asyncio.sleep(0.005)

    async def close(self, timeout: float = 10.0) -> PublisherStats:
        """Flush for at most `timeout` seconds, drop what is still undelivered (as
        `broker_unavailable`), stop the sender and the producer; answer the final
        stats. Publishing after this drops events as `closed`. Never raises for
        broker trouble."""
        if self._buffer.state == "closed":
            return self.stats
        if self._sender.finishing:  # the loop is ending, and its last flush closes us
            await self._sender.finished()
            return self.stats
        self._buffer.close()
        started = self._sender.running
        if started:
            await self.flush(timeout)
            await self._sender.stop()  # waits for the loop-end flush if that began meanwhile
        await self._finish(started)
        return self.stats

    async def _finish(self, started: bool = True) -> None:
        """What ends every close: count what is undelivered as dropped, stop the
        producer, leave the exit registry."""
        if self._buffer.state == "closed":  # the loop-end flush finished it already
            return
        self._buffer.close()
        exit_flush.untrack(self)
        messages, in_flight = self._sender.give_up()
        dropped = self._buffer.drop_remaining(
            "broker_unavailable" if started else "closed", messages, in_flight
        )
        if dropped:
            log.warning(
                "enginestream publisher closed with %d undelivered events (dropped)", dropped
            )
        # Messages given up on are failed first, so that stopping does not wait for them.
        await self._sender.close_producer(abandon=messages > 0)
        self._buffer.set_closed()

    def close_at_exit(self) -> None:
        """Close within `exit_timeout` at interpreter exit when the event loop is still
        there and idle (a loop closed with the publisher open has nothing to run on:
        what is left is then counted and logged)."""
        if self._buffer.state == "closed":
            return
        loop = self._sender.loop
        if loop is not None and not loop.is_closed() and not loop.is_running():
            loop.run_until_complete(self.close(self.exit_timeout))
            return
        pending = self._buffer.pending()
        if pending:
            log.warning(
                "enginestream publisher: %d events undelivered at exit; its event loop "
                "ended before close()", pending,
            )

    async def __aenter__(self) -> Publisher:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- publishing ----------------------------------------------------------------

    def publish(self, event_type: str, event: Mapping[str, Any]) -> bool:
        """Accept `event` for sending (True) or drop it (False, counted). Never waits
        on the broker; see the module docstring. Raises ConfidentialityError and,
        unless `on_invalid="drop"`, InvalidEvent."""
        try:
            doc = check_event(event_type, event, validate=self._validate, registry=self._registry)
            try:
                body = orjson.dumps(doc)
            except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
                raise InvalidEvent(
                    f"a {event_type} must be JSON-serialisable ({exc})", event_type=event_type
                ) from None
        except InvalidEvent as exc:
            self._buffer.count_drop("invalid")
            if self._on_invalid == "raise" or isinstance(exc, ConfidentialityError):
                raise
            self._log_invalid(exc)
            return False
        if len(body) > self._max_event_bytes:
            self._buffer.count_drop("too_large")
            return False
        # Off the loop (another thread), a full buffer may wait for room, briefly.
        may_wait = self._sender.running and not self._sender.on_loop()
        accepted, wake = self._buffer.offer(
            event_type, entity_key(event_type, doc), body, self._budget if may_wait else 0.0
        )
        if wake:
            self._sender.wake()
        return accepted

    async def emit(self, event_type: str, event: Mapping[str, Any]) -> None:
        """`publish` as an `EventSink` (never awaits the broker)."""
        self.publish(event_type, event)

    @property
    def state(self) -> State:
        """new, connecting, connected, unavailable (no-op mode) or closed."""
        return self._buffer.state

    @property
    def stats(self) -> PublisherStats:
        """A consistent snapshot of the counters."""
        return self._buffer.stats()

    def _log_invalid(self, exc: InvalidEvent) -> None:
        v = exc.violation
        key = (exc.event_type, v.rule if v else None, v.path if v else "")
        if key not in self._logged_invalid and len(self._logged_invalid) < 1_000:
            self._logged_invalid.add(key)
            log.warning("dropping invalid events (first of its kind): %s", exc)
