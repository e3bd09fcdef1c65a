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
  waits at most `block_budget_ms` for room, then drops the event.
- It raises only for programming errors: `ConfidentialityError` (a lifecycle event
  with content fields; always checked, even with `validate=False`) and
  `InvalidEvent` (unknown type, not a JSON object, or off-schema with validation on).
  With `on_invalid="drop"` schema errors are dropped and counted as `invalid`
  instead (and logged with the rule and path, never values); confidentiality
  refusals always raise. Raising is the default because a schema error is a bug
  that a test should catch, not a condition of the running system.

**Batches.** Events of one type are packed into one Kafka message, a JSON array
(a lone event is sent as an object), bounded by `batch_events`, `batch_bytes` and
a `linger_ms` wait for more, with the `event-type` header. Each message holds only
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
`connect_timeout_ms`), or later when messages wait for an acknowledgement and
none comes for `unavailable_after_ms` (or a message cannot be handed to the
producer in that time), the publisher switches to its no-op mode: `publish()`
drops every new event at once as `broker_unavailable`. Accepted events keep their
place: those already with the producer are retried by it (the same idempotent
producer, so no duplicates when the broker comes back), the rest stay buffered.
A background task reconnects (backoff 0.5 s doubling to 5 s), and the first
acknowledgement or successful connection (`reconnects`) resumes normal
publishing. `close(timeout)` flushes what it can within the timeout and drops the
rest as `broker_unavailable`. During an outage the producer's metadata retries
are spaced by its retry backoff (aiokafka alone retries in a tight loop, taking a
CPU core from the engine).

One limit, from Kafka itself: a message whose request reached the broker just as
it went down, and whose retries only fail after aiokafka's batch expiry
(`request_timeout_ms`, 40 s, with the partition leaderless), is counted as dropped
although the broker may have written it; so is a message still unacknowledged
when `close(timeout)` gives up. Outages shorter than that, with the publisher
kept open until the broker is back, are counted exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, RecordTooLargeError

from streams.client.checks import ConfidentialityError, InvalidEvent, check_event, entity_key
from streams.config.settings import Settings, parse_bootstrap
from streams.config.topics import EVENT_ROUTES, TopicNames
from streams.domain.validation import SchemaRegistry, default_registry
from streams.kafka.admin import client_options
from streams.kafka.partitioner import partition_for

log = logging.getLogger(__name__)

EVENT_TYPE_HEADER = "event-type"
DROP_REASONS: tuple[str, ...] = (
    "buffer_full",
    "broker_unavailable",
    "invalid",
    "too_large",
    "closed",
)
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
COMPRESSIONS = (None, "gzip", "snappy", "lz4", "zstd")

State = Literal["new", "connecting", "connected", "unavailable", "closed"]
Item = tuple[bytes | None, bytes]  # (entity key, encoded event)


@dataclass(frozen=True)
class PublisherStats:
    """A snapshot of a publisher's counters.

    Every `publish()` call is in exactly one of: published (acknowledged by the
    broker), dropped (by reason) or pending (buffered or in flight), so
    `attempts == published + dropped_total + pending` holds at every snapshot."""

    state: str
    attempts: int
    published: int
    batches_sent: int
    send_errors: int
    reconnects: int
    dropped: Mapping[str, int]
    buffered: int
    in_flight: int

    @property
    def dropped_total(self) -> int:
        """Events dropped for any reason."""
        return sum(self.dropped.values())

    @property
    def pending(self) -> int:
        """Events accepted and not yet acknowledged or dropped."""
        return self.buffered + self.in_flight


@dataclass(slots=True)
class Batch:
    """One Kafka message to send: events of one type bound for one partition."""

    event_type: str
    partition: int | None
    key: bytes | None
    items: list[Item]

    @property
    def count(self) -> int:
        """How many events the message carries."""
        return len(self.items)

    def value(self) -> bytes:
        """The message value: the event itself when alone, else a JSON array."""
        if len(self.items) == 1:
            return self.items[0][1]
        return b"[" + b",".join(body for _, body in self.items) + b"]"


