"""History replayed into a worker that has seen nothing newer is windowed, not late.

The worker starts on empty topics and stays idle for longer than its idle timeout
(a fresh worker once let every never-used partition follow the wall clock at that
point, and everything replayed afterwards was a `too_late` dead letter). Then last
month's executions go through `enginestream replay` into engine.ingest, the router
and the window agent; every window record must equal an offline recomputation over
the executions as the window agent read them (the typed topic, in offset order).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.kafka.admin import ensure_topics
from tests.integration import windows_input as wi
from tests.integration.kafka_io import read_until
from tests.integration.test_windows_end_to_end import (
    PARTITIONS,
    check_against_offline,
    collect,
    window_env,
)
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

EVENTS = 20_000
IDLE_TIMEOUT_S = 3.0


def executions_as_read(settings: Settings) -> dict[int, list[dict[str, Any]]]:
    """engine.executions as the window agent reads it: per partition, in offset order."""
    topic = TopicNames(settings.topic_prefix).typed["engine_execution"]

    def count(records: list[Any]) -> int:
        return sum(len(orjson.loads(r.value)) if r.value[:1] == b"[" else 1 for r in records)

    records = asyncio.run(
        read_until(settings.bootstrap_servers, [topic], lambda rs: count(rs) >= EVENTS, 180)
    )
    per_partition: dict[int, list[dict[str, Any]]] = {p: [] for p in range(PARTITIONS)}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        doc = orjson.loads(record.value)
        per_partition[record.partition].extend(doc if isinstance(doc, list) else [doc])
    assert sum(map(len, per_partition.values())) == EVENTS
    return per_partition


def test_history_replayed_into_an_idle_fresh_worker_is_windowed(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**window_env(isolated_env), "ENGINESTREAM_WINDOW_IDLE_TIMEOUT": str(IDLE_TIMEOUT_S)}
    settings = Settings.from_env(env)
    asyncio.run(ensure_topics(settings))
    history = wi.generate(seed=5, events=EVENTS, engines=20, partitions=PARTITIONS)
    # In the order they were generated (trace ids t-<seed>-<n>).
    lines = sorted((e for events in history.values() for e in events),
                   key=lambda e: int(e["trace_id"].rsplit("-", 1)[1]))  # fmt: skip
    source = tmp_path / "last-month.jsonl"
    source.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in lines))

    worker = WorkerProcess(env, log_path=tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        # The scenario itself: the worker's partitions sit idle past the idle timeout,
        # with the window agent's timer running, before any history arrives.
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 2 * IDLE_TIMEOUT_S + 1:
            status, body = worker.get_json("/windows/stats")
            assert status == 200 and isinstance(body, dict)
            time.sleep(0.5)
        assert body["windows"]["events_in"] == 0
        replay = subprocess.run(
            [sys.executable, "-m", "streams.cli", "replay", str(source),
             "--type", "engine_execution"],
            env={**worker.env}, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert replay.returncode == 0, replay.stderr
        as_read = executions_as_read(settings)
        expected = wi.recompute(as_read)
        records = collect(settings, expected)
    finally:
        worker.stop()
    assert len(expected.records) > 1000
    check_against_offline(settings, records, expected)
