"""What the client tests share: one case per event helper (with and without its
optional fields), and the options of a publisher whose broker is a closed port."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from streams.client import (
    COMPARISON_RESULT,
    ENGINE_EVENT,
    ENGINE_EXECUTION,
    ML_JOB_COMMAND,
    SESSION_EVENT,
    TRAINING_SAMPLE,
    PublisherStats,
    events,
)
from streams.domain.validation import default_registry

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
    return {"bootstrap_servers": CLOSED, "connect_timeout": 2.0, **options}


def balanced(stats: PublisherStats) -> bool:
    return stats.attempts == stats.published + stats.dropped_total + stats.pending


def timed_publishes(publish: Callable[[str, dict[str, Any]], bool], n: int) -> float:
    doc = request_served()
    started = time.monotonic()
    for _ in range(n):
        publish(ENGINE_EVENT, doc)
    return time.monotonic() - started
