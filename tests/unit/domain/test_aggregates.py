"""ExecutionStats and RequestStats: hand-checked results, exact merges, exact state.

Window contract (DESIGN.md, "Event-time windows"): counts, sums, min, max and means equal an
offline recomputation exactly; percentiles are within the sketch's relative error. Merging
five 60 s windows must give exactly the 300 s window computed directly.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator

from streams.domain.aggregates import ExecutionStats, RequestStats

ROOT = Path(__file__).resolve().parents[3]
PROPS = settings(max_examples=100, deadline=None, derandomize=True)
SLACK = 1 + 1e-9

EXECUTION_KEYS = {
    "count",
    "success_count",
    "success_rate",
    "latency_min_ms",
    "latency_max_ms",
    "latency_avg_ms",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "quality_score_mean",
    "memory_mb_mean",
    "cpu_percent_mean",
}
REQUEST_KEYS = {
    "count",
    "status_2xx",
    "status_4xx",
    "status_5xx",
    "latency_min_ms",
    "latency_max_ms",
    "latency_avg_ms",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
}


def execution(latency: float, success: bool = True, **extra: float) -> dict[str, Any]:
    """A minimal engine_execution document (the aggregate reads only ``metrics``)."""
    return {
        "schema_version": 1,
        "trace_id": "t-1",
        "task_id": "task-1",
        "engine_id": "gpt-x",
        "timestamp": 1_670_000_000,
        "input": "hello",
        "output": "hi",
        "metrics": {"latency_ms": latency, "success": success, **extra},
    }


def served(latency: int, status: int) -> dict[str, Any]:
    return {
        "event": "RequestServed",
        "engine_id": "llm-gw-1",
        "timestamp": 1_670_000_400,
        "route": "/v1/chat/completions",
        "model": "llama-3-8b",
        "provider": "vllm",
        "latency_ms": latency,
        "status_code": status,
    }


def random_execution(rng: random.Random) -> dict[str, Any]:
    extra: dict[str, float] = {}
    if rng.random() < 0.7:
        extra["quality_score"] = rng.random()
    if rng.random() < 0.5:
        extra["memory_mb"] = rng.uniform(64, 8192)
    if rng.random() < 0.5:
        extra["cpu_percent"] = rng.choice([rng.uniform(0, 800), float(rng.randint(0, 100))])
    latency: float = rng.lognormvariate(5.0, 1.0) if rng.random() < 0.8 else rng.randint(0, 50)
    return execution(latency, rng.random() < 0.9, **extra)


def stats_of(events: list[dict[str, Any]]) -> ExecutionStats:
    s = ExecutionStats()
    for e in events:
        s.add(e)
    return s


def requests_of(events: list[dict[str, Any]]) -> RequestStats:
    s = RequestStats()
    for e in events:
        s.add(e)
    return s


def via_json(state: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(state))
    return loaded


# -- ExecutionStats -----------------------------------------------------------------------


def test_execution_result_hand_computed() -> None:
    s = stats_of(
        [
            execution(10, True, quality_score=0.5, memory_mb=256),
            execution(20, True, quality_score=1.0),
            execution(30.5, False),
            execution(40, True, cpu_percent=150.0),
        ]
    )
    r = s.result()
    assert set(r) == EXECUTION_KEYS
    assert r["count"] == 4
    assert r["success_count"] == 3
    assert r["success_rate"] == 0.75
    assert r["latency_min_ms"] == 10.0
    assert r["latency_max_ms"] == 40.0
    assert r["latency_avg_ms"] == 25.125
    # lower rank: p50 -> sorted[1] = 20; p95, p99 -> sorted[2] = 30.5
    assert r["latency_p50_ms"] == pytest.approx(20.0, rel=0.005)
    assert r["latency_p95_ms"] == pytest.approx(30.5, rel=0.005)
    assert r["latency_p99_ms"] == pytest.approx(30.5, rel=0.005)
    assert r["quality_score_mean"] == 0.75
    assert r["memory_mb_mean"] == 256.0
    assert r["cpu_percent_mean"] == 150.0
    assert all(isinstance(r[k], float) for k in EXECUTION_KEYS - {"count", "success_count"})


def test_execution_means_are_none_when_absent() -> None:
    r = stats_of([execution(42, True), execution(42, False)]).result()
    assert r["quality_score_mean"] is None
    assert r["memory_mb_mean"] is None
    assert r["cpu_percent_mean"] is None
    # constant latency: percentiles are clamped into [min, max], hence exact
    assert r["latency_p50_ms"] == r["latency_p99_ms"] == r["latency_avg_ms"] == 42.0
    assert r["success_rate"] == 0.5


def test_execution_empty_result() -> None:
    r = ExecutionStats().result()
    assert set(r) == EXECUTION_KEYS
    assert r["count"] == 0 and r["success_count"] == 0
    assert r["success_rate"] == 0.0
    for k in ("min", "max", "avg", "p50", "p95", "p99"):
        assert r[f"latency_{k}_ms"] == 0.0
    assert r["quality_score_mean"] is None
    assert r["memory_mb_mean"] is None
    assert r["cpu_percent_mean"] is None


def test_execution_means_are_exact() -> None:
    rng = random.Random(11)
    events = [random_execution(rng) for _ in range(3_000)]
    r = stats_of(events).result()

    def column(key: str) -> list[float]:
        return [e["metrics"][key] for e in events if key in e["metrics"]]

    latencies = column("latency_ms")
    assert r["count"] == len(events)
    assert r["success_count"] == sum(e["metrics"]["success"] for e in events)
    assert r["latency_avg_ms"] == math.fsum(latencies) / len(latencies)
    assert r["latency_min_ms"] == min(latencies)
    assert r["latency_max_ms"] == max(latencies)
    for key, out in (
        ("quality_score", "quality_score_mean"),
        ("memory_mb", "memory_mb_mean"),
        ("cpu_percent", "cpu_percent_mean"),
    ):
        values = column(key)
        assert r[out] == math.fsum(values) / len(values)
    ordered = sorted(latencies)
    for q, key in ((0.5, "latency_p50_ms"), (0.95, "latency_p95_ms"), (0.99, "latency_p99_ms")):
        exact = ordered[int(q * (len(ordered) - 1))]
        assert abs(r[key] - exact) <= 0.005 * exact * SLACK


@pytest.mark.parametrize(
    "bad",
    [
        execution(-1.0),
        execution(math.nan),
        execution(math.inf),
        execution(10, quality_score=1.5),
        execution(10, quality_score=math.nan),
        execution(10, memory_mb=-3),
        execution(10, cpu_percent=math.inf),
    ],
)
def test_execution_bad_event_raises_and_changes_nothing(bad: dict[str, Any]) -> None:
    s = stats_of([execution(5, quality_score=0.2, memory_mb=10, cpu_percent=1)])
    before = s.to_state()
    with pytest.raises(ValueError):
        s.add(bad)
    assert s.to_state() == before


def test_execution_missing_required_field_changes_nothing() -> None:
    s = stats_of([execution(5)])
    before = s.to_state()
    with pytest.raises(KeyError):
        s.add({"metrics": {"latency_ms": 3}})
    assert s.to_state() == before


def test_sixty_second_windows_merged_equal_the_300_second_window() -> None:
    rng = random.Random(300)
    start = 1_670_000_100  # a 300 s boundary
    events = []
    for _ in range(10_000):
        e = random_execution(rng)
        e["timestamp"] = start + rng.uniform(0, 300)
        events.append(e)
    minute: dict[int, ExecutionStats] = {}
    for e in events:
        minute.setdefault(int((e["timestamp"] - start) // 60), ExecutionStats()).add(e)
    assert sorted(minute) == [0, 1, 2, 3, 4]
    direct = stats_of(events)

    for order in ([0, 1, 2, 3, 4], [3, 0, 4, 1, 2]):
        view = ExecutionStats()
        for k in order:
            view.merge(minute[k])
        assert view == direct
        assert view.to_state() == direct.to_state()
        assert view.result() == direct.result()
        assert view.count == direct.count
        assert view.success_count == direct.success_count
        assert view.latency.value == direct.latency.value
        assert view.latency_min == direct.latency_min
        assert view.latency_max == direct.latency_max
        assert view.quality.value == direct.quality.value
        assert view.quality_count == direct.quality_count
        assert view.memory.value == direct.memory.value
        assert view.cpu.value == direct.cpu.value
        assert view.latency_sketch == direct.latency_sketch


@PROPS
@given(
    st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=40),
    st.lists(st.integers(0, 5), min_size=1, max_size=6),
)
def test_execution_merge_any_grouping_equals_direct(seeds: list[int], cuts: list[int]) -> None:
    events = [random_execution(random.Random(seed)) for seed in seeds]
    direct = stats_of(events)
    parts, rest = [], list(events)
    for k in cuts:
        parts.append(stats_of(rest[:k]))
        rest = rest[k:]
    parts.append(stats_of(rest))
    left = ExecutionStats()
    for p in parts:
        left.merge(p)
    right = ExecutionStats()
    for p in reversed(parts):
        right.merge(p)
    assert left == right == direct
    assert left.result() == right.result() == direct.result()


def test_execution_state_roundtrip_is_exact() -> None:
    rng = random.Random(5)
    for s in (
        ExecutionStats(),
        stats_of([execution(0)]),
        stats_of([execution(7, False, memory_mb=1)]),
        stats_of([random_execution(rng) for _ in range(2_000)]),
    ):
        back = ExecutionStats.from_state(via_json(s.to_state()))
        assert back == s
        assert back.to_state() == s.to_state()
        assert back.result() == s.result()
        assert s.copy() == s


def test_execution_state_is_compact() -> None:
    rng = random.Random(6)
    s = stats_of([random_execution(rng) for _ in range(10_000)])
    assert len(orjson.dumps(s.to_state())) < 4500
    assert orjson.dumps(ExecutionStats().to_state()) == (
        b'{"n":0,"ok":0,"lat":[],"lo":null,"hi":null,"sk":{"a":0.005,"z":0}}'
    )


def test_execution_state_and_result_bytes_are_unchanged() -> None:
    """Changelogs and records written before keep their exact bytes (key order included)."""
    s = stats_of(
        [
            execution(12.5, True, quality_score=0.1, memory_mb=300.5, cpu_percent=7.3),
            execution(40.25, False, quality_score=0.2),
            execution(0, True, cpu_percent=0.1),
        ]
    )
    assert orjson.dumps(s.to_state()) == (
        b'{"n":3,"ok":2,"lat":[52.75],"lo":0,"hi":40.25,'
        b'"sk":{"a":0.005,"z":1,"o":253,"s":[1,117,1]},'
        b'"q":[0.30000000000000004,-2.7755575615628914e-17],"qn":2,"mem":[300.5],"memn":1,'
        b'"cpu":[7.3999999999999995,3.608224830031759e-16],"cpun":2}'
    )
    assert orjson.dumps(s.result()) == (
        b'{"count":3,"success_count":2,"success_rate":0.6666666666666666,'
        b'"latency_min_ms":0.0,"latency_max_ms":40.25,"latency_avg_ms":17.583333333333332,'
        b'"latency_p50_ms":12.491001959116423,"latency_p95_ms":12.491001959116423,'
        b'"latency_p99_ms":12.491001959116423,"quality_score_mean":0.15000000000000002,'
        b'"memory_mb_mean":300.5,"cpu_percent_mean":3.6999999999999997}'
    )


def test_state_does_not_depend_on_when_it_was_read() -> None:
    """Sums fold their buffered values when read: reading between events (as the window
    agent does after each batch) changes no state, result or merge."""
    rng = random.Random(10)
    events = [random_execution(rng) for _ in range(3_000)]
    requests = [served(rng.randint(0, 9_000), rng.choice([200, 404, 500])) for _ in range(3_000)]
    for make, batch in ((ExecutionStats, events), (RequestStats, requests)):
        quiet, read = make(), make()
        for k, e in enumerate(batch):
            quiet.add(e)
            read.add(e)
            if rng.random() < 0.05:
                read.to_state()
            if k % 500 == 0:
                read.result()
        assert orjson.dumps(read.to_state()) == orjson.dumps(quiet.to_state())
        assert read.result() == quiet.result()
        halves = make(), make()
        for k, e in enumerate(batch):
            halves[k % 2].add(e)
        halves[1].to_state()
        halves[0].merge(halves[1])
        assert orjson.dumps(halves[0].to_state()) == orjson.dumps(quiet.to_state())


def test_execution_merge_requires_the_same_accuracy() -> None:
    with pytest.raises(ValueError):
        ExecutionStats(0.005).merge(ExecutionStats(0.01))


# -- RequestStats -------------------------------------------------------------------------


def test_request_status_classes() -> None:
    codes = [200, 204, 299, 301, 404, 499, 500, 503, 100]
    s = requests_of([served(10 * (i + 1), c) for i, c in enumerate(codes)])
    r = s.result()
    assert set(r) == REQUEST_KEYS
    assert r["count"] == 9
    assert (r["status_2xx"], r["status_4xx"], r["status_5xx"]) == (3, 2, 2)
    assert r["latency_min_ms"] == 10.0
    assert r["latency_max_ms"] == 90.0
    assert r["latency_avg_ms"] == 50.0
    assert r["latency_p50_ms"] == pytest.approx(50.0, rel=0.005)  # sorted[floor(0.5 * 8)]
    assert r["latency_p99_ms"] == pytest.approx(80.0, rel=0.005)  # sorted[floor(0.99 * 8)]


def test_request_empty_result() -> None:
    r = RequestStats().result()
    assert set(r) == REQUEST_KEYS
    assert r["count"] == r["status_2xx"] == r["status_4xx"] == r["status_5xx"] == 0
    assert r["latency_avg_ms"] == r["latency_p99_ms"] == 0.0


def test_request_bad_event_raises_and_changes_nothing() -> None:
    s = requests_of([served(5, 200)])
    before = s.to_state()
    with pytest.raises(ValueError):
        s.add(served(-1, 200))
    with pytest.raises(TypeError):
        s.add({**served(5, 200), "status_code": "200"})
    with pytest.raises(KeyError):
        s.add({"latency_ms": 5})
    assert s.to_state() == before


def test_request_merge_and_roundtrip() -> None:
    rng = random.Random(8)
    events = [
        served(rng.randint(0, 30_000), rng.choice([200, 201, 302, 404, 429, 500, 503]))
        for _ in range(5_000)
    ]
    direct = requests_of(events)
    a, b, c = requests_of(events[:1000]), requests_of(events[1000:1001]), requests_of(events[1001:])
    for order in ((a, b, c), (c, b, a), (b, c, a)):
        view = RequestStats()
        for part in order:
            view.merge(part)
        assert view == direct
        assert view.to_state() == direct.to_state()
        assert view.result() == direct.result()
    back = RequestStats.from_state(via_json(direct.to_state()))
    assert back == direct and back.result() == direct.result()
    assert RequestStats.from_state(via_json(RequestStats().to_state())) == RequestStats()
    assert direct.result()["latency_avg_ms"] == math.fsum(e["latency_ms"] for e in events) / 5000


# -- the results fit the window record ----------------------------------------------------


def test_results_validate_as_window_stats() -> None:
    schema = json.loads((ROOT / "schemas" / "v1" / "window_stats.json").read_text())
    validator = Draft7Validator(schema)
    window = {
        "engine_id": "gpt-x",
        "window_start": 1_670_000_100,
        "window_end": 1_670_000_160,
        "window_start_iso": "2022-12-02T16:55:00Z",
        "window_end_iso": "2022-12-02T16:56:00Z",
        "window_size_s": 60,
        "revision": 0,
        "late_events": 0,
    }
    rng = random.Random(9)
    for s in (ExecutionStats(), stats_of([random_execution(rng) for _ in range(100)])):
        validator.validate({**window, "kind": "engine", **s.result()})
    for r in (RequestStats(), requests_of([served(12, 200), served(30, 500)])):
        result = r.result()
        record = {**window, "kind": "route", "model": "m", "route": "/r", **result}
        record.update(success_count=0, success_rate=0.0)  # not produced by RequestStats
        validator.validate(record)
