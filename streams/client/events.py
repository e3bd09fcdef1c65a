"""Typed helpers that build schema-valid events (plain dicts) for `Publisher.publish`.

Each helper takes the fields of one event (or one variant of it) as typed
arguments and answers the dict `schemas/v1/<type>.json` accepts; publish it with
the matching type name constant:

    publisher.publish(ENGINE_EVENT, request_served("gpt-x", "/v1/chat", "qwen3-4b",
                                                   "local", latency_ms=42, status_code=200))

Timestamps are epoch seconds and default to now; ids default to fresh random ids.
Optional fields left as None are left out (the schemas forbid nulls). The helpers
coerce what the schemas need as integers (latency of a served request, status
code, port, progress) with `int()`, and serialise a job's opaque `spec` and
`metrics` to JSON text when given as objects. They do not validate: the
publisher does, and refuses an out-of-range value with `InvalidEvent`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypedDict

import orjson

from streams.client.checks import InvalidEvent

ENGINE_EXECUTION = "engine_execution"
COMPARISON_RESULT = "comparison_result"
TRAINING_SAMPLE = "training_sample"
ENGINE_EVENT = "engine_event"
SESSION_EVENT = "session_event"
ML_JOB_COMMAND = "ml_job_command"

Event = dict[str, Any]
Tier = Literal["gold", "silver", "bronze"]
JobKind = Literal["train", "backfill", "feature_refresh", "drift_compute"]


class Hardware(TypedDict, total=False):
    """Hardware snapshot of a device at session start (every field optional)."""

    has_gpu: bool
    gpu_type: str
    has_npu: bool
    npu_type: str
    memory_total_mb: int
    battery_level: int
    thermal_state: str
    platform: str


def now() -> float:
    """The current time in epoch seconds (the default of every timestamp)."""
    return time.time()


def new_id() -> str:
    """A fresh random id (32 lowercase hex characters)."""
    return uuid.uuid4().hex


def _ts(timestamp: float | None) -> float:
    return now() if timestamp is None else timestamp


def _optional(doc: Event, **fields: Any) -> Event:
    """`doc` with every field of `fields` that is not None."""
    doc.update({k: v for k, v in fields.items() if v is not None})
    return doc


def _metrics(
    latency_ms: float | None = None,
    success: bool | None = None,
    memory_mb: float | None = None,
    cpu_percent: float | None = None,
    quality_score: float | None = None,
) -> Event:
    return _optional(
        {},
        latency_ms=latency_ms,
        success=success,
        memory_mb=memory_mb,
        cpu_percent=cpu_percent,
        quality_score=quality_score,
    )


# --- runs, comparisons, training samples ---------------------------------------------


def execution(
    engine_id: str,
    input: str,
    output: str,
    *,
    latency_ms: float,
    success: bool = True,
    trace_id: str | None = None,
    task_id: str | None = None,
    engine_instance_id: str | None = None,
    memory_mb: float | None = None,
    cpu_percent: float | None = None,
    quality_score: float | None = None,
    status: str | None = None,
    timestamp: float | None = None,
) -> Event:
    """One run of an engine (`engine_execution`); trace and task ids default to new ids."""
    trace_id = trace_id or new_id()
    doc: Event = {
        "schema_version": 1,
        "trace_id": trace_id,
        "task_id": task_id or trace_id,
        "engine_id": engine_id,
        "timestamp": _ts(timestamp),
        "input": input,
        "output": output,
        "metrics": _metrics(latency_ms, success, memory_mb, cpu_percent, quality_score),
    }
    return _optional(doc, engine_instance_id=engine_instance_id, status=status)


def candidate(
    engine_id: str,
    output: str,
    *,
    latency_ms: float | None = None,
    quality_score: float | None = None,
    memory_mb: float | None = None,
    cpu_percent: float | None = None,
    success: bool | None = None,
) -> Event:
    """One engine's answer in a comparison (for `comparison(candidates=...)`)."""
    doc: Event = {"engine_id": engine_id, "output": output}
    metrics = _metrics(latency_ms, success, memory_mb, cpu_percent, quality_score)
    if metrics:
        doc["metrics"] = metrics
    return doc


def comparison(
    query: str,
    candidates: Iterable[Mapping[str, Any]],
    winner_engine_id: str,
    winner_score: float,
    *,
    comparison_id: str | None = None,
    timestamp: float | None = None,
) -> Event:
    """A comparison of several engines' answers to one query (`comparison_result`)."""
    return {
        "comparison_id": comparison_id or new_id(),
        "query": query,
        "candidates": [dict(c) for c in candidates],
        "winner": {"engine_id": winner_engine_id, "score": winner_score},
        "timestamp": _ts(timestamp),
    }


def training_sample(
    input: str,
    output: str,
    tier: Tier,
    quality_score: float,
    *,
    validated: bool = True,
    source_trace_id: str | None = None,
    source_comparison_id: str | None = None,
    sample_id: str | None = None,
    created_at: float | None = None,
    lineage: Mapping[str, Any] | None = None,
) -> Event:
    """A tiered input/output pair (`training_sample`) with its source (a trace or a
    comparison: at least one is required)."""
    if source_trace_id is None and source_comparison_id is None:
        raise InvalidEvent(
            "a training_sample needs source_trace_id or source_comparison_id",
            event_type=TRAINING_SAMPLE,
        )
    doc: Event = {
        "sample_id": sample_id or new_id(),
        "created_at": _ts(created_at),
        "tier": tier,
        "input": input,
        "output": output,
        "validation": {"quality_score": quality_score, "validated": validated},
    }
    return _optional(
        doc,
        source_trace_id=source_trace_id,
        source_comparison_id=source_comparison_id,
        lineage=dict(lineage) if lineage is not None else None,
    )


