"""Window metrics through real worker processes and a real broker.

200,000 executions of 60 engines on 4 partitions, with historical timestamps (a
replay, as fast as the broker allows), out of order within the lateness, about 1%
after the grace period and 0.2% after the retention. The emitted records must equal
an offline recomputation (tests/integration/windows_input.py): counts, sums, min and
max exactly, percentiles within the sketch's bound — uninterrupted, after a kill -9
and restart, and with two workers sharing the partitions.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.validation import default_registry
from streams.kafka.admin import ensure_topics
from tests.integration import windows_input as wi
from tests.integration.kafka_io import produce_all, read_until
from tests.worker_process import WorkerProcess, free_port

pytestmark = pytest.mark.integration

EVENTS = 200_000
ENGINES = 60
PARTITIONS = 4
SKETCH_BOUND = 0.005  # QuantileSketch's default relative accuracy
EXACT = ("count", "success_count", "success_rate", "latency_min_ms", "latency_max_ms",
         "latency_avg_ms", "quality_score_mean", "memory_mb_mean", "cpu_percent_mean",
         "window_end", "late_events")
QUANTILES = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")


@pytest.fixture(scope="module")
def workload() -> dict[int, list[dict]]:
    return wi.generate(seed=11, events=EVENTS, engines=ENGINES, partitions=PARTITIONS)


@pytest.fixture(scope="module")
def expected(workload: dict[int, list[dict]]) -> wi.Expected:
    return wi.recompute(workload)


def window_env(isolated_env: dict[str, str], retention: float = wi.RETENTION) -> dict[str, str]:
    return {
        **isolated_env,
        "ENGINESTREAM_PARTITIONS": str(PARTITIONS),
        "ENGINESTREAM_WINDOW_SIZES": ",".join(map(str, wi.SIZES)),
        "ENGINESTREAM_WINDOW_LATENESS": str(wi.LATENESS),
        "ENGINESTREAM_WINDOW_GRACE": str(wi.GRACE),
        "ENGINESTREAM_WINDOW_RETENTION": str(retention),
        "ENGINESTREAM_WINDOW_IDLE_TIMEOUT": "3",
    }


def publish(settings: Settings, workload: dict[int, list[dict]]) -> None:
    """Messages of 100 events on the typed topic, each partition in its order."""
    topic = TopicNames(settings.topic_prefix).typed["engine_execution"]
    messages = []
    for partition, events in workload.items():
        for i in range(0, len(events), 100):
            messages.append((topic, orjson.dumps(events[i : i + 100]), [], None, partition))
    asyncio.run(produce_all(settings.bootstrap_servers, messages))


def collect(settings: Settings, expected: wi.Expected, timeout: float = 300) -> list[Any]:
    names = TopicNames(settings.topic_prefix)

    def complete(records: list[Any]) -> bool:
        windows = sum(1 for r in records if r.topic == names.metrics_windows)
        too_late = sum(1 for r in records if r.topic == names.dead_letter)
        return windows >= len(expected.records) and too_late >= expected.too_late

    return asyncio.run(
        read_until(
            settings.bootstrap_servers,
            [names.metrics_windows, names.dead_letter],
            complete,
            timeout=timeout,
        )
    )


def check_against_offline(settings: Settings, records: list[Any], expected: wi.Expected) -> None:
    names = TopicNames(settings.topic_prefix)
    registry = default_registry()
    got: dict[tuple[str, int, int, int], dict[str, Any]] = {}
    for record in records:
        if record.topic != names.metrics_windows:
            continue
        doc = orjson.loads(record.value)
        assert registry.check("window_stats", doc) is None, doc
        key = (doc["engine_id"], doc["window_size_s"], doc["window_start"], doc["revision"])
        assert key not in got, f"emitted twice: {key}"
        got[key] = doc
    assert set(got) == set(expected.records)
    for key, want in expected.records.items():
        doc = got[key]
        for name in EXACT:
            assert doc[name] == want[name], (key, name, doc[name], want[name])
        for name in QUANTILES:
            assert abs(doc[name] - want[name]) <= SKETCH_BOUND * want[name] + 1e-9, (
                key, name, doc[name], want[name])
    letters = [orjson.loads(r.value) for r in records if r.topic == names.dead_letter]
    assert all(letter["reason"] == "too_late" for letter in letters)
    ids = [letter["id"] for letter in letters]
    assert len(ids) == len(set(ids)) == expected.too_late


def test_finals_equal_offline_recomputation(
    isolated_env: dict[str, str], tmp_path: Path, workload: dict, expected: wi.Expected
) -> None:
    env = window_env(isolated_env)
    settings = Settings.from_env(env)
    asyncio.run(ensure_topics(settings))
    publish(settings, workload)
    worker = WorkerProcess(env, log_path=tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        records = collect(settings, expected)
    finally:
        worker.stop()
    assert sum(1 for k in expected.records if k[3] > 0) > 1000, "late revisions expected"
    assert expected.too_late > 100
    check_against_offline(settings, records, expected)


def test_kill_9_and_restart_gives_the_same_finals(
    isolated_env: dict[str, str], tmp_path: Path, workload: dict, expected: wi.Expected
) -> None:
    env = window_env(isolated_env)
    settings = Settings.from_env(env)
    names = TopicNames(settings.topic_prefix)
    asyncio.run(ensure_topics(settings))
    publish(settings, workload)
    log = tmp_path / "worker.log"
    first = WorkerProcess(env, log_path=log).start()
    try:
        first.wait_ready()
        share = random.Random().uniform(0.15, 0.6)
        asyncio.run(
            read_until(
                settings.bootstrap_servers,
                [names.metrics_windows],
                lambda rs: len(rs) >= share * len(expected.records),
                timeout=240,
            )
        )
    finally:
        first.kill()
    second = WorkerProcess(env, log_path=log).start()
    try:
        second.wait_ready()
        records = collect(settings, expected)
    finally:
        second.stop()
    check_against_offline(settings, records, expected)


def test_two_workers_and_their_views(
    isolated_env: dict[str, str], tmp_path: Path, workload: dict
) -> None:
    # A retention longer than the replay's distance to now keeps every window in
    # state, so the views can be checked after the idle partitions closed them.
    retention = 10.0**9
    expected = wi.recompute(workload, retention=retention)
    env = window_env(isolated_env, retention=retention)
    settings = Settings.from_env(env)
    asyncio.run(ensure_topics(settings))
    publish(settings, workload)
    other_env = {**env, "ENGINESTREAM_WEB_PORT": str(free_port())}
    workers = [
        WorkerProcess(env, log_path=tmp_path / "a.log").start(),
        WorkerProcess(other_env, log_path=tmp_path / "b.log").start(),
    ]
    try:
        for worker in workers:
            worker.wait_ready()
        records = collect(settings, expected)
        check_against_offline(settings, records, expected)
        assert all(w.proc is not None and w.proc.poll() is None for w in workers)
        check_views(workers, expected)
    finally:
        for worker in workers:
            worker.stop()


def latest(expected: wi.Expected, engine: str, size: int) -> dict[int, dict[str, Any]]:
    found: dict[int, tuple[int, dict[str, Any]]] = {}
    for (e, s, start, revision), doc in expected.records.items():
        if e == engine and s == size and (start not in found or found[start][0] < revision):
            found[start] = (revision, doc)
    return {start: doc for start, (_, doc) in found.items()}


def check_views(workers: list[WorkerProcess], expected: wi.Expected) -> None:
    engine = "engine-007"
    want = latest(expected, engine, 300)
    answers = []
    for worker in workers:
        status, body = worker.get_json("/engines")
        assert status == 200
        assert isinstance(body, dict)
        assert len(body["engines"]) == ENGINES
        status, body = worker.get_json(f"/engines/{engine}/windows?size=300")
        assert status == 200, body
        assert isinstance(body, dict)
        got = {w["window_start"]: w for w in body["windows"]}
        assert set(got) == set(want)
        for start, doc in want.items():
            assert got[start]["count"] == doc["count"]
            assert got[start]["latency_max_ms"] == doc["latency_max_ms"]
            assert got[start]["final"] is True
        answers.append(body["windows"])
        # 600 s is a multiple of 300 s: merged from the sketches.
        status, body = worker.get_json(f"/engines/{engine}/windows?size=600")
        assert status == 200
        assert isinstance(body, dict)
        merged = {w["window_start"]: w["count"] for w in body["windows"]}
        direct: dict[int, int] = {}
        for start, doc in want.items():
            direct[start - start % 600] = direct.get(start - start % 600, 0) + doc["count"]
        assert merged == direct
        status, body = worker.get_json(f"/engines/{engine}/windows?size=7")
        assert status == 400
    assert answers[0] == answers[1]
