"""Event-time tumbling windows per engine: assignment, watermark, finals and revisions.

Pure logic, no Faust and no I/O. One `PartitionWindows` holds the windows of one
source partition of one stream (executions, or served requests), because Kafka
orders events only within a partition: everything here is a function of the
events of that partition in offset order, so a replay gives the same results.

Vocabulary (Kafka Streams'): a window is `[start, start + size)` in event time. The
partition's *watermark* is the highest event time seen minus the allowed lateness;
a window is *final* once the watermark reaches its end plus the grace period, and
its final record (revision 0) is emitted then, once. An event for a window that is
already final is *late*: it is still added while the window's state is retained,
and the window is emitted again as the next revision. After the retention, the
event is *too late* and goes to the dead letters. A partition without events for
`idle_timeout_s` of wall-clock time lets its watermark follow the wall clock, so a
quiet engine's windows still close; a partition that has never had an event does
not (it has no windows to close), so history replayed into a fresh worker is
windowed by its own event time, not refused as late.

Event time a client cannot break: an event whose time is more than
`max_future_skew_s` past the wall clock is *from the future* (epoch milliseconds
sent as seconds, a device with a wrong clock); it is refused and never moves the
watermark, which would otherwise make every later event of its partition too late.

Idempotence: every window remembers the position (offset, index in message) of the
last event it took, and skips events at or before it; so re-delivered events after
a crash are not counted twice, whatever part of the state reached the changelog.
"""

from __future__ import annotations

import functools
import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.domain.aggregates import ExecutionStats, RequestStats

EXECUTIONS = "engine"  # window kind: per engine, from engine_execution
REQUESTS = "route"  # window kind: per (engine, model, route), from RequestServed

Position = tuple[int, int]  # (offset of the message, index of the event in it)
NEVER: Position = (-1, -1)


@dataclass(frozen=True)
class WindowConfig:
    """Window sizes and the time rules; all in seconds."""

    sizes: tuple[int, ...] = (60,)
    allowed_lateness_s: float = 5.0
    grace_s: float = 0.0
    retention_s: float = 3600.0
    idle_timeout_s: float = 30.0
    max_future_skew_s: float = 300.0

    def __post_init__(self) -> None:
        if not self.sizes or any(s <= 0 for s in self.sizes):
            raise ValueError(f"window sizes must be positive seconds, got {self.sizes}")
        if min(self.allowed_lateness_s, self.grace_s, self.retention_s) < 0:
            raise ValueError("lateness, grace and retention cannot be negative")
        if self.max_future_skew_s < 0:
            raise ValueError("the future skew cannot be negative")
        if self.idle_timeout_s <= 0:
            raise ValueError("the idle timeout must be positive")


def window_start(timestamp: float, size: int) -> int:
    """Start of the size-`size` window holding `timestamp`: windows are [start, start+size)."""
    return math.floor(timestamp / size) * size


_floor = math.floor  # PartitionWindows.apply computes window_start inline (hot path)


@functools.lru_cache(maxsize=4096)  # window bounds repeat across engines and revisions
def iso(epoch_s: float) -> str:
    """ISO 8601 in UTC with a Z, e.g. 2022-12-02T16:53:20Z."""
    moment = datetime.fromtimestamp(epoch_s, tz=UTC)
    text = moment.isoformat(timespec="milliseconds" if epoch_s % 1 else "seconds")
    return text.replace("+00:00", "Z")


WindowKey = tuple[str, str, str, str, int, int]  # kind, engine, model, route, size, start


def encode_key(key: WindowKey) -> str:
    """The table key of a window (JSON text, so any engine id is safe)."""
    return orjson.dumps(key).decode()


def decode_key(text: str) -> WindowKey:
    """Inverse of encode_key."""
    kind, engine, model, route, size, start = orjson.loads(text)
    return (kind, engine, model, route, int(size), int(start))


