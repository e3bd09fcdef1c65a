"""Inputs that once stopped a worker, against a real worker and a real broker.

Each class of poison (nesting, size after decompression, numbers out of range,
event time from the future, and garbage written straight to the typed topics that
the downstream agents read) is published between valid events. Each must become
exactly one dead letter per agent that reads it, with the right reason; the events
around it must be processed; and the worker must never exit, also after a restart
that delivers everything again.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections import Counter
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest

from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.avro_codec import load_avro_schemas
from streams.durable.filesink import read_lines
from streams.kafka.admin import ensure_topics
from tests.integration.kafka_io import produce_all, read_until
from tests.worker_process import WorkerProcess, free_port

pytestmark = pytest.mark.integration

EXECUTION_HEADER = [("event-type", b"engine_execution")]


def execution(i: int, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema_version": 1, "trace_id": f"t-{i}", "task_id": "task", "engine_id":
        f"engine-{i % 7}", "timestamp": time.time() - 600 + i * 0.01, "input": "q",
        "output": "a", "metrics": {"latency_ms": 10.0 + i % 50, "success": True},
    }  # fmt: skip
    doc.update(changes)
    return doc


def with_raw(doc: dict[str, Any], field: str, raw: bytes) -> bytes:
    marker = "\x00MARK\x00"
    return orjson.dumps({**doc, field: marker}).replace(orjson.dumps(marker), raw)


def batch(*parts: bytes) -> bytes:
    return b"[" + b",".join(parts) + b"]"


def avro_bomb() -> bytes:
    buf = io.BytesIO()
    event = execution(0, input="a" * 30_000_000)
    fastavro.writer(buf, load_avro_schemas()["engine_execution"], [event], codec="deflate")
    return buf.getvalue()


def build(names: TopicNames) -> tuple[list[tuple[Any, ...]], int, Counter[tuple[str, str]]]:
    """The messages to publish, the valid executions among them, and the dead letters
    expected by (agent, reason)."""
    valid = 0

    def good() -> bytes:
        nonlocal valid
        valid += 1
        return orjson.dumps(execution(valid))

    ingest = names.ingest
    deep = b"[" * 300 + b"1" + b"]" * 300
    messages: list[tuple[Any, ...]] = [(ingest, batch(*(good() for _ in range(50))),
                                        EXECUTION_HEADER, None)]
    poison = [
        # nesting: a batch element, and a field of a single event
        (ingest, batch(good(), deep, good()), EXECUTION_HEADER, None),
        (ingest, with_raw(execution(9000), "input", deep), EXECUTION_HEADER, None),
        # size after decompression
        (ingest, avro_bomb(), [], None),
        # numbers out of range, and event time from the future
        (ingest, batch(good(), orjson.dumps(execution(9001, timestamp=time.time() * 1000)),
                       good()), EXECUTION_HEADER, None),
        (ingest, orjson.dumps(execution(9002, timestamp=time.time() + 86400)),
         EXECUTION_HEADER, None),
        (ingest, with_raw(execution(9003), "metrics",
                          b'{"latency_ms":1.7976931348623157e308,"success":true}'),
         EXECUTION_HEADER, None),
        # garbage on the typed topics, as a producer that bypasses the router writes
        (names.typed["engine_execution"], b"\xff not json", [], None),
        (names.typed["comparison_result"], b'{"comparison_id":"c-broken"}', [], None),
        (names.typed["session_event"], b'[1,"x"]', [], None),
        (names.typed["ml_job_command"], b"{{{", [], None),
        (names.typed["engine_event"],
         b'{"event":"RequestServed","engine_id":"e","timestamp":"soon"}', [], None),
        (names.metrics_windows, b'{"engine_id":"x"}', [], None),
        (names.dead_letter, b'"not an object"', [], None),
        (names.typed["training_sample"], b'{"no_id":1}', [], None),
    ]
    messages += poison
    messages.append((ingest, batch(*(good() for _ in range(50))), EXECUTION_HEADER, None))
    expected = Counter({
        ("router", "too_deep"): 2,
        ("router", "oversized"): 1,
        ("router", "schema_violation"): 2,
        ("router", "future_timestamp"): 1,
        ("windows", "processing_error"): 2,
        ("sink.events", "processing_error"): 1,
        ("training", "processing_error"): 1,
        ("sessions", "processing_error"): 2,
        ("jobs", "processing_error"): 1,
        ("engine-status", "schema_violation"): 1,
        ("sink.aggregated_stats", "processing_error"): 1,
        ("sink.dead_letters", "processing_error"): 1,
        ("sink.training_samples", "processing_error"): 1,
    })  # fmt: skip
    return messages, valid, expected


def letters_by_agent(records: list[Any], names: TopicNames) -> Counter[tuple[str, str]]:
    found: Counter[tuple[str, str]] = Counter()
    for record in records:
        if record.topic != names.dead_letter:
            continue
        try:
            doc = orjson.loads(record.value)
            found[(doc["error"]["agent"], doc["reason"])] += 1
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue  # the garbage published on the dead-letter topic itself
    return found


def test_no_single_input_stops_a_worker(isolated_env: dict[str, str], tmp_path: Path) -> None:
    env = {**isolated_env, "ENGINESTREAM_WINDOW_IDLE_TIMEOUT": "2"}
    settings = Settings.from_env(env)
    names = TopicNames(settings.topic_prefix)
    asyncio.run(ensure_topics(settings))
    messages, valid, expected = build(names)
    log = tmp_path / "worker.log"
    worker = WorkerProcess(env, log_path=log).start()
    try:
        worker.wait_ready()
        asyncio.run(produce_all(settings.bootstrap_servers, messages))

        def done(records: list[Any]) -> bool:
            executions = sum(
                len(orjson.loads(r.value)) if r.value.startswith(b"[") else 1
                for r in records if r.topic == names.typed["engine_execution"]
                and r.value != b"\xff not json"
            )  # fmt: skip
            return executions >= valid and letters_by_agent(records, names) >= expected

        records = asyncio.run(
            read_until(
                settings.bootstrap_servers,
                [names.dead_letter, names.typed["engine_execution"]],
                done,
                timeout=180,
            )
        )
        assert worker.proc is not None and worker.proc.poll() is None, "the worker exited"
        assert letters_by_agent(records, names) == expected
        # Every valid execution is in events.jsonl once; the files hold every dead letter.
        sink = {c.name: c for c in settings.sinks}
        directory = settings.data_dir / "jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lines = [orjson.loads(line) for p in range(settings.partitions)
                     for line in read_lines(directory, sink["events"], p)]  # fmt: skip
            if len(lines) >= valid:
                break
            time.sleep(0.2)
        assert sorted(line["trace_id"] for line in lines) == sorted(
            f"t-{i}" for i in range(1, valid + 1)
        )
        status, _ = worker.get_json("/health")
        assert status == 200
    finally:
        worker.stop()
    assert "exiting so that nothing unprocessed is committed" not in log.read_text()

    # A second consumer group reads every message again from the first offset, as a
    # worker would after losing its commits: the poison is delivered again.
    again_env = {
        **env,
        "ENGINESTREAM_APP_ID": env["ENGINESTREAM_APP_ID"] + "-again",
        "ENGINESTREAM_DATA_DIR": str(tmp_path / "again"),
        "ENGINESTREAM_WEB_PORT": str(free_port()),
    }
    ingest_messages = sum(1 for m in messages if m[0] == names.ingest)
    again = WorkerProcess(again_env, log_path=log).start()
    try:
        again.wait_ready()
        deadline = time.monotonic() + 120
        seen = 0
        while time.monotonic() < deadline and seen < ingest_messages:
            status, body = again.get_json("/stats")
            assert isinstance(body, dict)
            seen = body["router"]["messages_in"].get(names.ingest, 0) if status == 200 else 0
            time.sleep(0.2)
        assert seen == ingest_messages
        assert again.proc is not None and again.proc.poll() is None, "the worker exited"
    finally:
        again.stop()
    assert "exiting so that nothing unprocessed is committed" not in log.read_text()
