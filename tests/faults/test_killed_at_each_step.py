"""A real worker killed with SIGKILL at each step of the exactly-once protocol, for
every agent kind, and a new worker that takes over: nothing lost, nothing repeated,
dead letters included.

The worker is started with ENGINESTREAM_FAILPOINT=<agent>:<step>, and kills itself
at that agent's first batch with something to write: `written` (the batch's outputs
are acknowledged, its state and ledger not saved) or `saved` (its ledger is durable,
its source offsets not committed). The next worker, the same consumer group without
the failpoint, reads everything uncommitted again. Every output is then checked by
its identity: each routed execution, window final, training sample, dead letter and
JSONL line exactly once; every window's latest revision counts each of its
executions once (a window closed by the wall clock while the worker was down is
revised when the rest of its events come, which is not a repeat).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.windows import emission_id
from streams.durable.filesink import read_lines
from streams.kafka.admin import ensure_topics
from tests.integration.kafka_io import Record, produce_all, read_until
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

EXECUTIONS = 80
SAMPLES = 4
WINDOW_S = 60


def header(event_type: str) -> list[tuple[str, bytes]]:
    return [("event-type", event_type.encode())]


def execution(i: int, t0: float) -> dict[str, Any]:
    return {
        "schema_version": 1, "trace_id": f"t-{i}", "task_id": "task",
        "engine_id": f"engine-{i % 7}", "timestamp": t0 + i * 0.5, "input": "q",
        "output": "a", "metrics": {"latency_ms": 10.0 + i % 50, "success": True},
    }  # fmt: skip


def comparison(cid: str, winner: str = "a") -> dict[str, Any]:
    return {"comparison_id": cid, "query": "q", "winner": {"engine_id": winner, "score": 0.95},
            "candidates": [{"engine_id": "a", "output": "x"}, {"engine_id": "b", "output": "y"}]}


def job(name: str, job_id: str, **extra: Any) -> dict[str, Any]:
    return {"command": name, "job_id": job_id, "timestamp": time.time(), **extra}


def workload(names: TopicNames, t0: float) -> tuple[list[tuple[Any, ...]], Counter[Any]]:
    """The messages, and the dead letters expected by (agent, reason)."""
    ingest = names.ingest
    docs = [execution(i, t0) for i in range(1, EXECUTIONS + 1)]
    executions = header("engine_execution")
    messages: list[tuple[Any, ...]] = [
        (ingest, orjson.dumps(docs[:40]), executions, None),
        (ingest, b"{not json", executions, None),
        (ingest, orjson.dumps([*docs[40:60], {"trace_id": "broken"}]), executions, None),
        (ingest, orjson.dumps(docs[60:]), executions, None),
        *[(ingest, orjson.dumps(comparison(f"c-{i}")), header("comparison_result"), None)
          for i in range(SAMPLES)],
        (ingest, orjson.dumps(comparison("c-odd", winner="z")), header("comparison_result"),
         None),
        (ingest, orjson.dumps(job("submit", "a" * 32, kind="train", target="m")),
         header("ml_job_command"), None),
        (ingest, orjson.dumps(job("complete", "a" * 32)), header("ml_job_command"), None),
        # written straight to the typed topics, past the router
        (names.typed["engine_execution"], b"\xff not json", [], None),
        (names.typed["comparison_result"], b'{"comparison_id":"c-broken"}', [], None),
    ]  # fmt: skip
    expected = Counter({
        ("router", "malformed_json"): 1,
        ("router", "schema_violation"): 1,
        ("windows", "processing_error"): 1,
        ("sink.events", "processing_error"): 1,
        ("training", "winner_not_candidate"): 1,
        ("training", "processing_error"): 1,
        ("jobs", "invalid_transition"): 1,
    })  # fmt: skip
    return messages, expected


def docs_of(record: Record) -> list[Any]:
    value = orjson.loads(record.value)
    return value if isinstance(value, list) else [value]


def outputs(records: list[Record], names: TopicNames) -> dict[str, Counter[Any]]:
    """Every output by its identity, counted."""
    found: dict[str, Counter[Any]] = {
        k: Counter() for k in ("executions", "emissions", "counts", "samples", "letters")
    }
    latest: dict[tuple[str, int], int] = {}
    for record in records:
        if record.topic == names.typed["engine_execution"]:
            if record.value.startswith(b"\xff"):
                continue  # the garbage the test wrote itself
            found["executions"].update(d["trace_id"] for d in docs_of(record))
        elif record.topic == names.metrics_windows:
            for doc in docs_of(record):
                found["emissions"][emission_id(doc)] += 1
                window = (doc["engine_id"], doc["window_start"])
                if doc["revision"] >= latest.get(window, -1):
                    latest[window] = doc["revision"]
                    found["counts"][window] = doc["count"]
        elif record.topic == names.typed["training_sample"]:
            found["samples"].update(d["sample_id"] for d in docs_of(record))
        elif record.topic == names.dead_letter:
            doc = orjson.loads(record.value)
            found["letters"][(doc["error"]["agent"], doc["reason"], doc["id"])] += 1
    return found


def by_reason(letters: Counter[Any]) -> Counter[Any]:
    counted: Counter[Any] = Counter()
    for (agent, reason, _), n in letters.items():
        counted[(agent, reason)] += n
    return counted


STEPS = [
    (agent, step)
    for agent in ("router", "windows", "training", "jobs", "sink.events")
    for step in ("written", "saved")
]


@pytest.mark.parametrize(("agent", "step"), STEPS, ids=[f"{a}-{s}" for a, s in STEPS])
def test_killed_at_a_step_then_taken_over(
    agent: str, step: str, isolated_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**isolated_env, "ENGINESTREAM_WINDOW_IDLE_TIMEOUT": "2"}
    settings = Settings.from_env(env)
    names = TopicNames(settings.topic_prefix)
    asyncio.run(ensure_topics(settings))
    t0 = time.time() - 900
    messages, expected_letters = workload(names, t0)
    log = tmp_path / "worker.log"

    first = WorkerProcess({**env, "ENGINESTREAM_FAILPOINT": f"{agent}:{step}"}, log).start()
    try:
        first.wait_ready()
        asyncio.run(produce_all(settings.bootstrap_servers, messages))
        assert first.proc is not None
        deadline = time.monotonic() + 120
        while first.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert first.proc.returncode == -9, f"the worker was not killed at {agent}:{step}"
    finally:
        first.stop()

    second = WorkerProcess(env, log).start()
    # What each window holds, counted once: its latest revision must say so.
    windows = Counter(
        (f"engine-{i % 7}", int((t0 + i * 0.5) // WINDOW_S) * WINDOW_S)
        for i in range(1, EXECUTIONS + 1)
    )
    try:
        second.wait_ready()

        def done(records: list[Record]) -> bool:
            found = outputs(records, names)
            return (
                len(found["executions"]) >= EXECUTIONS
                and len(found["samples"]) >= SAMPLES
                and by_reason(found["letters"]) >= expected_letters
                and found["counts"] >= windows
            )

        topics = [names.typed["engine_execution"], names.metrics_windows,
                  names.typed["training_sample"], names.dead_letter]  # fmt: skip
        records = asyncio.run(read_until(settings.bootstrap_servers, topics, done, 180))
        lines = wait_for_lines(settings, EXECUTIONS)
    finally:
        second.stop()

    found = outputs(records, names)
    assert found["executions"] == Counter(f"t-{i}" for i in range(1, EXECUTIONS + 1))
    assert len(found["samples"]) == SAMPLES and set(found["samples"].values()) == {1}
    assert by_reason(found["letters"]) == expected_letters
    assert set(found["letters"].values()) == {1}, "a dead letter written twice"
    assert found["counts"] == windows, "a window's latest revision counts an event twice"
    assert set(found["emissions"].values()) == {1}, "a window record written twice"
    assert sorted(lines) == sorted(f"t-{i}" for i in range(1, EXECUTIONS + 1))


def wait_for_lines(settings: Settings, count: int) -> list[str]:
    """The trace ids in events.jsonl, once it holds `count` lines (or at the deadline)."""
    sink = {c.name: c for c in settings.sinks}["events"]
    directory = settings.data_dir / "jsonl"
    deadline = time.monotonic() + 60
    while True:
        ids = [orjson.loads(line)["trace_id"] for p in range(settings.partitions)
               for line in read_lines(directory, sink, p)]  # fmt: skip
        if len(ids) >= count or time.monotonic() > deadline:
            return ids
        time.sleep(0.2)
