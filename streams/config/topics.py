"""Every topic of the contract, with its partition count and the events it carries.

The data flow reads top to bottom: raw events arrive on `engine.ingest` (any type)
or on a typed `*.raw` topic; the router validates them and writes each to its typed
topic, keyed by the entity id named here, or to `engine.dead-letter`.
"""

from __future__ import annotations

from dataclasses import dataclass

INGEST = "engine.ingest"
DEAD_LETTER = "engine.dead-letter"
METRICS_WINDOWS = "engine.metrics.windows"


@dataclass(frozen=True)
class EventRoute:
    """Where one event type comes from and goes to, and which field keys it."""

    event_type: str
    raw_topic: str
    typed_topic: str
    key_field: str


EVENT_ROUTES: dict[str, EventRoute] = {
    route.event_type: route
    for route in (
        EventRoute("engine_execution", "engine.executions.raw", "engine.executions", "engine_id"),
        EventRoute(
            "comparison_result", "engine.comparisons.raw", "engine.comparisons", "comparison_id"
        ),
        EventRoute(
            "training_sample",
            "engine.training-samples.raw",
            "engine.training-samples",
            "sample_id",
        ),
        EventRoute("engine_event", "engine.lifecycle.raw", "engine.lifecycle", "engine_id"),
        EventRoute("session_event", "engine.sessions.raw", "engine.sessions", "session_id"),
        EventRoute("ml_job_command", "ml.jobs.raw", "ml.jobs", "job_id"),
    )
}

EVENT_TYPES: tuple[str, ...] = tuple(EVENT_ROUTES)


@dataclass(frozen=True)
class TopicSpec:
    """A topic the project creates, with an explicit partition count."""

    name: str
    partitions: int
    compacted: bool = False


class TopicNames:
    """The contract's topic names under one prefix (empty in production)."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.ingest = prefix + INGEST
        self.dead_letter = prefix + DEAD_LETTER
        self.metrics_windows = prefix + METRICS_WINDOWS
        self.raw = {t: prefix + r.raw_topic for t, r in EVENT_ROUTES.items()}
        self.typed = {t: prefix + r.typed_topic for t, r in EVENT_ROUTES.items()}
        self.type_of_raw = {name: t for t, name in self.raw.items()}

    def inputs(self) -> list[str]:
        """The topics the router reads: ingest and every typed raw topic."""
        return [self.ingest, *self.raw.values()]

    def specs(self, partitions: int) -> list[TopicSpec]:
        """Every topic to create, each with `partitions` partitions."""
        names = [
            *self.inputs(),
            *self.typed.values(),
            self.dead_letter,
            self.metrics_windows,
        ]
        return [TopicSpec(name, partitions) for name in names]
