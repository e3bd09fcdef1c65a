"""Device sessions: usage telemetry aggregated per session from `session_event` documents.

Every `session_event` (schemas/v1/session_event.json) of one session lands in one
partition of ``engine.sessions`` (keyed by ``session_id``); :meth:`Session.apply` folds
them, in partition order, into the session's record — the seed's ``SessionMetrics`` —
and :meth:`Session.export` renders the seed's ``TelemetryExport`` (version "2.0").

Decisions where the seed and the contract are silent:

* Times come from the events (epoch seconds), never from the clock:
  ``ms = int(round(timestamp * 1000))``. ``last_called``, ``first_seen``, ``last_seen``
  and ``last_event_ms`` are the min/max over the events, so they do not depend on the
  order in which equal-partition events carry their clocks.
* Latencies are floats (the schema's ``latency_ms`` is a number, e.g. 48.3); averages
  are ``total / count`` as floats, not the seed's integer division.
* A session whose ``session_started`` was lost is created by its first event with
  ``device_id``/``platform``/``sdk_version`` ``"unknown"``, no hardware, and
  ``started_at_ms`` = that event's time. A ``session_started`` arriving later (while the
  session is open) fills those fields in and sets ``started_at_ms`` to its own time.
* Once a session has ended (``session_ended`` or idle expiry) it is final: later events
  change nothing and are only counted in ``events_after_end``.
* :meth:`Session.idle_expire` ends the session at ``last_event_ms + timeout_ms``, so the
  result does not depend on when the check runs.
* An ``error_recorded`` with a ``model_id`` increments ``error_count`` (and raises
  ``last_called``, like the seed's ``record_error``) of one ``by_model`` entry with that
  ``model_id``, any version: the one called most recently (ties: first used). With no
  such entry (the model never ran in this session) only the session counts the error.
  An error summary keeps the ``model_id`` of its first occurrence (as the seed does).
* In the export, ``by_model`` is sorted by ``"model@version"`` and the errors keep their
  first-seen order; hardware fields missing from the snapshot get neutral defaults
  (``False``, ``"none"`` for GPU/NPU types, ``0``, ``"unknown"``); no snapshot at all
  gives ``"hardware": null``. ``session.platform`` is the platform of
  ``session_started`` (the seed derived it from the hardware probe).
* ``to_json``/``from_json`` carry every field (plus ``events_after_end``); ``from_json``
  is strict: missing or unknown keys and ill-typed values raise ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

from streams.domain import fields

__all__ = [
    "ERROR_RULES",
    "EXPORT_VERSION",
    "ErrorSummary",
    "ModelCalls",
    "Session",
    "categorize",
    "iso8601_ms",
]

EXPORT_VERSION = "2.0"
UNKNOWN = "unknown"

ERROR_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model_loading", ("load", "bundle", "model not found")),
    ("preprocessing", ("preprocess", "input", "format")),
    ("inference", ("inference", "execute", "onnx")),
    ("postprocessing", ("postprocess", "output")),
    ("network", ("network", "connection", "registry", "http")),
    ("hardware", ("gpu", "metal", "cuda", "npu")),
    ("memory", ("memory", "oom")),
)
"""Error categories and their keywords, in precedence order (the seed's
``ErrorCategory::from_error``); a message matching none is ``"unknown"``."""

EndedBy = Literal["event", "idle_timeout"]
EVENTS: tuple[str, ...] = (
    "session_started",
    "inference_recorded",
    "error_recorded",
    "session_ended",
)

HARDWARE_DEFAULTS: dict[str, Any] = {
    "has_gpu": False,
    "gpu_type": "none",
    "has_npu": False,
    "npu_type": "none",
    "memory_total_mb": 0,
    "battery_level": 0,
    "thermal_state": UNKNOWN,
    "platform": UNKNOWN,
}
"""Export values for hardware fields the snapshot does not carry."""


def categorize(message: str) -> str:
    """Category of an error message: first rule of :data:`ERROR_RULES` with a keyword
    contained in the message (case-insensitive), else ``"unknown"``."""
    lowered = message.lower()
    for category, keywords in ERROR_RULES:
        if any(keyword in lowered for keyword in keywords):
            return category
    return UNKNOWN


def iso8601_ms(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC with milliseconds and ``Z``,
    e.g. ``2022-12-02T16:53:20.500Z``."""
    secs, millis = divmod(ms, 1000)
    moment = datetime.fromtimestamp(secs, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{millis:03d}Z"


MAX_EPOCH_MS = 2**63 - 1
"""Largest time a record can hold (a signed 64-bit JSON integer)."""


def to_ms(timestamp: float) -> int:
    """Epoch seconds (an event's ``timestamp``) as integer epoch milliseconds;
    ``ValueError`` when they do not fit 64 bits (the record could not be stored)."""
    ms = timestamp * 1000
    if ms > MAX_EPOCH_MS:  # also inf
        raise ValueError(f"timestamp {timestamp!r} is out of range (epoch ms must fit 64 bits)")
    return round(ms)


# ---- field checks shared by apply() and from_json() ---------------------------------


@dataclass
class ModelCalls:
    """Calls of one model version in a session (the seed's ``ApiCallMetric``)."""

    model_id: str
    version: str
    call_count: int = 0
    total_latency_ms: float = 0.0
    avg_latency_ms: float = 0.0
    error_count: int = 0
    last_called: int = 0

    @property
    def key(self) -> str:
        """``"model_id@version"``, the key in :attr:`Session.by_model`."""
        return f"{self.model_id}@{self.version}"

    def record_call(self, latency_ms: float, at_ms: int) -> None:
        """Count one inference of ``latency_ms`` at ``at_ms``."""
        self.call_count += 1
        self.total_latency_ms += latency_ms
        self.avg_latency_ms = self.total_latency_ms / self.call_count
        self.last_called = max(self.last_called, at_ms)

    def record_error(self, at_ms: int) -> None:
        """Count one error of this model at ``at_ms``."""
        self.error_count += 1
        self.last_called = max(self.last_called, at_ms)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON object (also the export's ``by_model`` item)."""
        return {
            "model_id": self.model_id,
            "version": self.version,
            "call_count": self.call_count,
            "total_latency_ms": self.total_latency_ms,
            "avg_latency_ms": self.avg_latency_ms,
            "error_count": self.error_count,
            "last_called": self.last_called,
        }

    @classmethod
    def from_json(cls, record: object) -> ModelCalls:
        """Inverse of :meth:`to_json`; ``ValueError`` on a bad record."""
        doc = fields.mapping(record, "model calls record")
        what = "model calls"
        return cls(
            model_id=fields.string(doc, "model_id", what),
            version=fields.string(doc, "version", what),
            call_count=fields.count(doc, "call_count", what),
            total_latency_ms=fields.non_negative(doc, "total_latency_ms", what),
            avg_latency_ms=fields.non_negative(doc, "avg_latency_ms", what),
            error_count=fields.count(doc, "error_count", what),
            last_called=fields.count(doc, "last_called", what),
        )


@dataclass
class ErrorSummary:
    """One distinct error of a session: (category, message), with its count and times."""

    category: str
    message: str
    count: int
    first_seen: int
    last_seen: int
    model_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON object (also the export's ``errors`` item)."""
        return {
            "category": self.category,
            "message": self.message,
            "count": self.count,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "model_id": self.model_id,
        }

    @classmethod
    def from_json(cls, record: object) -> ErrorSummary:
        """Inverse of :meth:`to_json`; ``ValueError`` on a bad record."""
        doc = fields.mapping(record, "error summary record")
        what = "error summary"
        category = fields.string(doc, "category", what)
        if category not in {name for name, _ in ERROR_RULES} | {UNKNOWN}:
            raise ValueError(f"error summary category {category!r} is not a known category")
        return cls(
            category=category,
            message=fields.string(doc, "message", what),
            count=fields.count(doc, "count", what),
            first_seen=fields.count(doc, "first_seen", what),
            last_seen=fields.count(doc, "last_seen", what),
            model_id=fields.optional_string(doc, "model_id", what),
        )


_SESSION_KEYS: tuple[str, ...] = (
    "session_id",
    "device_id",
    "platform",
    "sdk_version",
    "started_at_ms",
    "ended_at_ms",
    "ended_by",
    "last_event_ms",
    "total_inferences",
    "total_latency_ms",
    "avg_latency_ms",
    "models_used",
    "error_count",
    "by_model",
    "errors",
    "hardware",
    "events_after_end",
)


@dataclass
class Session:
    """Aggregated telemetry of one device session (the seed's ``SessionMetrics``).

    Build it with :meth:`from_event` from the first event seen for the session, then
    feed it every later event with :meth:`apply`. Times are epoch milliseconds.
    """

    session_id: str
    device_id: str = UNKNOWN
    platform: str = UNKNOWN
    sdk_version: str = UNKNOWN
    started_at_ms: int = 0
    ended_at_ms: int | None = None
    ended_by: EndedBy | None = None
    last_event_ms: int = 0
    total_inferences: int = 0
    total_latency_ms: float = 0.0
    avg_latency_ms: float = 0.0
    models_used: list[str] = field(default_factory=list)
    error_count: int = 0
    by_model: dict[str, ModelCalls] = field(default_factory=dict)
    errors: list[ErrorSummary] = field(default_factory=list)
    hardware: dict[str, Any] | None = None
    events_after_end: int = 0

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Session:
        """A new session record from the first event seen for it (whatever its kind),
        with that event applied."""
        event = fields.mapping(event, "session event")
        at_ms = to_ms(fields.non_negative(event, "timestamp", "session event"))
        session = cls(
            session_id=fields.string(event, "session_id", "session event"),
            started_at_ms=at_ms,
            last_event_ms=at_ms,
        )
        session.apply(event)
        return session

    @property
    def is_active(self) -> bool:
        """True until the session ended (by event or idle timeout)."""
        return self.ended_at_ms is None

    def apply(self, event: Mapping[str, Any]) -> None:
        """Fold one ``session_event`` of this session into the record.

        Raises ``ValueError`` (and changes nothing) for an event of another session, an
        unknown event kind or a missing/ill-typed field. Events after the end are only
        counted in ``events_after_end``.
        """
        event = fields.mapping(event, "session event")
        what = "session event"
        kind = fields.required(event, "event", what)
        if kind not in EVENTS:
            raise ValueError(f"session event must be one of {', '.join(EVENTS)}, got {kind!r}")
        session_id = fields.string(event, "session_id", what)
        if session_id != self.session_id:
            raise ValueError(f"event for session {session_id!r} applied to {self.session_id!r}")
        at_ms = to_ms(fields.non_negative(event, "timestamp", what))
        if kind == "session_started":
            device_id = fields.string(event, "device_id", what)
            platform = fields.string(event, "platform", what)
            sdk_version = fields.string(event, "sdk_version", what)
            hardware = event.get("hardware")
            if hardware is not None:
                hardware = dict(fields.mapping(hardware, "session hardware"))
            if self._accept(at_ms):
                self.device_id = device_id
                self.platform = platform
                self.sdk_version = sdk_version
                self.hardware = hardware
                self.started_at_ms = at_ms
        elif kind == "inference_recorded":
            model_id = fields.string(event, "model_id", what)
            version = fields.string(event, "version", what)
            latency_ms = fields.non_negative(event, "latency_ms", what)
            if self.is_active and not math.isfinite(self.total_latency_ms + latency_ms):
                # The totals would be inf: no JSON record (nor view, nor export) holds that.
                raise ValueError(f"{what} latency_ms {latency_ms!r} overflows the total latency")
            if self._accept(at_ms):
                self._record_inference(model_id, version, latency_ms, at_ms)
        elif kind == "error_recorded":
            message = fields.string(event, "message", what)
            error_model = fields.optional_string(event, "model_id", what)
            if self._accept(at_ms):
                self._record_error(error_model, message, at_ms)
        elif self._accept(at_ms):
            self.ended_at_ms = at_ms
            self.ended_by = "event"

    def _accept(self, at_ms: int) -> bool:
        """Whether an (already validated) event still counts; advances last_event_ms."""
        if not self.is_active:
            self.events_after_end += 1
            return False
        self.last_event_ms = max(self.last_event_ms, at_ms)
        return True

    def _record_inference(self, model_id: str, version: str, latency_ms: float, at: int) -> None:
        self.total_inferences += 1
        self.total_latency_ms += latency_ms
        self.avg_latency_ms = self.total_latency_ms / self.total_inferences
        if model_id not in self.models_used:
            self.models_used.append(model_id)
        key = f"{model_id}@{version}"
        calls = self.by_model.get(key)
        if calls is None:
            calls = self.by_model[key] = ModelCalls(model_id=model_id, version=version)
        calls.record_call(latency_ms, at)

    def _record_error(self, model_id: str | None, message: str, at: int) -> None:
        self.error_count += 1
        category = categorize(message)
        for summary in self.errors:
            if summary.category == category and summary.message == message:
                summary.count += 1
                summary.first_seen = min(summary.first_seen, at)
                summary.last_seen = max(summary.last_seen, at)
                break
        else:
            self.errors.append(
                ErrorSummary(
                    category=category,
                    message=message,
                    count=1,
                    first_seen=at,
                    last_seen=at,
                    model_id=model_id,
                )
            )
        if model_id is not None:
            candidates = [calls for calls in self.by_model.values() if calls.model_id == model_id]
            if candidates:
                # max() keeps the first of equal maxima: ties go to the first-used version.
                max(candidates, key=lambda calls: calls.last_called).record_error(at)

    def idle_expire(self, now_ms: int, timeout_ms: int) -> bool:
        """End the session if it has been idle longer than ``timeout_ms`` at ``now_ms``.

        The end time is ``last_event_ms + timeout_ms`` (not ``now_ms``), so it does not
        depend on when the check runs. Returns True when this call ended the session.
        """
        if not self.is_active or now_ms - self.last_event_ms <= timeout_ms:
            return False
        self.ended_at_ms = self.last_event_ms + timeout_ms
        self.ended_by = "idle_timeout"
        return True

    def to_json(self) -> dict[str, Any]:
        """The whole record as a plain JSON object (for the changelog-backed table)."""
        return {
            "session_id": self.session_id,
            "device_id": self.device_id,
            "platform": self.platform,
            "sdk_version": self.sdk_version,
            "started_at_ms": self.started_at_ms,
            "ended_at_ms": self.ended_at_ms,
            "ended_by": self.ended_by,
            "last_event_ms": self.last_event_ms,
            "total_inferences": self.total_inferences,
            "total_latency_ms": self.total_latency_ms,
            "avg_latency_ms": self.avg_latency_ms,
            "models_used": list(self.models_used),
            "error_count": self.error_count,
            "by_model": {key: calls.to_json() for key, calls in self.by_model.items()},
            "errors": [summary.to_json() for summary in self.errors],
            "hardware": None if self.hardware is None else dict(self.hardware),
            "events_after_end": self.events_after_end,
        }

    @classmethod
    def from_json(cls, record: object) -> Session:
        """Inverse of :meth:`to_json`; ``ValueError`` naming the problem on a bad record."""
        doc = fields.mapping(record, "session record")
        what = "session"
        fields.all_present(doc, _SESSION_KEYS, "session record")
        fields.no_unknown(doc, _SESSION_KEYS, "session record")
        ended_by = doc.get("ended_by")
        if ended_by not in (None, "event", "idle_timeout"):
            raise ValueError(
                f"session ended_by must be event, idle_timeout or null, got {ended_by!r}"
            )
        ended_at_ms = fields.optional_count(doc, "ended_at_ms", what)
        if (ended_at_ms is None) != (ended_by is None):
            raise ValueError("session ended_at_ms and ended_by must be both set or both null")
        models_used = fields.required(doc, "models_used", what)
        if not isinstance(models_used, list) or not all(isinstance(m, str) for m in models_used):
            raise ValueError(f"session models_used must be a list of strings, got {models_used!r}")
        by_model_doc = fields.mapping(fields.required(doc, "by_model", what), "session by_model")
        by_model: dict[str, ModelCalls] = {}
        for key, value in by_model_doc.items():
            calls = ModelCalls.from_json(value)
            if key != calls.key:
                raise ValueError(f"session by_model key {key!r} does not match {calls.key!r}")
            by_model[key] = calls
        errors_doc = fields.required(doc, "errors", what)
        if not isinstance(errors_doc, list):
            raise ValueError(f"session errors must be a list, got {errors_doc!r}")
        hardware = doc.get("hardware")
        if hardware is not None:
            hardware = dict(fields.mapping(hardware, "session hardware"))
        return cls(
            session_id=fields.string(doc, "session_id", what),
            device_id=fields.string(doc, "device_id", what),
            platform=fields.string(doc, "platform", what),
            sdk_version=fields.string(doc, "sdk_version", what),
            started_at_ms=fields.count(doc, "started_at_ms", what),
            ended_at_ms=ended_at_ms,
            ended_by=cast(EndedBy | None, ended_by),
            last_event_ms=fields.count(doc, "last_event_ms", what),
            total_inferences=fields.count(doc, "total_inferences", what),
            total_latency_ms=fields.non_negative(doc, "total_latency_ms", what),
            avg_latency_ms=fields.non_negative(doc, "avg_latency_ms", what),
            models_used=list(models_used),
            error_count=fields.count(doc, "error_count", what),
            by_model=by_model,
            errors=[ErrorSummary.from_json(item) for item in errors_doc],
            hardware=hardware,
            events_after_end=fields.count(doc, "events_after_end", what),
        )

    def export(self) -> dict[str, Any]:
        """The session in the TelemetryExport format, version "2.0" (ISO 8601 UTC times)."""
        hardware: dict[str, Any] | None = None
        if self.hardware is not None:
            hardware = {
                key: self.hardware.get(key, default) for key, default in HARDWARE_DEFAULTS.items()
            }
        return {
            "version": EXPORT_VERSION,
            "session": {
                "session_id": self.session_id,
                "device_id": self.device_id,
                "platform": self.platform,
                "sdk_version": self.sdk_version,
                "started_at": iso8601_ms(self.started_at_ms),
                "ended_at": None if self.ended_at_ms is None else iso8601_ms(self.ended_at_ms),
            },
            "hardware": hardware,
            "metrics": {
                "total_inferences": self.total_inferences,
                "total_latency_ms": self.total_latency_ms,
                "avg_latency_ms": self.avg_latency_ms,
                "error_count": self.error_count,
                "by_model": [self.by_model[key].to_json() for key in sorted(self.by_model)],
            },
            "errors": [summary.to_json() for summary in self.errors],
        }
