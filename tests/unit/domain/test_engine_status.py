"""Engine lifecycle status (streams/domain/engine_status.py)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator

from streams.domain.engine_status import ENGINE_EVENTS, EngineState, EngineStatus

SCHEMA_DIR = Path(__file__).parents[3] / "schemas" / "v1"
EID = "llm-gw-1"
T = 1_670_000_000.0


@cache
def event_validator() -> Draft7Validator:
    return Draft7Validator(json.loads((SCHEMA_DIR / "engine_event.json").read_text()))


def ev(variant: str, ts: float, engine_id: str = EID, **fields: Any) -> dict[str, Any]:
    """An engine event, checked against the schema so tests only feed valid events."""
    doc = {"event": variant, "engine_id": engine_id, "timestamp": ts, **fields}
    errors = [e.message for e in event_validator().iter_errors(doc)]
    assert errors == [], errors
    return doc


def engine_started(ts: float, model: str = "llama-3-8b", port: int = 8000) -> dict[str, Any]:
    return ev("EngineStarted", ts, model=model, port=port)


def model_loaded(ts: float, model: str = "llama-3-8b") -> dict[str, Any]:
    return ev("ModelLoaded", ts, model=model)


def warm(ts: float, model: str = "llama-3-8b") -> dict[str, Any]:
    return ev("WarmUpComplete", ts, model=model)


def served(ts: float, model: str = "llama-3-8b", status_code: int = 200) -> dict[str, Any]:
    return ev(
        "RequestServed",
        ts,
        route="/v1/chat/completions",
        model=model,
        provider="vllm",
        latency_ms=42,
        status_code=status_code,
    )


def engine_error(ts: float, kind: str = "oom") -> dict[str, Any]:
    return ev("EngineError", ts, kind=kind)


def stopping(ts: float, model: str = "llama-3-8b") -> dict[str, Any]:
    return ev("EngineStopping", ts, model=model)


def run(events: list[dict[str, Any]]) -> EngineStatus:
    status = EngineStatus.from_event(events[0])
    for event in events[1:]:
        status.apply(event)
    return status


def test_states_and_variants() -> None:
    assert [s.value for s in EngineState] == [
        "started",
        "model_loaded",
        "warm",
        "stopping",
        "error",
    ]
    assert ENGINE_EVENTS == (
        "EngineStarted",
        "ModelLoaded",
        "WarmUpComplete",
        "RequestServed",
        "EngineError",
        "EngineStopping",
    )


def new(state: EngineState, model: str | None, port: int | None = None, **kw: Any) -> EngineStatus:
    return EngineStatus(EID, state, model, port, last_seen=T, **kw)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (engine_started(T, port=11435), new(EngineState.STARTED, "llama-3-8b", 11435)),
        (model_loaded(T), new(EngineState.MODEL_LOADED, "llama-3-8b")),
        (warm(T), new(EngineState.WARM, "llama-3-8b")),
        (served(T), new(EngineState.WARM, "llama-3-8b", requests_served=1)),
        (engine_error(T, "timeout"), new(EngineState.ERROR, None, last_error_kind="timeout")),
        (stopping(T), new(EngineState.STOPPING, "llama-3-8b")),
    ],
    ids=ENGINE_EVENTS,
)
def test_every_variant_on_a_new_engine(event: dict[str, Any], expected: EngineStatus) -> None:
    assert EngineStatus.from_event(event) == expected


def test_full_lifecycle() -> None:
    status = EngineStatus.from_event(engine_started(T))
    steps: list[tuple[dict[str, Any], EngineState]] = [
        (model_loaded(T + 1), EngineState.MODEL_LOADED),
        (warm(T + 2), EngineState.WARM),
        (served(T + 3), EngineState.WARM),
        (served(T + 4, status_code=503), EngineState.WARM),
        (engine_error(T + 5, "inference"), EngineState.ERROR),
        (served(T + 6), EngineState.ERROR),  # serving does not change the state
        (warm(T + 7), EngineState.WARM),  # recovered
        (stopping(T + 8), EngineState.STOPPING),
        (served(T + 9), EngineState.STOPPING),  # draining
    ]
    for event, state in steps:
        status.apply(event)
        assert status.state is state
        assert status.last_seen == event["timestamp"]
    assert status.requests_served == 4
    assert status.last_error_kind == "inference"  # kept after recovery
    assert (status.model, status.port) == ("llama-3-8b", 8000)
    # restart on another port with another model: counters describe the engine id
    status.apply(engine_started(T + 20, model="qwen3-4b", port=9000))
    assert status == EngineStatus(
        EID, EngineState.STARTED, "qwen3-4b", 9000, "inference", T + 20, 4, 0
    )


def test_model_follows_lifecycle_events_not_requests() -> None:
    status = run([engine_started(T, model="a"), model_loaded(T + 1, model="b")])
    assert status.model == "b"
    status.apply(served(T + 2, model="c"))
    assert status.model == "b"
    status.apply(warm(T + 3, model="d"))
    assert status.model == "d"
    status.apply(stopping(T + 4, model="e"))
    assert status.model == "e"
    status.apply(engine_error(T + 5))
    assert status.model == "e"


def test_request_fills_unknown_model() -> None:
    status = run([engine_error(T), served(T + 1, model="m")])
    assert (status.state, status.model, status.requests_served) == (EngineState.ERROR, "m", 1)


def test_out_of_order_events() -> None:
    status = run([engine_started(T), warm(T + 10)])
    status.apply(model_loaded(T + 5, model="older"))  # stale: ignored
    assert (status.state, status.model, status.last_seen) == (
        EngineState.WARM,
        "llama-3-8b",
        T + 10,
    )
    status.apply(engine_error(T + 1))
    assert (status.state, status.last_error_kind) == (EngineState.WARM, None)
    status.apply(served(T + 2, model="x"))  # stale but still counted
    assert (status.requests_served, status.last_seen) == (1, T + 10)
    assert status.stale_events == 3
    status.apply(stopping(T + 10))  # same time: applied in partition order
    assert status.state is EngineState.STOPPING
    assert status.stale_events == 3


@pytest.mark.parametrize(
    "bad",
    [
        {"event": "ModelLoaded", "engine_id": "other", "timestamp": T, "model": "m"},
        {"event": "EngineCrashed", "engine_id": EID, "timestamp": T},
        {"event": "ModelLoaded", "engine_id": EID, "timestamp": T},
        {"event": "EngineStarted", "engine_id": EID, "timestamp": T, "model": "m"},
        {"event": "EngineStarted", "engine_id": EID, "timestamp": T, "model": "m", "port": 70000},
        {"event": "EngineStarted", "engine_id": EID, "timestamp": T, "model": "m", "port": True},
        {"event": "EngineError", "engine_id": EID, "timestamp": T},
        {"event": "WarmUpComplete", "engine_id": EID, "timestamp": "now", "model": "m"},
        {"event": "WarmUpComplete", "engine_id": EID, "timestamp": -1, "model": "m"},
        {"event": "WarmUpComplete", "engine_id": EID, "model": "m"},
        {"event": "RequestServed", "engine_id": EID, "timestamp": T, "model": 5},
        "EngineStarted",
    ],
)
def test_bad_events_raise_and_change_nothing(bad: Any) -> None:
    status = run([engine_started(T), served(T + 1)])
    before = copy.deepcopy(status)
    with pytest.raises(ValueError):
        status.apply(bad)
    assert status == before


def test_schema_examples() -> None:
    folder = SCHEMA_DIR / "examples" / "engine_event" / "valid"
    names = ["engine_started", "model_loaded", "warm_up_complete", "request_served",
             "request_served_server_error", "engine_error", "engine_stopping"]  # fmt: skip
    status = run([json.loads((folder / f"{n}.json").read_text()) for n in names])
    # warm_up_complete.json is at .75 s; the later examples at .0 s are stale
    assert status == EngineStatus(
        "llm-gw-1", EngineState.WARM, "llama-3-8b", 8000, None, 1670000401.75, 2, 4
    )


# ---- JSON --------------------------------------------------------------------------------


def test_to_json_shape() -> None:
    status = run([engine_started(T), engine_error(T + 1, "timeout"), served(T + 2)])
    assert status.to_json() == {
        "engine_id": EID,
        "state": "error",
        "model": "llama-3-8b",
        "port": 8000,
        "last_error_kind": "timeout",
        "last_seen": T + 2,
        "requests_served": 1,
        "stale_events": 0,
    }
    assert type(status.to_json()["state"]) is str


times = st.integers(0, 50).map(lambda n: T + n / 4)
events = st.one_of(
    st.builds(engine_started, times, st.sampled_from(["a", "b"]), st.integers(0, 65535)),
    st.builds(model_loaded, times),
    st.builds(warm, times),
    st.builds(served, times, st.sampled_from(["a", "b"])),
    st.builds(engine_error, times, st.sampled_from(["oom", "timeout"])),
    st.builds(stopping, times),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(events, min_size=1, max_size=20))
def test_json_round_trip(evs: list[dict[str, Any]]) -> None:
    status = run(evs)
    assert EngineStatus.from_json(json.loads(json.dumps(status.to_json()))) == status
    assert status.requests_served == sum(e["event"] == "RequestServed" for e in evs)
    assert status.last_seen == max(e["timestamp"] for e in evs)


GOOD = run([engine_started(T), served(T + 1)]).to_json()


@pytest.mark.parametrize(
    "changes",
    [
        {"state": "sleeping"},
        {"state": None},
        {"port": 70000},
        {"port": "8000"},
        {"model": 3},
        {"last_error_kind": 1},
        {"last_seen": "yesterday"},
        {"last_seen": float("inf")},
        {"requests_served": -1},
        {"requests_served": 1.0},
        {"stale_events": None},
        {"engine_id": None},
    ],
)
def test_from_json_rejects_bad_records(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        EngineStatus.from_json({**GOOD, **changes})


@pytest.mark.parametrize("key", sorted(GOOD))
def test_from_json_rejects_missing_fields(key: str) -> None:
    record = dict(GOOD)
    del record[key]
    with pytest.raises(ValueError, match=f"missing {key}"):
        EngineStatus.from_json(record)


def test_from_json_rejects_non_objects() -> None:
    with pytest.raises(ValueError):
        EngineStatus.from_json([GOOD])
