"""One publishing method per event builder: `publisher.execution(...)` is
`publisher.publish(ENGINE_EXECUTION, events.execution(...))`.

The methods take exactly the arguments of the builder of the same name in
`streams.client.events` (their signatures are carried over for type checkers and
editors, not restated), and answer what `publish()` answers: True when the event was
accepted, False when it was dropped (counted in `stats`); `submit_job` answers the
new job's id with it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Concatenate, ParamSpec, Protocol

from streams.client import events
from streams.client.events import (
    COMPARISON_RESULT,
    ENGINE_EVENT,
    ENGINE_EXECUTION,
    ML_JOB_COMMAND,
    SESSION_EVENT,
    TRAINING_SAMPLE,
)

P = ParamSpec("P")


class _Publishes(Protocol):
    def publish(self, event_type: str, event: Mapping[str, Any]) -> bool: ...


def _publishing(
    event_type: str, build: Callable[P, events.Event]
) -> Callable[Concatenate[_Publishes, P], bool]:
    """A method that builds an event with `build` and publishes it as `event_type`."""

    def method(self: _Publishes, /, *args: P.args, **kwargs: P.kwargs) -> bool:
        return self.publish(event_type, build(*args, **kwargs))

    # What help() and editors show: the builder's parameters, answering a bool.
    built = inspect.signature(build)
    this = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    method.__signature__ = built.replace(  # type: ignore[attr-defined]
        parameters=[this, *built.parameters.values()], return_annotation="bool"
    )
    method.__name__ = build.__name__
    method.__qualname__ = f"EventMethods.{build.__name__}"
    method.__doc__ = (
        f"Publish `events.{build.__name__}(...)` as `{event_type}` (same arguments); "
        f"True when accepted, False when dropped.\n\n{build.__doc__ or ''}"
    )
    return method


class EventMethods:
    """The typed publishing methods, for any class with `publish(event_type, event)`."""

    # Engine runs and their comparisons (the windows, the charts, the training data).
    execution = _publishing(ENGINE_EXECUTION, events.execution)
    comparison = _publishing(COMPARISON_RESULT, events.comparison)
    training_sample = _publishing(TRAINING_SAMPLE, events.training_sample)
    # An engine's lifecycle.
    engine_started = _publishing(ENGINE_EVENT, events.engine_started)
    model_loaded = _publishing(ENGINE_EVENT, events.model_loaded)
    warm_up_complete = _publishing(ENGINE_EVENT, events.warm_up_complete)
    request_served = _publishing(ENGINE_EVENT, events.request_served)
    engine_error = _publishing(ENGINE_EVENT, events.engine_error)
    engine_stopping = _publishing(ENGINE_EVENT, events.engine_stopping)
    # A device session.
    session_started = _publishing(SESSION_EVENT, events.session_started)
    inference_recorded = _publishing(SESSION_EVENT, events.inference_recorded)
    error_recorded = _publishing(SESSION_EVENT, events.error_recorded)
    session_ended = _publishing(SESSION_EVENT, events.session_ended)
    # ML job commands (submitting answers the new job's id too).
    start_job = _publishing(ML_JOB_COMMAND, events.start_job)
    job_progress = _publishing(ML_JOB_COMMAND, events.job_progress)
    complete_job = _publishing(ML_JOB_COMMAND, events.complete_job)
    fail_job = _publishing(ML_JOB_COMMAND, events.fail_job)
    cancel_job = _publishing(ML_JOB_COMMAND, events.cancel_job)

    def submit_job(
        self: _Publishes,
        kind: events.JobKind,
        target: str,
        *,
        spec: str | Mapping[str, Any] | None = None,
        job_id: str | None = None,
        timestamp: float | None = None,
    ) -> tuple[str, bool]:
        """Publish `events.submit_job(...)` as `ml_job_command`: answers (the job's id,
        True when accepted / False when dropped)."""
        job_id, command = events.submit_job(
            kind, target, spec=spec, job_id=job_id, timestamp=timestamp
        )
        return job_id, self.publish(ML_JOB_COMMAND, command)