def pack(
    event_type: str,
    items: Sequence[Item],
    partitions: int | None,
    batch_events: int,
    batch_bytes: int,
) -> list[Batch]:
    """Split `items` (in publish order) into messages: one partition each (by entity
    key; keyless events, or all when `partitions` is unknown, go unkeyed to any
    partition), at most `batch_events` events and `batch_bytes` bytes each (an
    event larger than that still gets a message of its own)."""
    by_partition: dict[int | None, list[Item]] = {}
    for item in items:
        key = item[0]
        where = partition_for(key, partitions) if key is not None and partitions else None
        by_partition.setdefault(where, []).append(item)
    out: list[Batch] = []
    for where, group in by_partition.items():
        chunk: list[Item] = []
        size = 1  # "[" and "]", and a comma before all but the first event
        for item in group:
            grow = len(item[1]) + 1
            if chunk and (len(chunk) >= batch_events or size + grow > batch_bytes):
                out.append(_batch(event_type, where, chunk))
                chunk, size = [], 1
            chunk.append(item)
            size += grow
        if chunk:
            out.append(_batch(event_type, where, chunk))
    return out


def _batch(event_type: str, partition: int | None, chunk: list[Item]) -> Batch:
    first = chunk[0][0]
    shared = first if partition is not None and all(k == first for k, _ in chunk) else None
    return Batch(event_type, partition, shared, chunk)


