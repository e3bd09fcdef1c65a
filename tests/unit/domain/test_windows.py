"""Window assignment, watermark, finals, revisions, retention, idleness and
idempotence of streams.domain.windows — pure logic, no broker."""

from __future__ import annotations

import math
import random
from typing import Any

import orjson
import pytest

from streams.domain.aggregates import ExecutionStats
from streams.domain.windows import (
    EXECUTIONS,
    REQUESTS,
    Clock,
    Outcome,
    PartitionWindows,
    Window,
    WindowConfig,
    decode_key,
    emission_id,
    encode_key,
    iso,
    window_start,
)


def execution(engine: str, ts: float, latency: float = 10.0, ok: bool = True) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "trace_id": f"t-{ts}",
        "task_id": "x",
        "engine_id": engine,
        "timestamp": ts,
        "input": "",
        "output": "",
        "metrics": {"latency_ms": latency, "success": ok},
    }


def feed(
    windows: PartitionWindows, events: list[dict[str, Any]], start_offset: int = 0
) -> Outcome:
    out = Outcome()
    for offset, event in enumerate(events, start=start_offset):
        windows.apply((offset, 0), event, now_wall=1000.0, out=out)
    return out


@pytest.mark.parametrize(
    ("ts", "size", "start"),
    [(0, 60, 0), (59.999, 60, 0), (60, 60, 60), (60.0001, 60, 60), (119.5, 60, 60),
     (299.99, 300, 0), (300, 300, 300), (1670000000, 60, 1669999980),
     (1670000000.5, 300, 1669999800)],
)
def test_window_start_boundaries(ts: float, size: int, start: int) -> None:
    assert window_start(ts, size) == start
    assert start <= ts < start + size


def test_iso_times() -> None:
    assert iso(0) == "1970-01-01T00:00:00Z"
    assert iso(1670000000) == "2022-12-02T16:53:20Z"
    assert iso(1.5) == "1970-01-01T00:00:01.500Z"
    for _ in range(2):  # answers are cached: the same, whichever form of a time came first
        assert iso(60) == iso(60.0) == "1970-01-01T00:01:00Z"
        assert iso(60.25) == "1970-01-01T00:01:00.250Z"


def test_key_round_trip_with_awkward_engine_ids() -> None:
    key = (EXECUTIONS, 'a|b"c', "", "", 60, 120)
    assert decode_key(encode_key(key)) == key


def test_final_is_emitted_once_when_watermark_passes_end_plus_grace() -> None:
    cfg = WindowConfig(sizes=(60,), allowed_lateness_s=5, grace_s=10)
    w = PartitionWindows(EXECUTIONS, cfg)
    out = feed(w, [execution("e", 10), execution("e", 50)])
    assert out.emitted == []
    # watermark = 74 - 5 = 69 < 60 + 10: not yet
    out = feed(w, [execution("e", 74)], start_offset=2)
    assert out.emitted == []
    # watermark = 75 - 5 = 70 = end + grace: final
    out = feed(w, [execution("e", 75)], start_offset=3)
    assert [r["window_start"] for r in out.emitted] == [0]
    final = out.emitted[0]
    assert (final["revision"], final["count"], final["late_events"]) == (0, 2, 0)
    assert final["window_end"] == 60 and final["window_end_iso"] == "1970-01-01T00:01:00Z"
    # further progress does not emit it again
    out = feed(w, [execution("e", 500)], start_offset=4)
    assert [r["window_start"] for r in out.emitted] == [60]


def test_out_of_order_within_lateness_is_not_late() -> None:
    cfg = WindowConfig(sizes=(60,), allowed_lateness_s=30, grace_s=0)
    w = PartitionWindows(EXECUTIONS, cfg)
    out = feed(w, [execution("e", 70), execution("e", 55), execution("e", 89), execution("e", 91)])
    # watermark 91 - 30 = 61 >= 60: window 0 final with the out-of-order event in it
    assert [(r["window_start"], r["count"], r["late_events"]) for r in out.emitted] == [(0, 1, 0)]


