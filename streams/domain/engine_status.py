"""Engine status: the lifecycle state of one engine, folded from `engine_event` documents.

Every `engine_event` (schemas/v1/engine_event.json) of one engine lands in one partition
of ``engine.lifecycle`` (keyed by ``engine_id``); :meth:`EngineStatus.apply` folds them,
in partition order, into the engine's status:

=================  ==========================================================
EngineStarted      state ``started``; model and port set
ModelLoaded        state ``model_loaded``; model set
WarmUpComplete     state ``warm``; model set
RequestServed      state unchanged; ``requests_served`` + 1
EngineError        state ``error``; ``last_error_kind`` = kind
EngineStopping     state ``stopping``; model set
=================  ==========================================================

Decisions where the seed and the contract are silent:

* An engine first seen through ``RequestServed`` is ``warm`` (an engine serving
  requests has warmed up); its model is taken from the request. Otherwise
  ``RequestServed`` changes the model only while it is unknown.
* Out-of-order events: an event whose timestamp is older than ``last_seen`` changes
  neither state, model, port nor ``last_error_kind`` and is counted in
  ``stale_events``; a stale ``RequestServed`` still counts in ``requests_served`` (the
  count does not depend on order). Equal timestamps apply in partition order.
  ``last_seen`` is the highest event time seen (epoch seconds).
* ``requests_served`` and ``last_error_kind`` survive a restart (``EngineStarted``):
  they describe the engine id, not one run of it. ``last_error_kind`` is the kind of
  the latest error and stays after the engine leaves the ``error`` state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from streams.domain import fields

__all__ = ["ENGINE_EVENTS", "EngineState", "EngineStatus"]


class EngineState(StrEnum):
    """Lifecycle state of an engine; the value is what is stored and shown."""

    STARTED = "started"
    MODEL_LOADED = "model_loaded"
    WARM = "warm"
    STOPPING = "stopping"
    ERROR = "error"


_STATE_OF: dict[str, EngineState | None] = {
    "EngineStarted": EngineState.STARTED,
    "ModelLoaded": EngineState.MODEL_LOADED,
    "WarmUpComplete": EngineState.WARM,
    "RequestServed": None,
    "EngineError": EngineState.ERROR,
    "EngineStopping": EngineState.STOPPING,
}
ENGINE_EVENTS: tuple[str, ...] = tuple(_STATE_OF)
"""Every lifecycle variant of schemas/v1/engine_event.json."""

_JSON_KEYS: tuple[str, ...] = (
    "engine_id",
    "state",
    "model",
    "port",
    "last_error_kind",
    "last_seen",
    "requests_served",
    "stale_events",
)


def _port(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ValueError(f"{what} port must be an integer in 0..65535, got {value!r}")
    return value


@dataclass
class EngineStatus:
    """Current lifecycle status of one engine.

    Build it with :meth:`from_event` from the first event seen for the engine, then
    feed it every later event with :meth:`apply`.
    """

    engine_id: str
    state: EngineState = EngineState.WARM
    model: str | None = None
    port: int | None = None
    last_error_kind: str | None = None
    last_seen: float = 0.0
    requests_served: int = 0
    stale_events: int = 0

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> EngineStatus:
        """A new status from the first event seen for an engine, with it applied
        (``warm`` when that event is ``RequestServed``)."""
        event = fields.mapping(event, "engine event")
        status = cls(
            engine_id=fields.string(event, "engine_id", "engine event"),
            state=EngineState.WARM,
            last_seen=fields.timestamp(event, "timestamp", "engine event"),
        )
        status.apply(event)
        return status

    def apply(self, event: Mapping[str, Any]) -> None:
        """Fold one ``engine_event`` of this engine into the status.

        Raises ``ValueError`` (and changes nothing) for an event of another engine, an
        unknown variant or a missing/ill-typed field.
        """
        event = fields.mapping(event, "engine event")
        what = "engine event"
        kind = event.get("event")
        if kind not in _STATE_OF:
            raise ValueError(
                f"engine event must be one of {', '.join(ENGINE_EVENTS)}, got {kind!r}"
            )
        engine_id = fields.string(event, "engine_id", what)
        if engine_id != self.engine_id:
            raise ValueError(f"event for engine {engine_id!r} applied to {self.engine_id!r}")
        at = fields.timestamp(event, "timestamp", what)
        model = fields.optional_string(event, "model", what)
        if model is None and kind != "EngineError":
            raise ValueError(f"{kind} event is missing its model")
        port = _port(event.get("port"), what) if kind == "EngineStarted" else None
        error_kind = fields.string(event, "kind", what) if kind == "EngineError" else None

        if kind == "RequestServed":
            self.requests_served += 1
        if at < self.last_seen:
            self.stale_events += 1
            return
        self.last_seen = at
        new_state = _STATE_OF[kind]
        if new_state is None:  # RequestServed
            if self.model is None:
                self.model = model
            return
        self.state = new_state
        if model is not None:
            self.model = model
        if port is not None:
            self.port = port
        if error_kind is not None:
            self.last_error_kind = error_kind

    def to_json(self) -> dict[str, Any]:
        """The status as a plain JSON object."""
        return {
            "engine_id": self.engine_id,
            "state": str(self.state),
            "model": self.model,
            "port": self.port,
            "last_error_kind": self.last_error_kind,
            "last_seen": self.last_seen,
            "requests_served": self.requests_served,
            "stale_events": self.stale_events,
        }

    @classmethod
    def from_json(cls, record: object) -> EngineStatus:
        """Inverse of :meth:`to_json`; ``ValueError`` naming the problem on a bad record."""
        doc = fields.mapping(record, "engine status record")
        what = "engine status"
        fields.all_present(doc, _JSON_KEYS, "engine status record")
        state = doc["state"]
        if state not in {member.value for member in EngineState}:
            allowed = ", ".join(member.value for member in EngineState)
            raise ValueError(f"engine status state must be one of {allowed}, got {state!r}")
        port = doc["port"]
        return cls(
            engine_id=fields.string(doc, "engine_id", what),
            state=EngineState(state),
            model=fields.optional_string(doc, "model", what),
            port=None if port is None else _port(port, what),
            last_error_kind=fields.optional_string(doc, "last_error_kind", what),
            last_seen=fields.timestamp(doc, "last_seen", what),
            requests_served=fields.count(doc, "requests_served", what),
            stale_events=fields.count(doc, "stale_events", what),
        )