# --- engine lifecycle (structure only: never prompt or response text) ----------------


def _lifecycle(variant: str, engine_id: str, timestamp: float | None, **fields: Any) -> Event:
    return {"event": variant, "engine_id": engine_id, "timestamp": _ts(timestamp), **fields}


def engine_started(
    engine_id: str, model: str, port: int, *, timestamp: float | None = None
) -> Event:
    """The engine started and listens on `port`."""
    return _lifecycle("EngineStarted", engine_id, timestamp, model=model, port=int(port))


def model_loaded(engine_id: str, model: str, *, timestamp: float | None = None) -> Event:
    """A model is loaded into memory (warm-up not yet complete)."""
    return _lifecycle("ModelLoaded", engine_id, timestamp, model=model)


def warm_up_complete(engine_id: str, model: str, *, timestamp: float | None = None) -> Event:
    """Warm-up is complete: the engine can serve requests."""
    return _lifecycle("WarmUpComplete", engine_id, timestamp, model=model)


def request_served(
    engine_id: str,
    route: str,
    model: str,
    provider: str,
    latency_ms: float,
    status_code: int,
    *,
    timestamp: float | None = None,
) -> Event:
    """A request was served: route, model, provider, latency (rounded to whole
    milliseconds) and the real status code. Never the prompt or the response."""
    return _lifecycle(
        "RequestServed",
        engine_id,
        timestamp,
        route=route,
        model=model,
        provider=provider,
        latency_ms=round(latency_ms),
        status_code=int(status_code),
    )


def engine_error(engine_id: str, kind: str, *, timestamp: float | None = None) -> Event:
    """A non-fatal engine error, by class (`timeout`, `oom`, ...), never its message."""
    return _lifecycle("EngineError", engine_id, timestamp, kind=kind)


def engine_stopping(engine_id: str, model: str, *, timestamp: float | None = None) -> Event:
    """The engine is shutting down."""
    return _lifecycle("EngineStopping", engine_id, timestamp, model=model)


# --- device sessions -----------------------------------------------------------------


def session_started(
    session_id: str,
    device_id: str,
    platform: str,
    sdk_version: str,
    *,
    hardware: Mapping[str, Any] | None = None,
    timestamp: float | None = None,
) -> Event:
    """A device session started, with an optional hardware snapshot."""
    doc: Event = {
        "event": "session_started",
        "session_id": session_id,
        "timestamp": _ts(timestamp),
        "device_id": device_id,
        "platform": platform,
        "sdk_version": sdk_version,
    }
    return _optional(doc, hardware=dict(hardware) if hardware is not None else None)


def inference_recorded(
    session_id: str,
    model_id: str,
    version: str,
    latency_ms: float,
    *,
    timestamp: float | None = None,
) -> Event:
    """One inference of `model_id`@`version` in the session."""
    return {
        "event": "inference_recorded",
        "session_id": session_id,
        "timestamp": _ts(timestamp),
        "model_id": model_id,
        "version": version,
        "latency_ms": latency_ms,
    }


def error_recorded(
    session_id: str,
    message: str,
    *,
    model_id: str | None = None,
    timestamp: float | None = None,
) -> Event:
    """An error in the session, optionally of one model."""
    doc: Event = {
        "event": "error_recorded",
        "session_id": session_id,
        "timestamp": _ts(timestamp),
        "message": message,
    }
    return _optional(doc, model_id=model_id)


def session_ended(session_id: str, *, timestamp: float | None = None) -> Event:
    """The session ended."""
    return {"event": "session_ended", "session_id": session_id, "timestamp": _ts(timestamp)}


# --- ML job commands -----------------------------------------------------------------


def _opaque(value: str | Mapping[str, Any] | list[Any] | None) -> str | None:
    """A job's opaque JSON text: strings pass through, objects are serialised."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _command(command: str, job_id: str, timestamp: float | None, **fields: Any) -> Event:
    return _optional({"command": command, "job_id": job_id, "timestamp": _ts(timestamp)}, **fields)


def submit_job(
    kind: JobKind,
    target: str,
    *,
    spec: str | Mapping[str, Any] | None = None,
    job_id: str | None = None,
    timestamp: float | None = None,
) -> tuple[str, Event]:
    """Submit a job: answers (job id, command). The id is 128 random bits as 32 hex
    characters unless given; `spec` is opaque JSON (text, or an object serialised)."""
    job_id = job_id or new_id()
    command = _command("submit", job_id, timestamp, kind=kind, target=target, spec=_opaque(spec))
    return job_id, command


def start_job(job_id: str, *, timestamp: float | None = None) -> Event:
    """The job started running."""
    return _command("start", job_id, timestamp)


def job_progress(job_id: str, progress: float, *, timestamp: float | None = None) -> Event:
    """The job's progress in percent (0..100, whole numbers)."""
    return _command("progress", job_id, timestamp, progress=int(progress))


def complete_job(
    job_id: str,
    *,
    metrics: str | Mapping[str, Any] | None = None,
    timestamp: float | None = None,
) -> Event:
    """The job completed, with optional result metrics (opaque JSON)."""
    return _command("complete", job_id, timestamp, metrics=_opaque(metrics))


def fail_job(job_id: str, error: str, *, timestamp: float | None = None) -> Event:
    """The job failed, and why."""
    return _command("fail", job_id, timestamp, error=error)


def cancel_job(job_id: str, *, reason: str | None = None, timestamp: float | None = None) -> Event:
    """The job was cancelled, optionally with why."""
    return _command("cancel", job_id, timestamp, reason=reason)