def _space_metadata_retries(producer: AIOKafkaProducer, backoff_s: float) -> None:
    """Make `producer` wait `backoff_s` before retrying a failed metadata update.

    aiokafka retries at once: while a partition has no known leader (a broker that
    answered NotLeaderForPartition on its way down) and no broker answers, its
    sender asks for metadata in a tight loop - thousands of attempts a second, a
    CPU core taken from the engine for the whole outage. This wraps the client's
    `force_metadata_update` (the sender's only way in) so that a request within
    `backoff_s` of a failed one is made when that time is up.
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


class _Group:
    """Buffered events of one type, oldest first."""

    __slots__ = ("items", "since", "size")

    def __init__(self, since: float) -> None:
        self.items: list[Item] = []
        self.size = 1
        self.since = since


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be positive, not {value!r}")


class Publisher:
    """Best-effort, batched publisher of events to `engine.ingest` (see the module
    docstring for the guarantees). Create it with `await Publisher.connect(...)`, or
    `Publisher(settings)` and `await start()`; end with `await close()`.

    `settings` defaults to `Settings.from_env()`; keyword options override it.
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
        linger_ms: float = 50,
        block_budget_ms: float = 5,
        max_event_bytes: int | None = None,
        compression: str | None = None,
        client_id: str = "enginestream-client",
        connect_timeout_ms: float = 5_000,
        unavailable_after_ms: float = 3_000,
        reconnect_backoff_ms: tuple[float, float] = (500, 5_000),
        security_protocol: str | None = None,
        sasl_mechanism: str | None = None,
        sasl_username: str | None = None,
        sasl_password: str | None = None,
        ssl_cafile: str | None = None,
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
            ("connect_timeout_ms", connect_timeout_ms),
            ("unavailable_after_ms", unavailable_after_ms),
            ("reconnect_backoff_ms[0]", reconnect_backoff_ms[0]),
        ):
            _positive(name, value)
        if linger_ms < 0 or block_budget_ms < 0:
            raise ValueError("linger_ms and block_budget_ms must not be negative")
        if reconnect_backoff_ms[1] < reconnect_backoff_ms[0]:
            raise ValueError("reconnect_backoff_ms must be (initial, maximum), initial <= maximum")

        self.topic = TopicNames(self.settings.topic_prefix).ingest
        self._validate = validate
        self._on_invalid = on_invalid
        self._registry = registry or default_registry()
        self._capacity = buffer_events
        self._batch_events = batch_events
        self._batch_bytes = batch_bytes
        self._linger = linger_ms / 1000
        self._budget = block_budget_ms / 1000
        self._max_event_bytes = max_event_bytes or self.settings.max_message_bytes
        _positive("max_event_bytes", self._max_event_bytes)
        self._connect_timeout = connect_timeout_ms / 1000
        self._unavailable_after = unavailable_after_ms / 1000
        self._tick = min(0.25, self._unavailable_after / 4)
        self._backoff_min = reconnect_backoff_ms[0] / 1000
        self._backoff_max = reconnect_backoff_ms[1] / 1000
        self._headers = {t: [(EVENT_TYPE_HEADER, t.encode())] for t in EVENT_ROUTES}
        self._producer_options: dict[str, Any] = {
            **client_options(self.settings),
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 0,  # batching is done here, per event type
            "max_batch_size": max(16_384, batch_bytes + 16_384),
            "max_request_size": max(batch_bytes, self._max_event_bytes) + 65_536,
            "compression_type": compression,
            "retry_backoff_ms": 250,
        }

        # Shared with publishing threads: everything below is guarded by _lock.
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._space_waiters = 0
        self._groups: dict[str, _Group] = {}
        self._buffered = 0  # in _groups
        self._sending = 0  # taken by the sender, not yet handed to the producer
        self._in_flight_events = 0  # handed to the producer, not yet acknowledged
        self._attempts = 0
        self._published = 0
        self._batches_sent = 0
        self._send_errors = 0
        self._reconnects = 0
        self._dropped = dict.fromkeys(DROP_REASONS, 0)
        self._state: State = "new"
        self._closing = False
        self._flushers = 0
        self._wake_pending = False

        # The event loop's own (only touched on the loop thread).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop_sender = False
        self._producer: AIOKafkaProducer | None = None
        self._partitions: int | None = None
        self._in_flight: dict[int, tuple[float, int]] = {}  # id -> (handed at, events)
        self._last_ack = 0.0
        self._ids = itertools.count()
        self._failed_connects = 0
        self._logged_invalid: set[tuple[str, str | None, str]] = set()

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
        Waits at most `connect_timeout_ms` for the first connection."""
        publisher = cls(bootstrap_servers=bootstrap_servers, topic_prefix=topic_prefix, **options)
        await publisher.start()
        return publisher

    async def start(self) -> Publisher:
        """Connect (bounded by `connect_timeout_ms`) and start the background sender on
        the running event loop. Events published before this are kept (bounded)."""
        if self._task is not None or self._state == "closed":
            return self
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        with self._lock:
            self._state = "connecting"
        if not await self._connect_once():
            self._set_unavailable("no broker answered")
        self._task = self._loop.create_task(self._run(), name="enginestream-publisher")
        return self

    async def flush(self, timeout: float | None = 10.0) -> bool:
        """Send everything buffered now (without lingering) and wait until every
        accepted event is acknowledged or dropped; False when `timeout` seconds
        pass first (for example while the broker is unavailable)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._flushers += 1
        try:
            self._wake_sender()
            while True:
                with self._lock:
                    pending = self._buffered + self._sending + self._in_flight_events
                if pending == 0:
                    return True
                if self._task is None or (deadline is not None and time.monotonic() >= deadline):
                    return False
                await asyncio.sleep(0.005)
        finally:
            with self._lock:
                self._flushers -= 1

    async def close(self, timeout: float = 10.0) -> PublisherStats:
        """Flush for at most `timeout` seconds, drop what is still undelivered (as
        `broker_unavailable`), stop the sender and the producer; answer the final
        stats. Publishing after this drops events as `closed`. Never raises for
        broker trouble."""
        if self._state == "closed":
            return self.stats
        with self._lock:
            self._closing = True
            self._space.notify_all()
        started = self._task is not None
        if started:
            await self.flush(timeout)
            await self._stop_task()
        reason = "broker_unavailable" if started else "closed"
        stuck = list(self._in_flight.values())
        self._in_flight.clear()
        with self._lock:
            left = self._buffered + self._sending
            self._groups.clear()
            self._buffered = self._sending = 0
            stuck_events = sum(count for _, count in stuck)
            self._in_flight_events -= stuck_events
            self._dropped[reason] += left + stuck_events
            self._send_errors += len(stuck)
        if left or stuck_events:
            log.warning(
                "enginestream publisher closed with %d undelivered events (dropped)",
                left + stuck_events,
            )
        producer, self._producer = self._producer, None
        if producer is not None:
            if stuck:
                # Give up on messages the producer would otherwise retry forever, so
                # that stop() does not wait for them (they are counted above).
                accumulator = getattr(producer, "_message_accumulator", None)
                if accumulator is not None:
                    accumulator.fail_all(KafkaTimeoutError("publisher closed"))
            await self._stop_producer(producer)
        with self._lock:
            self._state = "closed"
        return self.stats

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
            self._count_drop("invalid")
            if self._on_invalid == "raise" or isinstance(exc, ConfidentialityError):
                raise
            self._log_invalid(exc)
            return False
        if len(body) > self._max_event_bytes:
            self._count_drop("too_large")
            return False
        return self._offer(event_type, entity_key(event_type, doc), body)

    async def emit(self, event_type: str, event: Mapping[str, Any]) -> None:
        """`publish` as an `EventSink` (never awaits the broker)."""
        self.publish(event_type, event)

    @property
    def state(self) -> State:
        """new, connecting, connected, unavailable (no-op mode) or closed."""
        return self._state

    @property
    def stats(self) -> PublisherStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return PublisherStats(
                state=self._state,
                attempts=self._attempts,
                published=self._published,
                batches_sent=self._batches_sent,
                send_errors=self._send_errors,
                reconnects=self._reconnects,
                dropped=dict(self._dropped),
                buffered=self._buffered + self._sending,
                in_flight=self._in_flight_events,
            )

    def _count_drop(self, reason: str) -> None:
        with self._lock:
            self._attempts += 1
            self._dropped[reason] += 1

    def _log_invalid(self, exc: InvalidEvent) -> None:
        v = exc.violation
        key = (exc.event_type, v.rule if v else None, v.path if v else "")
        if key not in self._logged_invalid and len(self._logged_invalid) < 1_000:
            self._logged_invalid.add(key)
            log.warning("dropping invalid events (first of its kind): %s", exc)

    def _offer(self, event_type: str, key: bytes | None, body: bytes) -> bool:
        on_loop = threading.get_ident() == self._loop_thread
        with self._lock:
            self._attempts += 1
            reason = self._refusal_locked()
            if reason is None and self._pending_locked() >= self._capacity:
                reason = self._wait_for_room_locked(on_loop)
            if reason is not None:
                self._dropped[reason] += 1
                return False
            group = self._groups.get(event_type)
            if group is None:
                group = self._groups[event_type] = _Group(time.monotonic())
            was_empty = self._buffered == 0
            group.items.append((key, body))
            grow = len(body) + 1
            group.size += grow
            self._buffered += 1
            became_full = len(group.items) == self._batch_events or (
                group.size >= self._batch_bytes > group.size - grow
            )
            wake = (was_empty or became_full) and not self._wake_pending
            if wake:
                self._wake_pending = True
        if wake:
            self._wake_sender()
        return True

    def _refusal_locked(self) -> str | None:
        if self._closing or self._state == "closed":
            return "closed"
        if self._state == "unavailable":
            return "broker_unavailable"
        return None

    def _pending_locked(self) -> int:
        return self._buffered + self._sending + self._in_flight_events

    def _wait_for_room_locked(self, on_loop: bool) -> str | None:
        """With the buffer full: wait (off the loop, within the budget) for room.
        None when there is room now, else the reason to drop."""
        if on_loop or self._task is None or self._budget <= 0:
            return "buffer_full"
        deadline = time.monotonic() + self._budget
        self._space_waiters += 1
        try:
            while self._pending_locked() >= self._capacity:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._refusal_locked() is not None:
                    break
                self._space.wait(remaining)
        finally:
            self._space_waiters -= 1
        if self._pending_locked() < self._capacity:
            return self._refusal_locked()
        return self._refusal_locked() or "buffer_full"

    def _wake_sender(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        if threading.get_ident() == self._loop_thread:
            wake.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to wake
            loop.call_soon_threadsafe(wake.set)

    # --- the background sender (on the event loop) ---------------------------------

    async def _run(self) -> None:
        backoff = self._backoff_min
        while not self._stop_sender:
            try:
                if self._producer is None:
                    await self._idle(backoff, scan=False)
                    if self._stop_sender:
                        return
                    if await self._connect_once():
                        backoff = self._backoff_min
                    else:
                        backoff = min(backoff * 2, self._backoff_max)
                    continue
                self._check_stall()
                if self._state == "unavailable":
                    if not self._in_flight:
                        # Nothing left for this producer to retry: start afresh.
                        producer, self._producer = self._producer, None
                        await self._stop_producer(producer)
                        backoff = self._backoff_min
                    else:
                        await self._idle(self._tick, scan=False)
                    continue
                taken = self._take()
                if taken:
                    await self._send(taken)
                else:
                    await self._idle(self._tick if self._in_flight else None, scan=True)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the sender die: log, back off, go on
                log.exception("enginestream publisher: unexpected error in the sender")
                await asyncio.sleep(self._backoff_min)

    async def _idle(self, timeout: float | None, *, scan: bool) -> None:
        """Sleep until woken, or `timeout`, or (with `scan`) the next batch is due."""
        wake = self._wake
        assert wake is not None
        with self._lock:
            self._wake_pending = False
            if scan:
                due = self._due_in_locked(time.monotonic())
                if due is not None:
                    timeout = due if timeout is None else min(timeout, due)
        if timeout is not None and timeout <= 0:
            return
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout)

    def _due_in_locked(self, now: float) -> float | None:
        """Seconds until some buffered group should be sent (None: nothing buffered)."""
        if not self._groups:
            return None
        if self._flushers or self._closing:
            return 0.0
        due: float | None = None
        for group in self._groups.values():
            if self._full(group):
                return 0.0
            wait = group.since + self._linger - now
            due = wait if due is None else min(due, wait)
        return max(due or 0.0, 0.0)

    def _full(self, group: _Group) -> bool:
        return len(group.items) >= self._batch_events or group.size >= self._batch_bytes

    def _take(self) -> list[tuple[str, list[Item]]]:
        """The groups due now (all of them when flushing), out of the buffer."""
        taken: list[tuple[str, list[Item]]] = []
        with self._lock:
            now = time.monotonic()
            force = self._flushers > 0 or self._closing
            for event_type, group in list(self._groups.items()):
                if force or self._full(group) or now - group.since >= self._linger:
                    del self._groups[event_type]
                    taken.append((event_type, group.items))
                    self._buffered -= len(group.items)
                    self._sending += len(group.items)
        return taken

    async def _send(self, taken: list[tuple[str, list[Item]]]) -> None:
        producer = self._producer
        assert producer is not None
        parts = producer.client.cluster.partitions_for_topic(self.topic)
        if parts:
            self._partitions = len(parts)
        batches = [
            batch
            for event_type, items in taken
            for batch in pack(
                event_type, items, self._partitions, self._batch_events, self._batch_bytes
            )
        ]
        for i, batch in enumerate(batches):
            try:
                future = await asyncio.wait_for(
                    producer.send(
                        self.topic,
                        batch.value(),
                        key=batch.key,
                        partition=batch.partition,
                        headers=self._headers[batch.event_type],
                    ),
                    self._unavailable_after,
                )
            except asyncio.CancelledError:
                self._requeue(batches[i:])
                raise
            except (MessageSizeTooLargeError, RecordTooLargeError):
                self._settle(batch.count, "too_large", sending=True)
                continue
            except Exception as exc:
                # Not handed over (a timeout cancels the hand-over): keep them.
                self._requeue(batches[i:])
                self._set_unavailable(f"the producer did not take a message ({exc!r})")
                return
            self._register(future, batch.count)

    def _register(self, future: asyncio.Future[Any], count: int) -> None:
        ident = next(self._ids)
        self._in_flight[ident] = (time.monotonic(), count)
        with self._lock:
            self._sending -= count
            self._in_flight_events += count
        future.add_done_callback(functools.partial(self._delivered, ident))

    def _delivered(self, ident: int, future: asyncio.Future[Any]) -> None:
        entry = self._in_flight.pop(ident, None)
        if entry is None:  # already counted by close()
            return
        count = entry[1]
        error = None if future.cancelled() else future.exception()
        if future.cancelled() or error is not None:
            too_large = isinstance(error, (MessageSizeTooLargeError, RecordTooLargeError))
            self._settle(count, "too_large" if too_large else "broker_unavailable")
            log.warning("enginestream publisher: %d events not delivered (%r)", count, error)
            return
        self._last_ack = time.monotonic()
        self._settle(count, None)
        if self._state == "unavailable":
            self._set_connected()
            self._wake_sender()

    def _settle(self, count: int, drop: str | None, *, sending: bool = False) -> None:
        """`count` events leave the pipeline: published (drop None) or dropped."""
        with self._lock:
            if sending:
                self._sending -= count
            else:
                self._in_flight_events -= count
            if drop is None:
                self._published += count
                self._batches_sent += 1
            else:
                self._dropped[drop] += count
                self._send_errors += 1
            if self._space_waiters:
                self._space.notify_all()

    def _requeue(self, batches: list[Batch]) -> None:
        """Put events that never reached the producer back, first in line, due now."""
        by_type: dict[str, list[Item]] = {}
        for batch in batches:
            by_type.setdefault(batch.event_type, []).extend(batch.items)
        with self._lock:
            for event_type, items in by_type.items():
                group = self._groups.get(event_type)
                if group is None:
                    group = self._groups[event_type] = _Group(0.0)
                group.items[:0] = items
                group.size += sum(len(body) + 1 for _, body in items)
                group.since = 0.0
                self._sending -= len(items)
                self._buffered += len(items)

    def _check_stall(self) -> None:
        """Unavailable when messages wait for an acknowledgement and none came for
        `unavailable_after_ms` (counted from the later of the oldest hand-over and the
        last acknowledgement, so a backlog being worked off is not a stall)."""
        if self._state != "connected" or not self._in_flight:
            return
        oldest = next(iter(self._in_flight.values()))[0]  # handed over in order
        if time.monotonic() - max(oldest, self._last_ack) > self._unavailable_after:
            self._set_unavailable(f"no acknowledgement for {self._unavailable_after:.1f}s")

    # --- connection state ----------------------------------------------------------

    async def _connect_once(self) -> bool:
        """Start a fresh producer and learn the ingest topic's partitions (bounded by
        `connect_timeout_ms`); False, with the producer stopped, on any failure."""
        producer = AIOKafkaProducer(**self._producer_options)  # bad options raise here
        _space_metadata_retries(producer, self._producer_options["retry_backoff_ms"] / 1000)
        stage = "connect"
        try:
            await asyncio.wait_for(producer.start(), self._connect_timeout)
            stage = "topic"
            parts = await asyncio.wait_for(
                producer.partitions_for(self.topic), self._connect_timeout
            )
        except Exception as exc:
            await self._stop_producer(producer)
            self._failed_connects += 1
            what = (
                f"cannot reach Kafka at {self.settings.bootstrap_servers}"
                if stage == "connect"
                else f"topic {self.topic} is not available (create it: enginestream topics create)"
            )
            level = logging.WARNING if self._failed_connects == 1 else logging.DEBUG
            log.log(
                level, "enginestream publisher: %s (%r); events are dropped until it is", what, exc
            )
            return False
        except BaseException:
            await self._stop_producer(producer)
            raise
        self._producer = producer
        self._partitions = len(parts) or None
        self._failed_connects = 0
        self._set_connected()
        return True

    def _set_connected(self) -> None:
        with self._lock:
            previous = self._state
            if previous == "closed":
                return
            self._state = "connected"
            if previous == "unavailable":
                self._reconnects += 1
        if previous == "unavailable":
            log.warning("enginestream publisher: broker available again, publishing resumed")

    def _set_unavailable(self, why: str) -> None:
        with self._lock:
            previous = self._state
            if previous not in ("connecting", "connected"):
                return
            self._state = "unavailable"
            self._space.notify_all()
        # A failed first connection has just been logged as a warning already.
        level = logging.WARNING if previous == "connected" else logging.INFO
        log.log(level, "enginestream publisher: broker unavailable (%s); dropping new events", why)

    async def _stop_producer(self, producer: AIOKafkaProducer | None) -> None:
        if producer is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), 5.0)

    async def _stop_task(self) -> None:
        task, self._task = self._task, None
        self._stop_sender = True
        if task is None:
            return
        if self._wake is not None:
            self._wake.set()
        for _ in range(20):
            if task.done():
                break
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("enginestream publisher: sender failed", exc_info=task.exception())
