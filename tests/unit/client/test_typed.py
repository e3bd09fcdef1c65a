"""The one-call methods (`publisher.execution(...)`): each publishes exactly what its
builder in `streams.client.events` builds, as that builder's event type, with the
builder's signature."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import pytest

from streams.client import (
    COMPARISON_RESULT,
    ENGINE_EVENT,
    ENGINE_EXECUTION,
    ML_JOB_COMMAND,
    SESSION_EVENT,
    TRAINING_SAMPLE,
    Publisher,
    SyncPublisher,
    events,
)
from streams.client.typed import EventMethods
from tests.unit.client.support import HARDWARE, balanced, unreachable

# method -> (its event type, the arguments to call it with)
CALLS: dict[str, tuple[str, tuple[Any, ...], dict[str, Any]]] = {
    "execution": (ENGINE_EXECUTION, ("gpt-x", "2+2?", "4"), {"latency_ms": 42.0, "memory_mb": 9}),
    "comparison": (
        COMPARISON_RESULT,
        ("q", [events.candidate("a", "x", latency_ms=3, quality_score=0.7)], "a", 0.7),
        {},
    ),
    "training_sample": (TRAINING_SAMPLE, ("in", "out", "gold", 0.95), {"source_trace_id": "t"}),
    "engine_started": (ENGINE_EVENT, ("gpt-x", "qwen3-4b"), {"port": 8080}),
    "model_loaded": (ENGINE_EVENT, ("gpt-x", "qwen3-4b"), {}),
    "warm_up_complete": (ENGINE_EVENT, ("gpt-x", "qwen3-4b"), {}),
    "request_served": (ENGINE_EVENT, ("gpt-x", "/v1/chat", "qwen3-4b", "local", 42, 200), {}),
    "engine_error": (ENGINE_EVENT, ("gpt-x", "oom"), {}),
    "engine_stopping": (ENGINE_EVENT, ("gpt-x", "qwen3-4b"), {}),
    "session_started": (
        SESSION_EVENT, ("s-1", "d-1", "android", "1.2.0"), {"hardware": HARDWARE}
    ),
    "inference_recorded": (SESSION_EVENT, ("s-1", "m-1", "v1", 12.5), {}),
    "error_recorded": (SESSION_EVENT, ("s-1", "boom"), {"model_id": "m-1"}),
    "session_ended": (SESSION_EVENT, ("s-1",), {}),
    "start_job": (ML_JOB_COMMAND, ("j-1",), {}),
    "job_progress": (ML_JOB_COMMAND, ("j-1", 40), {}),
    "complete_job": (ML_JOB_COMMAND, ("j-1",), {"metrics": {"loss": 0.1}}),
    "fail_job": (ML_JOB_COMMAND, ("j-1", "diverged"), {}),
    "cancel_job": (ML_JOB_COMMAND, ("j-1",), {"reason": "superseded"}),
}


class Recorder(EventMethods):
    """Records what the methods publish; answers `accept`."""

    def __init__(self, accept: bool = True) -> None:
        self.published: list[tuple[str, Mapping[str, Any]]] = []
        self.accept = accept

    def publish(self, event_type: str, event: Mapping[str, Any]) -> bool:
        self.published.append((event_type, event))
        return self.accept


@pytest.fixture
def fixed_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids and times the same for the method and the builder it is compared with."""
    monkeypatch.setattr(events, "new_id", lambda: "0" * 32)
    monkeypatch.setattr(events, "now", lambda: 1_700_000_000.0)


def public_builders() -> set[str]:
    """Every builder of a whole event in `streams.client.events`."""
    return {
        name for name, fn in vars(events).items()
        if inspect.isfunction(fn) and not name.startswith("_") and fn.__module__ == events.__name__
    } - {"now", "new_id", "candidate"}  # a candidate is a part of a comparison


def test_every_builder_has_a_method() -> None:
    assert public_builders() == set(CALLS) | {"submit_job"}
    for name in public_builders():
        assert callable(getattr(EventMethods, name, None)), name


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_method_publishes_what_its_builder_builds(name: str, fixed_ids: None) -> None:
    event_type, args, kwargs = CALLS[name]
    recorder = Recorder()
    assert getattr(recorder, name)(*args, **kwargs) is True
    assert recorder.published == [(event_type, getattr(events, name)(*args, **kwargs))]


def test_submit_job_takes_what_its_builder_takes() -> None:
    # Written out by hand (it answers the id too), so held to the builder here.
    method = inspect.signature(EventMethods.submit_job)
    builder = inspect.signature(events.submit_job)
    def shape(signature: inspect.Signature, skip: int) -> list[tuple[str, object, object]]:
        return [(p.name, p.kind, p.default) for p in list(signature.parameters.values())[skip:]]

    assert shape(method, 1) == shape(builder, 0)


def test_a_drop_is_answered() -> None:
    recorder = Recorder(accept=False)
    assert recorder.engine_error("gpt-x", "oom") is False
    assert recorder.published[0][0] == ENGINE_EVENT


def test_submit_job_answers_the_id_and_whether_it_was_accepted() -> None:
    recorder = Recorder()
    job_id, accepted = recorder.submit_job("train", "model-a", spec={"epochs": 3})
    assert accepted is True
    [(event_type, command)] = recorder.published
    assert event_type == ML_JOB_COMMAND
    assert command["job_id"] == job_id and command["command"] == "submit"
    assert Recorder(accept=False).submit_job("train", "model-a", job_id="j-2") == ("j-2", False)


def test_the_publishers_check_what_the_methods_build() -> None:
    publisher = Publisher(**unreachable(buffer_events=100))
    assert publisher.execution("gpt-x", "2+2?", "4", latency_ms=42.0) is True
    assert publisher.engine_started("gpt-x", "qwen3-4b", port=8080) is True
    with pytest.raises(events.InvalidEvent):
        publisher.execution("gpt-x", "2+2?", "4", latency_ms=-1.0)
    stats = publisher.stats
    assert stats.attempts == 3 and stats.buffered == 2 and stats.dropped["invalid"] == 1
    assert balanced(stats)
    assert issubclass(SyncPublisher, EventMethods)