def test_late_event_emits_next_revision_with_right_counts() -> None:
    cfg = WindowConfig(sizes=(60,), allowed_lateness_s=0, grace_s=0, retention_s=600)
    w = PartitionWindows(EXECUTIONS, cfg)
    out = feed(w, [execution("e", 1, latency=5), execution("e", 61)])
    assert [(r["window_start"], r["revision"], r["count"]) for r in out.emitted] == [(0, 0, 1)]
    out = feed(w, [execution("e", 2, latency=7)], start_offset=2)
    assert len(out.emitted) == 1
    revision = out.emitted[0]
    assert (revision["revision"], revision["count"], revision["late_events"]) == (1, 2, 1)
    assert revision["latency_max_ms"] == 7
    out = feed(w, [execution("e", 3, latency=1)], start_offset=3)
    assert (out.emitted[0]["revision"], out.emitted[0]["count"]) == (2, 3)
    assert out.too_late == []


def test_after_retention_events_are_too_late_and_change_nothing() -> None:
    cfg = WindowConfig(sizes=(60,), allowed_lateness_s=0, grace_s=0, retention_s=100)
    w = PartitionWindows(EXECUTIONS, cfg)
    feed(w, [execution("e", 1), execution("e", 161)])
    # watermark 161 >= 60 + 0 + 100: window 0 is past retention
    out = feed(w, [execution("e", 2)], start_offset=2)
    assert out.emitted == []
    assert [(pos, ev["timestamp"]) for pos, ev in out.too_late] == [((2, 0), 2)]


def test_expired_windows_are_dropped_from_state() -> None:
    cfg = WindowConfig(sizes=(60,), allowed_lateness_s=0, grace_s=0, retention_s=100)
    w = PartitionWindows(EXECUTIONS, cfg)
    feed(w, [execution("e", 1)])
    w.take_changes()
    feed(w, [execution("e", 400)], start_offset=1)
    changed, deleted = w.take_changes()
    assert [k[5] for k in deleted] == [0]
    assert all(k[5] != 0 for k in w.windows)
    assert [window.key[5] for window in changed] == [360]


def test_idle_partition_follows_wall_clock_after_timeout() -> None:
    cfg = WindowConfig(sizes=(60,), allowed_lateness_s=5, idle_timeout_s=30)
    w = PartitionWindows(EXECUTIONS, cfg)
    out = Outcome()
    w.apply((0, 0), execution("e", 1_000_000), now_wall=2_000_000.0, out=out)
    w.advance_idle(2_000_029.0, out)
    assert out.emitted == []
    w.advance_idle(2_000_030.0, out)
    assert [r["window_start"] for r in out.emitted] == [999_960]
    assert w.clock.watermark == 2_000_030.0 - 5


def test_sizes_60_and_300_and_merge_equals_direct() -> None:
    cfg = WindowConfig(sizes=(60, 300), allowed_lateness_s=0)
    w = PartitionWindows(EXECUTIONS, cfg)
    rng = random.Random(3)
    events = [execution("e", t + rng.random(), latency=rng.lognormvariate(3, 1))
              for t in range(0, 600)]
    out = feed(w, events)
    finals = {(r["window_size_s"], r["window_start"]): r for r in out.emitted}
    assert (300, 0) in finals and all((60, s) in finals for s in range(0, 300, 60))
    merged = ExecutionStats()
    for start in range(0, 300, 60):
        part = w.windows[(EXECUTIONS, "e", "", "", 60, start)].stats
        merged.merge(part)
    direct = w.windows[(EXECUTIONS, "e", "", "", 300, 0)].stats
    assert merged.to_state() == direct.to_state()
    assert finals[(300, 0)]["count"] == sum(finals[(60, s)]["count"] for s in range(0, 300, 60))


def test_request_windows_are_per_model_and_route() -> None:
    cfg = WindowConfig(sizes=(60,), allowed_lateness_s=0)
    w = PartitionWindows(REQUESTS, cfg)
    out = Outcome()
    base = {"event": "RequestServed", "engine_id": "e", "provider": "p"}
    for i, (model, route, code) in enumerate(
        [("m1", "/a", 200), ("m1", "/a", 503), ("m2", "/a", 404), ("m1", "/b", 200)]
    ):
        event = {**base, "timestamp": 10 + i, "model": model, "route": route,
                 "latency_ms": 10 * (i + 1), "status_code": code}
        w.apply((i, 0), event, 0.0, out)
    w.apply((9, 0), {**base, "timestamp": 100, "model": "m1", "route": "/a",
                     "latency_ms": 1, "status_code": 200}, 0.0, out)
    by_key = {(r["model"], r["route"]): r for r in out.emitted}
    assert set(by_key) == {("m1", "/a"), ("m2", "/a"), ("m1", "/b")}
    m1a = by_key[("m1", "/a")]
    assert (m1a["count"], m1a["status_2xx"], m1a["status_5xx"], m1a["success_rate"]) == (
        2, 1, 1, 0.5)
    assert by_key[("m2", "/a")]["status_4xx"] == 1