@dataclass(slots=True)
class Window:
    """One window's aggregate and what has been emitted of it."""

    key: WindowKey
    stats: ExecutionStats | RequestStats
    revision: int = -1  # last emitted revision; -1: nothing emitted yet
    late_events: int = 0
    applied: Position = NEVER

    @property
    def end(self) -> int:
        """Exclusive end of the window."""
        return self.key[5] + self.key[4]

    def to_state(self) -> dict[str, Any]:
        """JSON-ready state for the changelog."""
        return {
            "s": self.stats.to_state(),
            "r": self.revision,
            "l": self.late_events,
            "a": list(self.applied),
        }

    @classmethod
    def from_state(cls, key: WindowKey, state: dict[str, Any]) -> Window:
        """Inverse of to_state."""
        stats_cls = ExecutionStats if key[0] == EXECUTIONS else RequestStats
        offset, index = state["a"]
        return cls(
            key,
            stats_cls.from_state(state["s"]),
            state["r"],
            state["l"],
            (offset, index),
        )

    def record(self) -> dict[str, Any]:
        """The window as a `window_stats` document (schemas/v1/window_stats.json).

        A function of the events alone (no watermark, no wall clock), so a replay
        emits byte-identical records."""
        kind, engine, model, route, size, start = self.key
        result = self.stats.result()
        record: dict[str, Any] = {
            "engine_id": engine,
            "kind": kind,
            "window_start": start,
            "window_end": start + size,
            "window_start_iso": iso(start),
            "window_end_iso": iso(start + size),
            "window_size_s": size,
            "revision": self.revision,
            "late_events": self.late_events,
        }
        if kind == REQUESTS:
            record["model"] = model
            record["route"] = route
            ok = result["status_2xx"]
            record["success_count"] = ok
            record["success_rate"] = ok / result["count"] if result["count"] else 0.0
        record.update(result)
        return record


