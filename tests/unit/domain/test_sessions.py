"""Device session aggregation and the v2.0 telemetry export (streams/domain/sessions.py)."""

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

from streams.domain.sessions import (
    ERROR_RULES,
    ErrorSummary,
    ModelCalls,
    Session,
    categorize,
    iso8601_ms,
)

SCHEMA_DIR = Path(__file__).parents[3] / "schemas" / "v1"
SID = "sess-42"
T = 1_670_000_000  # 2022-12-02T16:53:20Z


@cache
def event_validator() -> Draft7Validator:
    return Draft7Validator(json.loads((SCHEMA_DIR / "session_event.json").read_text()))


def ev(kind: str, ts: float, session_id: str = SID, **fields: Any) -> dict[str, Any]:
    """A session event, checked against the schema so tests only feed valid events."""
    doc = {"event": kind, "session_id": session_id, "timestamp": ts, **fields}
    errors = [e.message for e in event_validator().iter_errors(doc)]
    assert errors == [], errors
    return doc


def started(ts: float = T, **fields: Any) -> dict[str, Any]:
    base = {"device_id": "dev-7", "platform": "android", "sdk_version": "2.0.1"}
    return ev("session_started", ts, **{**base, **fields})


def inference(ts: float, model: str, version: str, latency: float) -> dict[str, Any]:
    return ev("inference_recorded", ts, model_id=model, version=version, latency_ms=latency)


def error(ts: float, message: str, model: str | None = None) -> dict[str, Any]:
    return ev("error_recorded", ts, message=message, **({"model_id": model} if model else {}))


def ended(ts: float) -> dict[str, Any]:
    return ev("session_ended", ts)


def run(events: list[dict[str, Any]]) -> Session:
    session = Session.from_event(events[0])
    for event in events[1:]:
        session.apply(event)
    return session


# ---- categorize --------------------------------------------------------------------------


def seed_from_error(error: str) -> str:
    """ErrorCategory::from_error transcribed literally, as an independent reference."""
    e = error.lower()
    if "load" in e or "bundle" in e or "model not found" in e:
        return "model_loading"
    if "preprocess" in e or "input" in e or "format" in e:
        return "preprocessing"
    if "inference" in e or "execute" in e or "onnx" in e:
        return "inference"
    if "postprocess" in e or "output" in e:
        return "postprocessing"
    if "network" in e or "connection" in e or "registry" in e or "http" in e:
        return "network"
    if "gpu" in e or "metal" in e or "cuda" in e or "npu" in e:
        return "hardware"
    if "memory" in e or "oom" in e:
        return "memory"
    return "unknown"


def test_rule_table_is_the_seeds() -> None:
    assert ERROR_RULES == (
        ("model_loading", ("load", "bundle", "model not found")),
        ("preprocessing", ("preprocess", "input", "format")),
        ("inference", ("inference", "execute", "onnx")),
        ("postprocessing", ("postprocess", "output")),
        ("network", ("network", "connection", "registry", "http")),
        ("hardware", ("gpu", "metal", "cuda", "npu")),
        ("memory", ("memory", "oom")),
    )


KEYWORDS = [(category, kw) for category, keywords in ERROR_RULES for kw in keywords]


@pytest.mark.parametrize(("category", "keyword"), KEYWORDS, ids=[kw for _, kw in KEYWORDS])
def test_every_keyword(category: str, keyword: str) -> None:
    assert categorize(keyword) == category
    assert categorize(f"error: {keyword}!") == category
    assert categorize(f"ERROR: {keyword.upper()}!") == category
    assert categorize(f"Error: {keyword.title()} Was Here") == category


@pytest.mark.parametrize(
    ("message", "category"),
    [
        ("failed to load input", "model_loading"),  # load before input
        ("HTTP output error", "postprocessing"),  # output before http
        ("GPU out of memory", "hardware"),  # gpu before memory
        ("CUDA OOM", "hardware"),
        ("invalid input format for ONNX", "preprocessing"),
        ("onnx execute failed over network", "inference"),
        ("registry returned bad output", "postprocessing"),
        ("Metal device lost; connection reset", "network"),
        ("Download interrupted", "model_loading"),  # substring: down*load*
        ("missing information", "preprocessing"),  # substring: in*format*ion
        ("Model not found", "model_loading"),
        ("model file missing", "unknown"),
        ("boom", "memory"),  # plain substring matching, like the seed: b*oom*
        ("Failed to load model", "model_loading"),  # the seed's own tests
        ("Network connection refused", "network"),
        ("GPU initialization failed", "hardware"),
        ("Out of memory", "memory"),
        ("Something weird happened", "unknown"),
        ("", "unknown"),
    ],
)
def test_precedence_and_unknown(message: str, category: str) -> None:
    assert categorize(message) == category
    assert seed_from_error(message) == category


