"""The publisher's bounded buffer, and the account of every `publish()` call.

`Buffer` holds the events accepted and not yet handed to the producer, grouped by
event type (oldest first), and counts where every publish attempt ended: published
(acknowledged), dropped (by reason) or still pending (buffered, being sent, in
flight), so that `attempts == published + dropped_total + pending` at every
snapshot. It also holds the publisher's connection state, which decides whether a
new event is refused. Publishing threads and the sender on the event loop share it:
every field is guarded by one lock, and nothing here waits on the network.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from streams.client.batching import Batch, Item, pack

DROP_REASONS: tuple[str, ...] = (
    "buffer_full",
    "broker_unavailable",
    "invalid",
    "too_large",
    "closed",
)

State = Literal["new", "connecting", "connected", "unavailable", "closed"]


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


class _Group:
    """Buffered events of one type, oldest first."""

    __slots__ = ("items", "since", "size")

    def __init__(self, since: float) -> None:
        self.items: list[Item] = []
        self.size = 1  # as a JSON array: "[" and "]", and a comma before all but the first
        self.since = since


class Buffer:
    """Accepted events by type, bounded to `capacity` pending events; the counters
    and the connection state. Thread-safe."""

    def __init__(self, capacity: int, batch_events: int, batch_bytes: int, linger_s: float):
        self._capacity = capacity
        self._batch_events = batch_events
        self._batch_bytes = batch_bytes
        self._linger = linger_s
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._space_waiters = 0
        self._groups: dict[str, _Group] = {}
        self._buffered = 0  # in _groups
        self._sending = 0  # taken by the sender, not yet handed to the producer
        self._in_flight = 0  # handed to the producer, not yet acknowledged
        self._attempts = 0
        self._published = 0
        self._batches_sent = 0
        self._send_errors = 0
        self._reconnects = 0
        self._dropped = dict.fromkeys(DROP_REASONS, 0)
        self._state: State = "new"
        self._closing = False
        self._flushers = 0
        self._wake_pending = False  # the sender has been asked to look at the buffer

    @property
    def state(self) -> State:
        """new, connecting, connected, unavailable (no-op mode) or closed."""
        return self._state

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
                in_flight=self._in_flight,
            )

    def pending(self) -> int:
        """Events accepted and not yet acknowledged or dropped."""
        with self._lock:
            return self._pending_locked()

    # --- publishing threads ----------------------------------------------------------

    def count_drop(self, reason: str) -> None:
        """A publish attempt refused before it reached the buffer."""
        with self._lock:
            self._attempts += 1
            self._dropped[reason] += 1

    def offer(
        self, event_type: str, key: bytes | None, body: bytes, wait_s: float
    ) -> tuple[bool, bool]:
        """Buffer one encoded event. Answers whether it was accepted (else it is
        dropped and counted), and whether to wake the sender (the buffer was empty,
        or the event filled its batch). With the buffer full, waits at most `wait_s`
        for room (0: not at all), then drops the event as `buffer_full`."""
        with self._lock:
            self._attempts += 1
            reason = self._refusal_locked()
            if reason is None and self._pending_locked() >= self._capacity:
                reason = self._wait_for_room_locked(wait_s)
            if reason is not None:
                self._dropped[reason] += 1
                return False, False
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
        return True, wake

    def _refusal_locked(self) -> str | None:
        if self._closing or self._state == "closed":
            return "closed"
        if self._state == "unavailable":
            return "broker_unavailable"
        return None

    def _pending_locked(self) -> int:
        return self._buffered + self._sending + self._in_flight

    def _wait_for_room_locked(self, wait_s: float) -> str | None:
        """With the buffer full: wait (within `wait_s`) for room. None when there is
        room now, else the reason to drop."""
        if wait_s <= 0:
            return "buffer_full"
        deadline = time.monotonic() + wait_s
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

    # --- the sender ------------------------------------------------------------------

    def due_in(self, *, scan: bool) -> float | None:
        """The sender is about to sleep (the next `offer` that fills a batch or finds
        the buffer empty wakes it). With `scan`: seconds until some group should be
        sent; None when nothing is buffered, or without `scan`."""
        with self._lock:
            self._wake_pending = False
            if not scan or not self._groups:
                return None
            if self._flushers or self._closing:
                return 0.0
            now = time.monotonic()
            due: float | None = None
            for group in self._groups.values():
                if self._full(group):
                    return 0.0
                wait = group.since + self._linger - now
                due = wait if due is None else min(due, wait)
            return max(due or 0.0, 0.0)

    def _full(self, group: _Group) -> bool:
        return len(group.items) >= self._batch_events or group.size >= self._batch_bytes

    def take(self, partitions: int | None) -> list[Batch]:
        """The groups due now (all of them when flushing), out of the buffer, as
        messages for a topic of `partitions` partitions (None: unknown)."""
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
        return [
            batch
            for event_type, items in taken
            for batch in pack(event_type, items, partitions, self._batch_events, self._batch_bytes)
        ]

    def requeue(self, batches: Sequence[Batch]) -> None:
        """Put taken events that never reached the producer back, first in line, due
        now."""
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

    def handed_over(self, count: int) -> None:
        """`count` taken events are with the producer now, waiting for the broker."""
        with self._lock:
            self._sending -= count
            self._in_flight += count

    def settle(self, count: int, drop: str | None, *, sending: bool = False) -> None:
        """`count` events (of one message) leave the pipeline: published (`drop` None)
        or dropped for `drop`; from the producer, or with `sending` before it."""
        with self._lock:
            if sending:
                self._sending -= count
            else:
                self._in_flight -= count
            if drop is None:
                self._published += count
                self._batches_sent += 1
            else:
                self._dropped[drop] += count
                self._send_errors += 1
            if self._space_waiters:
                self._space.notify_all()

    # --- connection state, flush and close -------------------------------------------

    def set_connecting(self) -> None:
        with self._lock:
            self._state = "connecting"

    def set_connected(self) -> bool:
        """Connected (unless closed); True when that ends an outage (a reconnect)."""
        with self._lock:
            previous = self._state
            if previous == "closed":
                return False
            self._state = "connected"
            if previous == "unavailable":
                self._reconnects += 1
                return True
            return False

    def set_unavailable(self) -> State | None:
        """Unavailable, from connecting or connected: the state it was in, or None
        when it was in neither (nothing changes)."""
        with self._lock:
            previous = self._state
            if previous not in ("connecting", "connected"):
                return None
            self._state = "unavailable"
            self._space.notify_all()
            return previous

    @contextlib.contextmanager
    def flushing(self) -> Iterator[None]:
        """While inside: every buffered group is due at once."""
        with self._lock:
            self._flushers += 1
        try:
            yield
        finally:
            with self._lock:
                self._flushers -= 1

    def close(self) -> None:
        """Refuse new events (as `closed`); every buffered group is due at once."""
        with self._lock:
            self._closing = True
            self._space.notify_all()

    def drop_remaining(self, reason: str, messages: int, in_flight: int) -> int:
        """Drop, for `reason`, every event not yet with the producer and `in_flight`
        events of `messages` messages it still had; answer how many in all."""
        with self._lock:
            left = self._buffered + self._sending
            self._groups.clear()
            self._buffered = self._sending = 0
            self._in_flight -= in_flight
            self._dropped[reason] += left + in_flight
            self._send_errors += messages
        return left + in_flight

    def set_closed(self) -> None:
        with self._lock:
            self._state = "closed"
