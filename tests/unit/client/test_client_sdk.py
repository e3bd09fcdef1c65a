"""The engine-side SDK (streams.client) without a broker.

Every helper builds a schema-valid event; the confidentiality refusal names fields
and never their values, with validation on or off and through every sink; schema
errors raise InvalidEvent (or are dropped and counted when asked); the sinks behave;
a publisher pointed at a closed port falls back to its no-op mode at once, never
blocks a caller and counts its drops; the buffer is bounded; batches are packed by
partition of the entity id; a SessionRecorder publishes a valid session.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.client import (
    COMPARISON_RESULT,
    ENGINE_EVENT,
    ENGINE_EXECUTION,
    ML_JOB_COMMAND,
    SESSION_EVENT,
    TRAINING_SAMPLE,
    ConfidentialityError,
    EventPublisher,
    EventSink,
    InMemorySink,
    InvalidEvent,
    KafkaSink,
    NoopSink,
    Publisher,
    PublisherStats,
    SessionRecorder,
    SyncPublisher,
    events,
)
from streams.client.batching import pack
from streams.domain.validation import default_registry
from streams.kafka.partitioner import partition_for

ROOT = Path(__file__).resolve().parents[3]
REGISTRY = default_registry()
SECRET = "SECRET-PROMPT-9c1e"
CLOSED = "127.0.0.1:1"  # nothing listens on port 1: connection refused at once
HARDWARE: events.Hardware = {
    "has_gpu": True,
    "gpu_type": "Adreno 740",
    "has_npu": False,
    "memory_total_mb": 12288,
    "battery_level": 87,
    "thermal_state": "nominal",
    "platform": "android-14",
}
JOB_ID, SUBMIT = events.submit_job("train", "model-a", spec={"epochs": 3})

# (helper name, event type, event) - every public helper at least once, with and
# without its optional fields.
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("execution", ENGINE_EXECUTION, events.execution("gpt-x", "hello", "hi", latency_ms=42)),
    (
        "execution",
        ENGINE_EXECUTION,
        events.execution(
            "gpt-x",
            "hello",
            "hi",
            latency_ms=42.5,
            success=False,
            trace_id="t-1",
            task_id="task-1",
            engine_instance_id="gpt-x-0",
            memory_mb=512.0,
            cpu_percent=130.0,
            quality_score=0.8,
            status="timeout",
            timestamp=1670000000,
        ),
    ),
    (
        "comparison",
        COMPARISON_RESULT,
        events.comparison(
            "translate this",
            [
                events.candidate("a", "...", latency_ms=20, quality_score=0.7),
                events.candidate(
                    "b", "...", latency_ms=35, quality_score=0.9, memory_mb=1, cpu_percent=2
                ),
                events.candidate("c", "...", success=False),
                events.candidate("d", "..."),
            ],
            "b",
            0.9,
        ),
    ),
    (
        "training_sample",
        TRAINING_SAMPLE,
        events.training_sample("hello", "hi", "gold", 0.95, source_trace_id="t-123"),
    ),
    (
        "training_sample",
        TRAINING_SAMPLE,
        events.training_sample(
            "hello",
            "hi",
            "silver",
            0.8,
            validated=False,
            source_comparison_id="c-1",
            sample_id="s-1",
            created_at=1670000100,
            lineage={"engine_id": "b", "candidate_count": 2, "score_margin": 0.2},
        ),
    ),
    ("engine_started", ENGINE_EVENT, events.engine_started("gpt-x", "qwen3-4b", 11435)),
    ("model_loaded", ENGINE_EVENT, events.model_loaded("gpt-x", "qwen3-4b")),
    ("warm_up_complete", ENGINE_EVENT, events.warm_up_complete("gpt-x", "qwen3-4b")),
    (
        "request_served",
        ENGINE_EVENT,
        events.request_served(
            "gpt-x", "/v1/chat/completions", "qwen3-4b", "engine-curator", 41.6, 503
        ),
    ),
    ("engine_error", ENGINE_EVENT, events.engine_error("gpt-x", "timeout")),
    ("engine_stopping", ENGINE_EVENT, events.engine_stopping("gpt-x", "qwen3-4b")),
    (
        "session_started",
        SESSION_EVENT,
        events.session_started("s-1", "dev-7", "android", "2.0.1", hardware=HARDWARE),
    ),
    ("session_started", SESSION_EVENT, events.session_started("s-1", "dev-7", "ios", "2.0.1")),
    (
        "inference_recorded",
        SESSION_EVENT,
        events.inference_recorded("s-1", "wav2vec2", "1.0", 250.5),
    ),
    (
        "error_recorded",
        SESSION_EVENT,
        events.error_recorded("s-1", "Network connection failed", model_id="wav2vec2"),
    ),
    ("error_recorded", SESSION_EVENT, events.error_recorded("s-1", "Model not found")),
    ("session_ended", SESSION_EVENT, events.session_ended("s-1")),
    ("submit_job", ML_JOB_COMMAND, SUBMIT),
    ("submit_job", ML_JOB_COMMAND, events.submit_job("drift_compute", "features-v2")[1]),
    ("start_job", ML_JOB_COMMAND, events.start_job(JOB_ID)),
    ("job_progress", ML_JOB_COMMAND, events.job_progress(JOB_ID, 42.0)),
    ("complete_job", ML_JOB_COMMAND, events.complete_job(JOB_ID, metrics={"auc": 0.91})),
    ("complete_job", ML_JOB_COMMAND, events.complete_job(JOB_ID, metrics='{"auc": 0.91}')),
    ("complete_job", ML_JOB_COMMAND, events.complete_job(JOB_ID)),
    ("fail_job", ML_JOB_COMMAND, events.fail_job(JOB_ID, "out of memory")),
    ("cancel_job", ML_JOB_COMMAND, events.cancel_job(JOB_ID, reason="superseded")),
    ("cancel_job", ML_JOB_COMMAND, events.cancel_job(JOB_ID)),
]


def request_served(**extra: Any) -> dict[str, Any]:
    return {**events.request_served("gpt-x", "/v1/chat", "qwen3-4b", "local", 42, 200), **extra}


def unreachable(**options: Any) -> dict[str, Any]:
    """Options for a publisher whose broker is a closed port."""
    return {"bootstrap_servers": CLOSED, "connect_timeout_ms": 2_000, **options}


def balanced(stats: PublisherStats) -> bool:
    return stats.attempts == stats.published + stats.dropped_total + stats.pending


# --- typed helpers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("helper", "event_type", "doc"), CASES, ids=[f"{i}-{c[0]}" for i, c in enumerate(CASES)]
)
def test_every_helper_builds_a_schema_valid_event(
    helper: str, event_type: str, doc: dict[str, Any]
) -> None:
    assert REGISTRY.check(event_type, doc) is None
    assert None not in doc.values()  # optional fields left out, never null


def test_every_public_helper_is_covered() -> None:
    builders = {
        name
        for name, value in vars(events).items()
        if inspect.isfunction(value)
        and value.__module__ == events.__name__
        and not name.startswith("_")
    }
    assert builders - {"now", "new_id", "candidate"} == {helper for helper, _, _ in CASES}


def test_helpers_default_timestamps_to_now_and_ids_to_fresh_ids() -> None:
    before = time.time()
    job_id, submit = events.submit_job("backfill", "features")
    run = events.execution("gpt-x", "a", "b", latency_ms=1)
    served = events.request_served("gpt-x", "/v1", "m", "p", 12.4, 200)
    after = time.time()
    for doc in (submit, run, served):
        assert before <= doc["timestamp"] <= after
    assert len(job_id) == 32 and int(job_id, 16) >= 0 and submit["job_id"] == job_id
    assert run["task_id"] == run["trace_id"]
    assert events.execution("gpt-x", "a", "b", latency_ms=1)["trace_id"] != run["trace_id"]
    assert served["latency_ms"] == 12 and isinstance(served["latency_ms"], int)
    assert orjson.loads(SUBMIT["spec"]) == {"epochs": 3}


def test_a_training_sample_needs_a_source() -> None:
    with pytest.raises(InvalidEvent, match="source_trace_id or source_comparison_id"):
        events.training_sample("a", "b", "gold", 0.9)


# --- confidentiality and schema checks ------------------------------------------------


def sinks_under_test(validate: bool) -> list[EventPublisher]:
    return [
        Publisher(**unreachable(validate=validate)),
        InMemorySink(validate=validate),
        NoopSink(validate=validate),
    ]


@pytest.mark.parametrize("validate", [True, False])
def test_lifecycle_event_with_content_is_refused_naming_fields_not_values(
    validate: bool,
) -> None:
    for sink in sinks_under_test(validate):
        doc = request_served(prompt=SECRET, completion=f"the answer is {SECRET}")
        with pytest.raises(ConfidentialityError) as info:
            sink.publish(ENGINE_EVENT, doc)
        error = info.value
        assert isinstance(error, InvalidEvent) and isinstance(error, ValueError)
        assert error.fields == ("completion", "prompt")
        assert "completion" in str(error) and "prompt" in str(error)
        assert SECRET not in str(error) and SECRET not in repr(error)
        # An unknown variant is not echoed either (it could be anything).
        with pytest.raises(ConfidentialityError) as info:
            sink.publish(
                ENGINE_EVENT,
                {"event": SECRET, "engine_id": "e", "timestamp": 1, "messages": [SECRET]},
            )
        assert info.value.fields == ("messages",) and SECRET not in str(info.value)
    # Every variant's own fields are fine; one more field is not.
    for _, event_type, doc in CASES:
        if event_type == ENGINE_EVENT:
            InMemorySink().publish(event_type, doc)
            with pytest.raises(ConfidentialityError):
                NoopSink(validate=False).publish(event_type, {**doc, "messages": []})


def test_confidentiality_refusals_raise_even_when_invalid_events_are_dropped() -> None:
    publisher = Publisher(**unreachable(on_invalid="drop"))
    with pytest.raises(ConfidentialityError):
        publisher.publish(ENGINE_EVENT, request_served(prompt=SECRET))
    assert publisher.stats.dropped["invalid"] == 1 and publisher.stats.buffered == 0


def test_schema_errors_raise_invalid_event_without_quoting_values() -> None:
    sink = InMemorySink()
    with pytest.raises(InvalidEvent) as info:
        sink.publish(ENGINE_EVENT, request_served(status_code=SECRET))
    error = info.value
    assert not isinstance(error, ConfidentialityError)
    assert error.violation is not None and error.violation.path == "/status_code"
    assert "'type'" in str(error) and "/status_code" in str(error)
    assert SECRET not in str(error)
    # Rules whose message names fields keep jsonschema's message.
    missing = request_served()
    del missing["model"]
    with pytest.raises(InvalidEvent, match="'model' is a required property"):
        sink.publish(ENGINE_EVENT, missing)
    run = events.execution("gpt-x", "a", "b", latency_ms=1)
    with pytest.raises(InvalidEvent, match="'prompt' was unexpected"):
        sink.publish(ENGINE_EXECUTION, {**run, "prompt": SECRET})
    with pytest.raises(InvalidEvent, match="unknown event type"):
        sink.publish("engine_telemetry", run)
    with pytest.raises(InvalidEvent, match="JSON object"):
        sink.publish(ENGINE_EXECUTION, [run])  # type: ignore[arg-type]
    assert len(sink) == 0
    # Validation off: off-schema events pass (the router dead-letters them).
    loose = InMemorySink(validate=False)
    assert loose.publish(ENGINE_EVENT, request_served(status_code=SECRET))
    assert len(loose) == 1


def test_a_publisher_counts_invalid_events_and_can_drop_them_instead() -> None:
    strict = Publisher(**unreachable())
    with pytest.raises(InvalidEvent):
        strict.publish(ENGINE_EVENT, request_served(latency_ms=-1))
    unchecked = Publisher(**unreachable(validate=False))
    with pytest.raises(InvalidEvent, match="JSON-serialisable"):
        unchecked.publish(ENGINE_EXECUTION, {**CASES[0][2], "input": {1, 2}})
    lenient = Publisher(**unreachable(on_invalid="drop"))
    assert lenient.publish(ENGINE_EVENT, request_served(latency_ms=-1)) is False
    assert lenient.publish(ENGINE_EVENT, request_served()) is True
    for publisher in (strict, unchecked, lenient):
        assert publisher.stats.dropped["invalid"] == 1 and balanced(publisher.stats)
    assert lenient.stats.buffered == 1


# --- sinks ----------------------------------------------------------------------------


def test_sinks_satisfy_the_protocols() -> None:
    publisher = Publisher(**unreachable())
    for sink in (InMemorySink(), NoopSink(), KafkaSink(publisher), publisher):
        assert isinstance(sink, EventSink) and isinstance(sink, EventPublisher)


def test_in_memory_sink_keeps_copies_in_order_and_is_thread_safe() -> None:
    sink = InMemorySink()
    assert sink.snapshot() == [] and len(sink) == 0
    doc = events.model_loaded("gpt-x", "qwen3-4b", timestamp=1)
    asyncio.run(sink.emit(ENGINE_EVENT, doc))
    doc["model"] = "changed later"
    served = events.request_served("gpt-x", "/v1", "qwen3-4b", "local", 42, 200, timestamp=2)
    assert sink.publish(ENGINE_EVENT, served)
    got = sink.snapshot()
    assert [d["event"] for _, d in got] == ["ModelLoaded", "RequestServed"]
    assert got[0][1]["model"] == "qwen3-4b"
    got[0][1]["model"] = "changed by the test"
    assert sink.events(ENGINE_EVENT)[0]["model"] == "qwen3-4b"

    sink.clear()
    threads = [
        threading.Thread(
            target=lambda n=n: [
                sink.publish(SESSION_EVENT, events.inference_recorded(f"s-{n}", "m", "1", i))
                for i in range(500)
            ]
        )
        for n in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    kept = sink.events(SESSION_EVENT)
    assert len(kept) == 4000 and sink.events(ENGINE_EVENT) == []
    for n in range(8):  # each thread's events in its own order
        assert [d["latency_ms"] for d in kept if d["session_id"] == f"s-{n}"] == list(range(500))


def test_noop_sink_discards_after_checking() -> None:
    sink = NoopSink()
    asyncio.run(sink.emit(ENGINE_EVENT, request_served()))
    assert sink.publish(ENGINE_EVENT, request_served()) is False
    assert sink.discarded == 2
    with pytest.raises(InvalidEvent):
        sink.publish(ENGINE_EVENT, request_served(status_code=42))


# --- best effort: unreachable broker, bounded buffer -----------------------------------


def timed_publishes(publish: Callable[[str, dict[str, Any]], bool], n: int) -> float:
    doc = request_served()
    started = time.monotonic()
    for _ in range(n):
        publish(ENGINE_EVENT, doc)
    return time.monotonic() - started


def test_publisher_without_broker_falls_back_to_noop_and_never_blocks() -> None:
    async def scenario() -> tuple[float, float, float, str, PublisherStats, PublisherStats]:
        started = time.monotonic()
        publisher = await Publisher.connect(**unreachable())
        connect_s = time.monotonic() - started
        state = publisher.state
        publish_s = timed_publishes(publisher.publish, 1_000)
        sink = KafkaSink(publisher)
        await sink.emit(ENGINE_EVENT, request_served())  # an EventSink over it: no raise
        before_close = publisher.stats
        started = time.monotonic()
        final = await publisher.close(timeout=1.0)
        return connect_s, publish_s, time.monotonic() - started, state, before_close, final

    connect_s, publish_s, close_s, state, stats, final = asyncio.run(
        asyncio.wait_for(scenario(), 30)
    )
    assert connect_s < 3.0  # bounded by connect_timeout_ms (2 s); refused at once in fact
    assert state == "unavailable"
    assert publish_s < 0.5, f"1,000 publishes took {publish_s:.3f}s"  # never blocks
    assert stats.dropped["broker_unavailable"] == 1_001 and stats.pending == 0
    assert stats.published == 0 and balanced(stats)
    assert close_s < 2.0 and final.state == "closed" and balanced(final)


def test_connect_to_a_broker_that_never_answers_is_bounded() -> None:
    # A socket that completes the TCP handshake (the kernel's backlog) but never
    # answers a Kafka request: the first connection attempt hangs until
    # connect_timeout_ms, then the publisher is in no-op mode.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"127.0.0.1:{silent.getsockname()[1]}"

        async def scenario() -> tuple[float, str, bool]:
            started = time.monotonic()
            publisher = await Publisher.connect(bootstrap_servers=address, connect_timeout_ms=500)
            elapsed = time.monotonic() - started
            state = publisher.state
            accepted = publisher.publish(ENGINE_EVENT, request_served())
            await publisher.close(timeout=0.5)
            return elapsed, state, accepted

        elapsed, state, accepted = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert 0.4 < elapsed < 3.0 and state == "unavailable" and accepted is False


def test_sync_publisher_without_broker_never_blocks() -> None:
    started = time.monotonic()
    with SyncPublisher(**unreachable(block_budget_ms=5)) as publisher:
        connect_s = time.monotonic() - started
        assert publisher.state == "unavailable"
        publish_s = timed_publishes(publisher.publish, 1_000)
        stats = publisher.stats
        assert publisher.flush(timeout=0.2) is True  # nothing pending: all dropped
    assert connect_s < 3.0
    assert publish_s < 0.5, f"1,000 publishes took {publish_s:.3f}s"
    assert stats.dropped["broker_unavailable"] == 1_000 and balanced(stats)
    final = publisher.close()  # twice is fine
    assert final.state == "closed" and balanced(final)
    assert publisher.publish(ENGINE_EVENT, request_served()) is False
    assert publisher.stats.dropped["closed"] == 1


def test_the_buffer_is_bounded_and_overflow_is_counted() -> None:
    # Not started: events wait in the buffer (as during start-up), up to its bound.
    publisher = Publisher(**unreachable(buffer_events=10))
    accepted = [publisher.publish(ENGINE_EVENT, request_served()) for _ in range(15)]
    assert accepted == [True] * 10 + [False] * 5
    stats = publisher.stats
    assert stats.buffered == 10 and stats.dropped["buffer_full"] == 5 and balanced(stats)
    final = asyncio.run(publisher.close())
    assert final.dropped["closed"] == 10 and final.pending == 0 and balanced(final)
    assert publisher.publish(ENGINE_EVENT, request_served()) is False
    assert publisher.stats.dropped["closed"] == 11


def test_events_buffered_before_a_failed_connect_are_dropped_at_close() -> None:
    async def scenario() -> PublisherStats:
        publisher = Publisher(**unreachable(buffer_events=100))
        for _ in range(40):
            publisher.publish(ENGINE_EVENT, request_served())
        await publisher.start()
        assert publisher.state == "unavailable" and publisher.stats.buffered == 40
        assert publisher.publish(ENGINE_EVENT, request_served()) is False
        assert await publisher.flush(timeout=0.1) is False
        return await publisher.close(timeout=0.2)

    final = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert final.dropped["broker_unavailable"] == 41 and final.published == 0
    assert balanced(final)


def test_an_event_over_the_size_bound_is_dropped_as_too_large() -> None:
    publisher = Publisher(**unreachable(max_event_bytes=1_000))
    big = events.execution("gpt-x", "x" * 2_000, "y", latency_ms=1)
    assert publisher.publish(ENGINE_EXECUTION, big) is False
    assert publisher.publish(ENGINE_EXECUTION, events.execution("gpt-x", "x", "y", latency_ms=1))
    assert publisher.stats.dropped["too_large"] == 1 and publisher.stats.buffered == 1


@pytest.mark.parametrize(
    "options",
    [
        {"buffer_events": 0},
        {"batch_events": 0},
        {"batch_bytes": -1},
        {"linger_ms": -1},
        {"compression": "brotli"},
        {"on_invalid": "ignore"},
        {"security_protocol": "TLS"},
        {"reconnect_backoff_ms": (5_000, 500)},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Publisher(**unreachable(**options))


# --- batching -------------------------------------------------------------------------


def test_pack_groups_events_by_partition_of_their_entity_and_bounds_messages() -> None:
    items = []
    for i in range(1_000):
        doc = events.execution(f"engine-{i % 13}", "in", "out", latency_ms=i, trace_id=f"t{i}")
        items.append((doc["engine_id"].encode(), orjson.dumps(doc)))
    keyless = events.execution("x", "in", "out", latency_ms=1, trace_id="keyless")
    items.append((None, orjson.dumps(keyless)))
    batches = pack(ENGINE_EXECUTION, items, 4, batch_events=50, batch_bytes=8_000)
    assert sum(b.count for b in batches) == len(items)
    for batch in batches:
        value = batch.value()
        assert batch.count <= 50 and (len(value) <= 8_000 or batch.count == 1)
        decoded = orjson.loads(value)
        docs = decoded if batch.count > 1 else [decoded]
        assert isinstance(decoded, list) == (batch.count > 1)
        for (key, _), doc in zip(batch.items, docs, strict=True):
            if key is None:
                assert batch.partition is None and batch.key is None
            else:
                assert batch.partition == partition_for(key, 4)
                assert doc["engine_id"].encode() == key
        keys = {key for key, _ in batch.items}
        assert batch.key == (next(iter(keys)) if len(keys) == 1 else None)
    # Publish order is kept within each entity.
    order = [orjson.loads(body)["trace_id"] for b in batches for _, body in b.items]
    order.remove("keyless")
    for n in range(13):
        mine = [t for t in order if int(t[1:]) % 13 == n]
        assert mine == sorted(mine, key=lambda t: int(t[1:]))
    # Without partition metadata everything goes unkeyed.
    assert {b.partition for b in pack(ENGINE_EXECUTION, items, None, 500, 512_000)} == {None}
    # An event larger than batch_bytes travels alone.
    huge = [(b"k", b"x" * 10_000), (b"k", b"y" * 10)]
    assert [b.count for b in pack(ENGINE_EXECUTION, huge, 4, 500, 1_000)] == [1, 1]


# --- sessions -------------------------------------------------------------------------


def test_session_recorder_publishes_a_valid_session_and_summarises_it() -> None:
    sink = InMemorySink()
    clock = iter(range(1_000, 2_000))
    recorder = SessionRecorder(sink, "device-123", platform="android", clock=lambda: next(clock))
    recorder.record_inference("wav2vec2", "1.0", 10)  # no session yet: nothing happens
    assert len(sink) == 0 and recorder.summary() is None and not recorder.active

    session_id = recorder.start(hardware=HARDWARE)
    assert recorder.active and recorder.session_id == session_id
    recorder.record_inference("wav2vec2", "1.0", 250)
    recorder.record_inference("wav2vec2", "1.0", 350)
    recorder.record_inference("whisper", "2", 100.5)
    recorder.record_error("Network connection failed", model_id="wav2vec2")
    recorder.record_error("Network connection failed", model_id="wav2vec2")
    recorder.record_error("Model not found")
    with pytest.raises(InvalidEvent):  # refused: the summary does not change
        recorder.record_inference("wav2vec2", "1.0", -5)
    summary = recorder.end()

    assert summary is not None and not summary.active and not recorder.active
    assert summary.session_id == session_id and summary.device_id == "device-123"
    assert summary.total_inferences == 3 and summary.total_latency_ms == 700.5
    assert summary.avg_latency_ms == pytest.approx(233.5)
    assert summary.models_used == ("wav2vec2", "whisper")
    usage = summary.by_model["wav2vec2@1.0"]
    assert (usage.calls, usage.total_latency_ms, usage.avg_latency_ms, usage.errors) == (
        2,
        600,
        300,
        2,
    )
    assert summary.error_count == 3
    assert summary.errors == {"Network connection failed": 2, "Model not found": 1}
    assert recorder.end() is None

    published = sink.events(SESSION_EVENT)
    assert [d["event"] for d in published] == [
        "session_started",
        *["inference_recorded"] * 3,
        *["error_recorded"] * 3,
        "session_ended",
    ]
    assert {d["session_id"] for d in published} == {session_id}
    assert published[0]["hardware"] == HARDWARE and published[0]["device_id"] == "device-123"
    assert all(REGISTRY.check(SESSION_EVENT, d) is None for d in published)
    assert published[-1]["timestamp"] == summary.ended_at

    # Starting again while active ends the running session first.
    first = recorder.start()
    second = recorder.start()
    kinds = [(d["event"], d["session_id"]) for d in sink.events(SESSION_EVENT)[-3:]]
    assert kinds == [
        ("session_started", first),
        ("session_ended", first),
        ("session_started", second),
    ]


# --- packaging ------------------------------------------------------------------------


def test_the_sdk_does_not_import_faust() -> None:
    code = (
        "import sys, streams.client, streams.client.sync; "
        "loaded = [m for m in sys.modules if m == 'faust' or m.startswith(('faust.', 'mode.'))]; "
        "sys.exit(1 if loaded else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