words = st.sampled_from(
    [kw for _, kws in ERROR_RULES for kw in kws] + ["x", " ", "LOAD", "Oom", "ab", "model"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(words | st.text(max_size=5), max_size=6).map("".join))
def test_categorize_matches_the_seed(message: str) -> None:
    assert categorize(message) == seed_from_error(message)


# ---- aggregation ---------------------------------------------------------------------------

HARDWARE = {"has_gpu": True, "gpu_type": "Adreno 740", "memory_total_mb": 8192}


def example_events() -> list[dict[str, Any]]:
    return [
        started(T, hardware=HARDWARE),
        inference(T + 1, "whisper", "1.0", 100),
        inference(T + 2.5, "whisper", "1.0", 50.5),
        inference(T + 3, "llama", "2", 300),
        inference(T + 4, "whisper", "1.1", 10),
        error(T + 5, "GPU out of memory", "whisper"),
        error(T + 6, "Network connection failed"),
        error(T + 7, "GPU out of memory", "llama"),
        error(T + 8, "weird thing", "ghost"),
        ended(T + 10),
    ]


def test_hand_computed_example() -> None:
    s = run(example_events())
    assert (s.session_id, s.device_id, s.platform, s.sdk_version) == (
        SID,
        "dev-7",
        "android",
        "2.0.1",
    )
    assert s.started_at_ms == T * 1000
    assert (s.ended_at_ms, s.ended_by) == ((T + 10) * 1000, "event")
    assert s.last_event_ms == (T + 10) * 1000
    assert s.total_inferences == 4
    assert s.total_latency_ms == 460.5
    assert s.avg_latency_ms == 115.125
    assert s.models_used == ["whisper", "llama"]
    assert s.error_count == 4
    assert s.hardware == HARDWARE
    assert list(s.by_model) == ["whisper@1.0", "llama@2", "whisper@1.1"]
    assert s.by_model["whisper@1.0"] == ModelCalls(
        "whisper", "1.0", 2, 150.5, 75.25, 0, T * 1000 + 2500
    )
    # the whisper error lands on the version called most recently (1.1), and raises last_called
    assert s.by_model["whisper@1.1"] == ModelCalls(
        "whisper", "1.1", 1, 10.0, 10.0, 1, (T + 5) * 1000
    )
    assert s.by_model["llama@2"] == ModelCalls("llama", "2", 1, 300.0, 300.0, 1, (T + 7) * 1000)
    assert s.errors == [
        ErrorSummary("hardware", "GPU out of memory", 2, (T + 5) * 1000, (T + 7) * 1000, "whisper"),
        ErrorSummary("network", "Network connection failed", 1, (T + 6) * 1000, (T + 6) * 1000),
        ErrorSummary("unknown", "weird thing", 1, (T + 8) * 1000, (T + 8) * 1000, "ghost"),
    ]
    assert s.events_after_end == 0
    assert not s.is_active


def test_error_count_tie_goes_to_first_used_version() -> None:
    s = run([started(), inference(T + 1, "m", "a", 1), inference(T + 1, "m", "b", 1)])
    s.apply(error(T + 2, "kaput", "m"))
    assert (s.by_model["m@a"].error_count, s.by_model["m@b"].error_count) == (1, 0)


def test_error_summary_times_are_min_and_max_of_event_times() -> None:
    s = run([started(), error(T + 9, "kaput"), error(T + 3, "kaput"), error(T + 5, "kaput")])
    assert s.errors == [ErrorSummary("unknown", "kaput", 3, (T + 3) * 1000, (T + 9) * 1000)]
    assert s.last_event_ms == (T + 9) * 1000


def test_timestamps_become_rounded_milliseconds() -> None:
    s = run([started(1670000000.0004), inference(1670000000.0015, "m", "1", 1)])
    assert s.started_at_ms == 1_670_000_000_000
    assert s.by_model["m@1"].last_called == 1_670_000_000_002
    s = run([started(0.001)])
    assert s.started_at_ms == 1


def test_events_after_end_are_ignored_and_counted() -> None:
    s = run(example_events())
    before = s.to_json()
    for late in (
        inference(T + 11, "whisper", "1.0", 999),
        error(T + 12, "late"),
        ended(T + 13),
        started(T + 14, device_id="other"),
    ):
        s.apply(late)
    after = s.to_json()
    assert after.pop("events_after_end") == 4
    before.pop("events_after_end")
    assert after == before


def test_lost_session_started() -> None:
    s = Session.from_event(inference(T + 1, "whisper", "1.0", 40))
    assert (s.device_id, s.platform, s.sdk_version) == ("unknown", "unknown", "unknown")
    assert s.hardware is None
    assert s.started_at_ms == s.last_event_ms == (T + 1) * 1000
    assert s.total_inferences == 1
    assert s.export()["session"]["device_id"] == "unknown"
    assert s.export()["hardware"] is None
    # a late session_started fills in the device and the true start
    s.apply(started(T, hardware={}))
    assert (s.device_id, s.platform, s.sdk_version) == ("dev-7", "android", "2.0.1")
    assert s.started_at_ms == T * 1000
    assert s.last_event_ms == (T + 1) * 1000
    assert s.total_inferences == 1


@pytest.mark.parametrize(
    "first",
    [error(T, "x"), ended(T), started(T)],
    ids=["error_recorded", "session_ended", "session_started"],
)
def test_any_event_can_open_a_session(first: dict[str, Any]) -> None:
    s = Session.from_event(first)
    assert s.session_id == SID
    assert s.started_at_ms == T * 1000


def test_session_ended_first() -> None:
    s = Session.from_event(ended(T))
    assert (s.ended_at_ms, s.ended_by) == (T * 1000, "event")


@pytest.mark.parametrize(
    "bad",
    [
        {"event": "session_started", "session_id": "other", "timestamp": T, "device_id": "d",
         "platform": "p", "sdk_version": "1"},
        {"event": "session_paused", "session_id": SID, "timestamp": T},
        {"event": "inference_recorded", "session_id": SID, "timestamp": T, "model_id": "m"},
        {"event": "inference_recorded", "session_id": SID, "timestamp": T, "model_id": "m",
         "version": "1", "latency_ms": "fast"},
        {"event": "error_recorded", "session_id": SID, "timestamp": T},
        {"event": "session_ended", "session_id": SID, "timestamp": -1},
        {"event": "session_ended", "session_id": SID},
        ["not", "an", "object"],
    ],
)  # fmt: skip
def test_bad_events_raise_and_change_nothing(bad: Any) -> None:
    s = run(example_events()[:5])
    before = copy.deepcopy(s)
    with pytest.raises(ValueError):
        s.apply(bad)
    assert s == before


# ---- idle expiry -------------------------------------------------------------------------


def test_idle_expire_is_deterministic() -> None:
    timeout = 30 * 60 * 1000
    last = (T + 4) * 1000
    a = run(example_events()[:5])
    b = copy.deepcopy(a)
    assert a.last_event_ms == last
    assert not a.idle_expire(last + timeout, timeout)  # exactly the timeout: still open
    assert a.is_active
    assert a.idle_expire(last + timeout + 1, timeout)
    assert b.idle_expire(last + 10 * timeout, timeout)  # checked much later
    for s in (a, b):
        assert (s.ended_at_ms, s.ended_by) == (last + timeout, "idle_timeout")
    assert a == b
    assert not a.idle_expire(last + 100 * timeout, timeout)  # already ended
    assert a.ended_at_ms == last + timeout
    a.apply(ended(T + 5))
    assert (a.ended_by, a.events_after_end) == ("idle_timeout", 1)


def test_idle_expire_leaves_ended_sessions_alone() -> None:
    s = run(example_events())
    assert not s.idle_expire(10**15, 1)
    assert (s.ended_at_ms, s.ended_by) == ((T + 10) * 1000, "event")


# ---- export ------------------------------------------------------------------------------


def test_export_format() -> None:
    s = run(example_events())
    assert s.export() == {
        "version": "2.0",
        "session": {
            "session_id": SID,
            "device_id": "dev-7",
            "platform": "android",
            "sdk_version": "2.0.1",
            "started_at": "2022-12-02T16:53:20.000Z",
            "ended_at": "2022-12-02T16:53:30.000Z",
        },
        "hardware": {
            "has_gpu": True,
            "gpu_type": "Adreno 740",
            "has_npu": False,
            "npu_type": "none",
            "memory_total_mb": 8192,
            "battery_level": 0,
            "thermal_state": "unknown",
            "platform": "unknown",
        },
        "metrics": {
            "total_inferences": 4,
            "total_latency_ms": 460.5,
            "avg_latency_ms": 115.125,
            "error_count": 4,
            "by_model": [
                s.by_model["llama@2"].to_json(),
                s.by_model["whisper@1.0"].to_json(),
                s.by_model["whisper@1.1"].to_json(),
            ],
        },
        "errors": [e.to_json() for e in s.errors],
    }
    assert json.loads(json.dumps(s.export())) == s.export()
    assert s.export()["metrics"]["by_model"][0] == {
        "model_id": "llama",
        "version": "2",
        "call_count": 1,
        "total_latency_ms": 300.0,
        "avg_latency_ms": 300.0,
        "error_count": 1,
        "last_called": (T + 7) * 1000,
    }
    assert s.export()["errors"][1] == {
        "category": "network",
        "message": "Network connection failed",
        "count": 1,
        "first_seen": (T + 6) * 1000,
        "last_seen": (T + 6) * 1000,
        "model_id": None,
    }


def test_export_open_session_milliseconds_and_hardware() -> None:
    s = Session.from_event(started(T + 0.5))
    out = s.export()
    assert out["session"]["started_at"] == "2022-12-02T16:53:20.500Z"
    assert out["session"]["ended_at"] is None
    assert out["hardware"] is None
    assert out["metrics"]["by_model"] == []
    assert out["errors"] == []
    full = {
        "has_gpu": True,
        "gpu_type": "Adreno 740",
        "has_npu": True,
        "npu_type": "Hexagon",
        "memory_total_mb": 12288,
        "battery_level": 87,
        "thermal_state": "nominal",
        "platform": "android-14",
    }
    assert Session.from_event(started(hardware=full)).export()["hardware"] == full
    assert Session.from_event(started(hardware={})).export()["hardware"] == {
        "has_gpu": False,
        "gpu_type": "none",
        "has_npu": False,
        "npu_type": "none",
        "memory_total_mb": 0,
        "battery_level": 0,
        "thermal_state": "unknown",
        "platform": "unknown",
    }


def test_iso8601() -> None:
    assert iso8601_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso8601_ms(1_670_000_010_007) == "2022-12-02T16:53:30.007Z"


def test_schema_examples_aggregate() -> None:
    folder = SCHEMA_DIR / "examples" / "session_event" / "valid"
    names = ["session_started_with_hardware", "inference_recorded", "error_recorded_with_model",
             "error_recorded", "session_ended"]  # fmt: skip
    s = run([json.loads((folder / f"{n}.json").read_text()) for n in names])
    assert s.by_model["whisper-tiny@1.2.0"].error_count == 1
    assert [e.category for e in s.errors] == ["memory", "unknown"]
    assert s.export()["session"]["ended_at"] == "2022-12-02T17:53:20.500Z"


# ---- JSON --------------------------------------------------------------------------------


def test_json_round_trip_example() -> None:
    s = run(example_events())
    s.apply(inference(T + 20, "m", "1", 1))  # counted in events_after_end
    record = json.loads(json.dumps(s.to_json()))
    assert Session.from_json(record) == s
    assert Session.from_json(record).to_json() == s.to_json()


event_strategy = st.one_of(
    st.builds(
        inference,
        st.integers(T, T + 100),
        st.sampled_from(["a", "b"]),
        st.sampled_from(["1", "2"]),
        st.floats(0, 1e4, allow_nan=False) | st.integers(0, 10_000),
    ),
    st.builds(
        error,
        st.floats(T, T + 100),
        st.sampled_from(["load failed", "oom", "x", "HTTP 500"]),
        st.sampled_from([None, "a", "z"]),
    ),
    st.builds(started, st.integers(T, T + 100), hardware=st.just({"has_npu": True})),
    st.builds(ended, st.integers(T, T + 100)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(event_strategy, min_size=1, max_size=25), st.booleans())
def test_json_round_trip_random(events: list[dict[str, Any]], expire: bool) -> None:
    s = run(events)
    if expire:
        s.idle_expire(10**15, 60_000)
    record = json.loads(json.dumps(s.to_json()))
    assert Session.from_json(record) == s
    assert s.total_inferences == sum(m.call_count for m in s.by_model.values())
    assert s.error_count == sum(e.count for e in s.errors)
    assert s.total_inferences + s.error_count + s.events_after_end <= len(events)


GOOD = run(example_events()).to_json()


@pytest.mark.parametrize(
    "changes",
    [
        {"ended_by": "crash"},
        {"ended_by": None},
        {"ended_at_ms": -1},
        {"started_at_ms": 1.5},
        {"total_inferences": True},
        {"models_used": "whisper"},
        {"by_model": {"wrong@key": GOOD["by_model"]["llama@2"]}},
        {"by_model": {"llama@2": {**GOOD["by_model"]["llama@2"], "call_count": "1"}}},
        {"errors": [{**GOOD["errors"][0], "category": "cosmic_rays"}]},
        {"errors": {}},
        {"hardware": "gpu"},
        {"session_id": None},
        {"total_latency_ms": float("nan")},
    ],
)
def test_from_json_rejects_bad_records(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Session.from_json({**GOOD, **changes})


@pytest.mark.parametrize("key", sorted(GOOD))
def test_from_json_rejects_missing_fields(key: str) -> None:
    record = dict(GOOD)
    del record[key]
    with pytest.raises(ValueError, match=f"missing {key}"):
        Session.from_json(record)


def test_from_json_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError, match="unknown field"):
        Session.from_json({**GOOD, "surprise": 1})
