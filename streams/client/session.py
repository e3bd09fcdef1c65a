"""One device session's usage telemetry, recorded locally and published as it happens.

`SessionRecorder` is the on-device side of the `session_event` stream (the Python
counterpart of an SDK's session manager): it holds at most one active session,
aggregates it locally (inferences and latency per model, errors) and publishes
each step as a `session_event` through any `EventPublisher` (a `Publisher`, a
`SyncPublisher`, or a sink from `streams.client.sinks`). Publishing is best effort
like everything in the SDK; the local summary is exact regardless.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from streams.client import events
from streams.client.events import SESSION_EVENT
from streams.client.sinks import EventPublisher
from streams.version import installed_version

# What a session reports as its SDK: the installed distribution's version.
SDK_VERSION = installed_version()


@dataclass(frozen=True)
class ModelUsage:
    """Calls of one model version in a session."""

    model_id: str
    version: str
    calls: int = 0
    total_latency_ms: float = 0.0
    errors: int = 0

    @property
    def avg_latency_ms(self) -> float:
        """Mean latency of the calls (0 without calls)."""
        return self.total_latency_ms / self.calls if self.calls else 0.0


@dataclass(frozen=True)
class SessionSummary:
    """A session's aggregates, as recorded locally."""

    session_id: str
    device_id: str
    platform: str
    sdk_version: str
    started_at: float
    ended_at: float | None
    total_inferences: int
    total_latency_ms: float
    error_count: int
    models_used: tuple[str, ...]
    by_model: Mapping[str, ModelUsage] = field(default_factory=dict)  # "model@version"
    errors: Mapping[str, int] = field(default_factory=dict)  # message -> occurrences

    @property
    def avg_latency_ms(self) -> float:
        """Mean latency over all inferences (0 without inferences)."""
        return self.total_latency_ms / self.total_inferences if self.total_inferences else 0.0

    @property
    def active(self) -> bool:
        """Whether the session has not ended."""
        return self.ended_at is None


class _Session:
    def __init__(self, session_id: str, started_at: float) -> None:
        self.session_id = session_id
        self.started_at = started_at
        self.ended_at: float | None = None
        self.total_inferences = 0
        self.total_latency_ms = 0.0
        self.error_count = 0
        self.models_used: list[str] = []
        self.by_model: dict[str, ModelUsage] = {}
        self.errors: dict[str, int] = {}


class SessionRecorder:
    """Tracks one device session at a time and publishes its `session_event`s.

    Thread-safe. Recording without an active session does nothing (as on a device
    where telemetry has not started); `start()` while a session is active ends it
    first. `clock` gives epoch seconds (default `time.time`)."""

    def __init__(
        self,
        sink: EventPublisher,
        device_id: str,
        *,
        platform: str,
        sdk_version: str = SDK_VERSION,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sink = sink
        self.device_id = device_id
        self.platform = platform
        self.sdk_version = sdk_version
        self._clock = clock
        self._lock = threading.Lock()
        self._session: _Session | None = None

    @property
    def session_id(self) -> str | None:
        """The active session's id (None when no session is active)."""
        session = self._session
        return session.session_id if session is not None and session.ended_at is None else None

    @property
    def active(self) -> bool:
        """Whether a session is active."""
        return self.session_id is not None

    def start(self, hardware: Mapping[str, Any] | None = None) -> str:
        """Start a new session (ending an active one); answers its id."""
        with self._lock:
            self._end_locked()
            now = self._clock()
            session = _Session(uuid.uuid4().hex, now)
            self._sink.publish(
                SESSION_EVENT,
                events.session_started(
                    session.session_id,
                    self.device_id,
                    self.platform,
                    self.sdk_version,
                    hardware=hardware,
                    timestamp=now,
                ),
            )
            self._session = session
            return session.session_id

    def record_inference(self, model_id: str, version: str, latency_ms: float) -> None:
        """One inference of `model_id`@`version` that took `latency_ms`. The event is
        published (and checked) first: an event the SDK refuses changes nothing."""
        with self._lock:
            session = self._active_locked()
            if session is None:
                return
            self._sink.publish(
                SESSION_EVENT,
                events.inference_recorded(
                    session.session_id, model_id, version, latency_ms, timestamp=self._clock()
                ),
            )
            session.total_inferences += 1
            session.total_latency_ms += latency_ms
            if model_id not in session.models_used:
                session.models_used.append(model_id)
            key = f"{model_id}@{version}"
            usage = session.by_model.get(key, ModelUsage(model_id, version))
            session.by_model[key] = replace(
                usage, calls=usage.calls + 1, total_latency_ms=usage.total_latency_ms + latency_ms
            )

    def record_error(self, message: str, model_id: str | None = None) -> None:
        """An error, optionally of one model (counted against that model's usage)."""
        with self._lock:
            session = self._active_locked()
            if session is None:
                return
            self._sink.publish(
                SESSION_EVENT,
                events.error_recorded(
                    session.session_id, message, model_id=model_id, timestamp=self._clock()
                ),
            )
            session.error_count += 1
            session.errors[message] = session.errors.get(message, 0) + 1
            if model_id is not None:
                for key, usage in session.by_model.items():
                    if usage.model_id == model_id:
                        session.by_model[key] = replace(usage, errors=usage.errors + 1)
                        break

    def end(self) -> SessionSummary | None:
        """End the active session; answers its summary (None without one)."""
        with self._lock:
            return self._end_locked()

    def summary(self) -> SessionSummary | None:
        """The current (or last ended) session's summary, without ending it."""
        with self._lock:
            session = self._session
            return self._summary(session) if session is not None else None

    def _active_locked(self) -> _Session | None:
        session = self._session
        return session if session is not None and session.ended_at is None else None

    def _end_locked(self) -> SessionSummary | None:
        session = self._active_locked()
        if session is None:
            return None
        session.ended_at = self._clock()
        self._sink.publish(
            SESSION_EVENT, events.session_ended(session.session_id, timestamp=session.ended_at)
        )
        return self._summary(session)

    def _summary(self, session: _Session) -> SessionSummary:
        return SessionSummary(
            session_id=session.session_id,
            device_id=self.device_id,
            platform=self.platform,
            sdk_version=self.sdk_version,
            started_at=session.started_at,
            ended_at=session.ended_at,
            total_inferences=session.total_inferences,
            total_latency_ms=session.total_latency_ms,
            error_count=session.error_count,
            models_used=tuple(session.models_used),
            by_model=dict(session.by_model),
            errors=dict(session.errors),
        )