def run_uninterrupted(cfg: WindowConfig, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    w = PartitionWindows(EXECUTIONS, cfg)
    return feed(w, events).emitted


def persist(w: PartitionWindows, store: dict[bytes, bytes], clock_too: bool,
            cut: int | None) -> None:
    """Write the changes as the agent does (windows, then the clock), possibly cut short
    after `cut` writes, as a crash mid-write would."""
    changed, deleted = w.take_changes()
    writes: list[tuple[bytes, bytes | None]] = [
        (encode_key(win.key).encode(), orjson.dumps(win.to_state())) for win in changed
    ] + [(encode_key(k).encode(), None) for k in deleted]
    if clock_too:
        writes.append((b"clock", orjson.dumps(w.clock.to_state())))
    for key, value in writes[:cut]:
        if value is None:
            store.pop(key, None)
        else:
            store[key] = value


def restore(cfg: WindowConfig, store: dict[bytes, bytes]) -> PartitionWindows:
    clock = Clock.from_state(orjson.loads(store[b"clock"])) if b"clock" in store else Clock()
    w = PartitionWindows(EXECUTIONS, cfg, clock)
    w.restore({
        decode_key(k.decode()): Window.from_state(decode_key(k.decode()), orjson.loads(v))
        for k, v in store.items() if k != b"clock"
    })
    return w


@pytest.mark.parametrize("batch", [1, 7, 100, 5000])
def test_changelog_states_do_not_depend_on_the_batch_size(batch: int) -> None:
    """Aggregates fold buffered values when their state is written: how often that
    happens changes no byte of the final states or of the records."""
    rng = random.Random(batch)
    cfg = WindowConfig(sizes=(60, 300), allowed_lateness_s=10, retention_s=100_000)
    events = []
    for k in range(3000):
        event = execution(f"e{rng.randrange(4)}", k * 0.4 - rng.uniform(0, 15),
                          latency=rng.lognormvariate(3, 1), ok=rng.random() < 0.9)
        event["metrics"].update(memory_mb=rng.uniform(0, 1e4), quality_score=rng.random())
        events.append(event)
    expected_records = run_uninterrupted(cfg, events)
    everything = PartitionWindows(EXECUTIONS, cfg)
    feed(everything, events)
    expected = {k: orjson.dumps(win.to_state()) for k, win in everything.windows.items()}

    w = PartitionWindows(EXECUTIONS, cfg)
    store: dict[bytes, bytes] = {}
    records: list[dict[str, Any]] = []
    for start in range(0, len(events), batch):
        records += feed(w, events[start: start + batch], start_offset=start).emitted
        persist(w, store, clock_too=False, cut=None)
    assert records == expected_records
    assert store == {encode_key(k).encode(): v for k, v in expected.items()}


@pytest.mark.parametrize("seed", range(6))
def test_crash_at_any_point_and_redelivery_give_the_same_finals(seed: int) -> None:
    """Batches are persisted after each batch; a crash cuts a batch's writes anywhere
    and re-delivers from the last committed batch. Emissions already made are known
    (the agent reads them back from the output partition) and filtered."""
    rng = random.Random(seed)
    cfg = WindowConfig(sizes=(60, 300), allowed_lateness_s=20, grace_s=5, retention_s=400)
    events = []
    t = 0.0
    for _ in range(1500):
        t += rng.expovariate(3.0)
        skew = rng.uniform(0, 25) if rng.random() < 0.9 else rng.uniform(30, 600)
        events.append(execution(f"e{rng.randrange(3)}", max(0.0, t - skew),
                                latency=rng.lognormvariate(3, 0.7), ok=rng.random() < 0.9))
    expected = run_uninterrupted(cfg, events)
    assert any(r["revision"] > 0 for r in expected), "the input should have late events"

    store: dict[bytes, bytes] = {}
    emitted: list[dict[str, Any]] = []
    committed = 0  # offset to resume from
    w = restore(cfg, store)
    position = 0
    batch = 50
    crashes = 0
    while position < len(events):
        out = Outcome()
        chunk = events[position: position + batch]
        for offset, event in enumerate(chunk, start=position):
            w.apply((offset, 0), event, 1000.0, out)
        seen = {emission_id(r) for r in emitted}
        emitted += [r for r in out.emitted if emission_id(r) not in seen]
        if rng.random() < 0.3:  # crash while persisting this batch, then restart
            persist(w, store, clock_too=rng.random() < 0.5, cut=rng.randrange(0, 40))
            crashes += 1
            w = restore(cfg, store)
            position = committed if rng.random() < 0.5 else max(0, committed - batch)
            continue
        persist(w, store, clock_too=True, cut=None)
        position += len(chunk)
        committed = position
    assert crashes > 0
    assert emitted == expected


def test_clock_state_round_trip_with_infinities() -> None:
    clock = Clock()
    assert Clock.from_state(orjson.loads(orjson.dumps(clock.to_state()))) == clock
    clock = Clock(12.5, 7.5, 99.0)
    assert Clock.from_state(orjson.loads(orjson.dumps(clock.to_state()))) == clock
    assert math.isinf(Clock().watermark)


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        WindowConfig(sizes=())
    with pytest.raises(ValueError):
        WindowConfig(sizes=(0,))
    with pytest.raises(ValueError):
        WindowConfig(grace_s=-1)


# --- event time a client cannot break ---------------------------------------------

MONTH_AGO = 1_699_999_980.0  # a minute boundary
NOW_WALL = MONTH_AGO + 30 * 86400


def test_partition_that_never_had_an_event_does_not_follow_the_wall_clock() -> None:
    windows = PartitionWindows(EXECUTIONS, WindowConfig(idle_timeout_s=1.0))
    out = Outcome()
    windows.advance_idle(NOW_WALL, out)
    assert windows.clock.watermark == -math.inf
    assert not windows.has_events


def test_history_replayed_into_a_fresh_partition_is_windowed_not_late() -> None:
    config = WindowConfig(idle_timeout_s=1.0, allowed_lateness_s=0.0)
    windows = PartitionWindows(EXECUTIONS, config)
    out = Outcome()
    windows.advance_idle(NOW_WALL, out)  # a worker started long before the replay
    for offset in range(120):
        windows.apply((offset, 0), execution("e", MONTH_AGO + offset), NOW_WALL, out)
    assert out.too_late == [] and out.future == []
    assert [r["count"] for r in out.emitted] == [60]  # the first minute is final
    # Once the replayed partition is idle, its last window closes as well.
    windows.advance_idle(NOW_WALL + 2.0, out)
    assert [r["count"] for r in out.emitted] == [60, 60]


def test_event_from_the_future_is_refused_and_never_moves_the_watermark() -> None:
    config = WindowConfig(allowed_lateness_s=0.0, max_future_skew_s=300.0)
    windows = PartitionWindows(EXECUTIONS, config)
    out = Outcome()
    windows.apply((0, 0), execution("e", NOW_WALL - 100), NOW_WALL, out)
    mark = windows.clock.watermark
    for ts in (NOW_WALL + 301, NOW_WALL * 1000, math.inf, math.nan):
        windows.apply((1, 0), execution("e", ts), NOW_WALL, out)
    assert len(out.future) == 4
    assert windows.clock.watermark == mark
    # What comes after is windowed as if the future events were never sent.
    windows.apply((2, 0), execution("e", NOW_WALL - 90), NOW_WALL, out)
    assert out.too_late == []
    assert sum(w.stats.count for w in windows.windows.values()) == 2
    windows.apply((3, 0), execution("e", NOW_WALL + 299), NOW_WALL, out)
    assert len(out.future) == 4  # within the skew: taken


@pytest.mark.parametrize(
    "broken",
    [
        {"metrics": {"latency_ms": -1.0, "success": True}},
        {"metrics": {"latency_ms": 5.0, "success": True, "memory_mb": -3}},
        {"metrics": {"success": True}},
        {"timestamp": "soon"},
        {"engine_id": None},
    ],
)
def test_a_bad_event_raises_and_changes_nothing(broken: dict[str, Any]) -> None:
    windows = PartitionWindows(EXECUTIONS, WindowConfig(sizes=(60, 300)))
    out = feed(windows, [execution("e", 10.0)])
    before = {k: w.to_state() for k, w in windows.windows.items()}
    windows.take_changes()
    event = {**execution("e", 70.0), **broken}
    with pytest.raises((ValueError, KeyError, TypeError)):
        windows.apply((1, 0), event, 1000.0, out)
    assert {k: w.to_state() for k, w in windows.windows.items()} == before
    assert windows.take_changes() == ([], [])