@dataclass(slots=True)
class Clock:
    """Event time of one partition."""

    max_event_time: float = -math.inf
    watermark: float = -math.inf
    last_event_wall: float = 0.0

    def to_state(self) -> dict[str, Any]:
        """JSON-ready state (infinities as None)."""
        finite = math.isfinite
        return {
            "m": self.max_event_time if finite(self.max_event_time) else None,
            "w": self.watermark if finite(self.watermark) else None,
            "t": self.last_event_wall,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Clock:
        """Inverse of to_state."""
        m, w = state["m"], state["w"]
        return cls(
            -math.inf if m is None else m,
            -math.inf if w is None else w,
            state["t"],
        )


@dataclass(slots=True)
class Outcome:
    """What applying events produced: `window_stats` records to emit (rendered when
    they were decided), events refused as too late or as from the future, and (filled
    by the caller) events whose processing raised."""

    emitted: list[dict[str, Any]] = field(default_factory=list)
    too_late: list[tuple[Position, dict[str, Any]]] = field(default_factory=list)
    future: list[tuple[Position, dict[str, Any]]] = field(default_factory=list)
    failed: list[tuple[Position, Any, Exception]] = field(default_factory=list)


def emission_id(record: dict[str, Any]) -> tuple[str, str, str, str, int, int, int]:
    """What makes an emitted record unique: its window and revision (a record without
    `kind` is an engine window, as the schema says)."""
    return (
        record.get("kind", EXECUTIONS),
        record["engine_id"],
        record.get("model", ""),
        record.get("route", ""),
        record["window_size_s"],
        record["window_start"],
        record["revision"],
    )


class PartitionWindows:
    """The windows of one source partition; see the module docstring."""

    def __init__(self, kind: str, config: WindowConfig, clock: Clock | None = None) -> None:
        self.kind = kind
        self.config = config
        self.clock = clock or Clock()
        self.windows: dict[WindowKey, Window] = {}
        self.dirty: set[WindowKey] = set()
        self.deleted: set[WindowKey] = set()
        self._closing: list[tuple[float, WindowKey]] = []  # (final at, key)
        self._expiring: list[tuple[float, WindowKey]] = []  # (state dropped at, key)
        self._smallest = min(config.sizes)
        self._stats_cls = ExecutionStats if kind == EXECUTIONS else RequestStats

    def restore(self, windows: dict[WindowKey, Window]) -> None:
        """Load windows recovered from the changelog (after the clock). A window past
        its retention is not loaded but marked deleted: its deletion was written after
        the clock, and a crash came in between."""
        cfg = self.config
        for key, window in windows.items():
            if window.end + cfg.grace_s + cfg.retention_s <= self.clock.watermark:
                self.deleted.add(key)
                continue
            self.windows[key] = window
            self._schedule(window)

    def _schedule(self, window: Window) -> None:
        end = window.end
        if window.revision < 0:
            heapq.heappush(self._closing, (end + self.config.grace_s, window.key))
        expire_at = end + self.config.grace_s + self.config.retention_s
        heapq.heappush(self._expiring, (expire_at, window.key))

    def apply(
        self, position: Position, event: dict[str, Any], now_wall: float, out: Outcome
    ) -> None:
        """Add one event (read at `position`), emitting what it makes final or revises.

        A bad event raises (ValueError, KeyError, TypeError) and changes nothing."""
        timestamp = float(event["timestamp"])
        cfg = self.config
        if not timestamp <= now_wall + cfg.max_future_skew_s:  # NaN included
            out.future.append((position, event))
            return
        clock = self.clock
        clock.last_event_wall = now_wall
        grace = cfg.grace_s
        watermark = clock.watermark
        # An event is taken only while every window it belongs to is retained.
        smallest = self._smallest
        smallest_end = _floor(timestamp / smallest) * smallest + smallest
        if smallest_end + grace + cfg.retention_s <= watermark:
            out.too_late.append((position, event))
            return
        kind = self.kind
        engine = event["engine_id"]
        if kind == EXECUTIONS:
            model = route = ""
        else:
            model, route = event["model"], event["route"]
        if type(engine) is not str or type(model) is not str or type(route) is not str:
            raise TypeError("engine_id, model and route must be strings")
        windows = self.windows
        for size in cfg.sizes:
            start = _floor(timestamp / size) * size
            key = (kind, engine, model, route, size, start)
            window = windows.get(key)
            if window is None:
                window = Window(key, self._stats_cls())
                # Counted before it is kept: a bad event raises here, the first time,
                # and leaves no empty window behind.
                window.stats.add(event)
                windows[key] = window
                self.deleted.discard(key)
                self._schedule(window)
            elif position <= window.applied:
                continue  # delivered again after a restart: already counted
            else:
                window.stats.add(event)
            window.applied = position
            self.dirty.add(key)
            if start + size + grace <= watermark:
                window.late_events += 1
                window.revision += 1
                out.emitted.append(window.record())
        if timestamp > clock.max_event_time:
            clock.max_event_time = timestamp
            self._advance(timestamp - cfg.allowed_lateness_s, out)

    def advance_idle(self, now_wall: float, out: Outcome) -> None:
        """Let an idle partition's watermark follow the wall clock (only one that has
        had events: see the module docstring)."""
        if not self.has_events:
            return
        if now_wall - self.clock.last_event_wall >= self.config.idle_timeout_s:
            self._advance(now_wall - self.config.allowed_lateness_s, out)

    @property
    def has_events(self) -> bool:
        """Whether this partition has ever applied an event."""
        return self.clock.max_event_time != -math.inf

    def _advance(self, watermark: float, out: Outcome) -> None:
        clock = self.clock
        if watermark <= clock.watermark:
            return
        clock.watermark = watermark
        closing = self._closing
        while closing and closing[0][0] <= watermark:
            _, key = heapq.heappop(closing)
            window = self.windows.get(key)
            if window is not None and window.revision < 0:
                window.revision = 0
                self.dirty.add(key)
                out.emitted.append(window.record())
        expiring = self._expiring
        while expiring and expiring[0][0] <= watermark:
            _, key = heapq.heappop(expiring)
            window = self.windows.get(key)
            if window is not None and window.end + self.config.grace_s + (
                self.config.retention_s
            ) <= watermark:
                del self.windows[key]
                self.dirty.discard(key)
                self.deleted.add(key)

    def take_changes(self) -> tuple[list[Window], list[WindowKey]]:
        """Windows changed and windows dropped since the last call (for the changelog)."""
        changed = [self.windows[k] for k in self.dirty if k in self.windows]
        deleted = list(self.deleted)
        self.dirty.clear()
        self.deleted.clear()
        return changed, deleted


def latest_revisions(
    records: Iterable[dict[str, Any]],
    start: float = float("-inf"),
    end: float = float("inf"),
    size: int | None = None,
) -> list[dict[str, Any]]:
    """The latest revision of every window starting in [start, end) (of `size` when
    given), ordered by window start, engine, kind, model, route."""
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for record in records:
        if not start <= record["window_start"] < end:
            continue
        if size is not None and record["window_size_s"] != size:
            continue
        ident = emission_id(record)
        window = ident[:-1]
        held = latest.get(window)
        if held is None or held["revision"] < record["revision"]:
            latest[window] = record
    return sorted(
        latest.values(),
        key=lambda r: (r["window_start"], r["engine_id"], r["kind"], r.get("model", ""),
                       r.get("route", ""), r["window_size_s"]),
    )
