"""A synthetic fleet of inference engines: valid events of every type, and some bad input.

Used by `enginestream fleet`, the demo, the benchmarks and the tests. Everything is
driven by a seeded `random.Random`, so a run is reproducible.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

MODELS = ("qwen3-4b", "llama-3.1-8b", "mistral-7b", "phi-4-mini")
ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
PLATFORMS = ("ios", "android", "macos", "linux")
ERROR_MESSAGES = (
    "failed to load model bundle",
    "input tensor format mismatch",
    "onnx inference execute failed",
    "output decode error",
    "connection reset by registry",
    "gpu delegate unavailable",
    "out of memory",
    "something odd happened",
)


@dataclass
class Fleet:
    """Generates events for `engines` engines; `error_rate` is the share of failed runs."""

    rng: random.Random = field(default_factory=lambda: random.Random(7))
    engines: int = 8
    error_rate: float = 0.05
    latency_ms: tuple[float, float] = (40.0, 0.6)  # median, lognormal sigma
    clock: float | None = None  # fixed event time (seconds) or None for wall clock

    def engine_id(self, n: int | None = None) -> str:
        """The id of engine `n` (a random one when None)."""
        if n is None:
            n = self.rng.randrange(self.engines)
        return f"engine-{n:03d}"

    def now(self) -> float:
        """Event time: the fixed clock when set, else the wall clock."""
        return self.clock if self.clock is not None else round(time.time(), 3)

    def _latency(self) -> float:
        median, sigma = self.latency_ms
        return round(self.rng.lognormvariate(0.0, sigma) * median, 3)

    def execution(self, engine: str | None = None) -> dict[str, Any]:
        """One engine_execution."""
        success = self.rng.random() >= self.error_rate
        metrics: dict[str, Any] = {
            "latency_ms": self._latency(),
            "success": success,
            "memory_mb": round(self.rng.uniform(200, 4000), 1),
            "cpu_percent": round(self.rng.uniform(1, 100), 1),
        }
        if self.rng.random() < 0.5:
            metrics["quality_score"] = round(self.rng.random(), 3)
        return {
            "schema_version": 1,
            "trace_id": f"t-{uuid.UUID(int=self.rng.getrandbits(128)).hex}",
            "task_id": f"task-{self.rng.randrange(10_000)}",
            "engine_id": engine or self.engine_id(),
            "engine_instance_id": f"i-{self.rng.randrange(4)}",
            "timestamp": self.now(),
            "input": "summarise the quarterly report",
            "output": "the quarter went well" if success else "",
            "metrics": metrics,
            "status": "ok" if success else "error",
        }

    def comparison(self) -> dict[str, Any]:
        """One comparison_result between two to four engines."""
        count = self.rng.randint(2, min(4, max(2, self.engines)))
        engines = self.rng.sample(range(self.engines), k=min(count, self.engines))
        candidates = [
            {
                "engine_id": self.engine_id(n),
                "output": f"answer from engine {n}",
                "metrics": {
                    "latency_ms": self._latency(),
                    "quality_score": round(self.rng.random(), 3),
                },
            }
            for n in engines
        ]
        winner: dict[str, Any] = max(candidates, key=lambda c: c["metrics"]["quality_score"])
        return {
            "comparison_id": f"c-{uuid.UUID(int=self.rng.getrandbits(128)).hex}",
            "query": "translate this",
            "candidates": candidates,
            "winner": {"engine_id": winner["engine_id"], "score": round(self.rng.random(), 3)},
            "timestamp": self.now(),
        }

    def training_sample(self) -> dict[str, Any]:
        """One externally produced training_sample."""
        return {
            "sample_id": f"s-{uuid.UUID(int=self.rng.getrandbits(128)).hex}",
            "created_at": self.now(),
            "source_trace_id": f"t-{self.rng.getrandbits(64):016x}",
            "tier": self.rng.choice(("gold", "silver", "bronze")),
            "input": "hello",
            "output": "hi",
            "validation": {"quality_score": round(self.rng.random(), 3), "validated": True},
        }

    def request_served(self, engine: str | None = None) -> dict[str, Any]:
        """One RequestServed lifecycle event (structure only, never content)."""
        status = 200 if self.rng.random() >= self.error_rate else self.rng.choice((400, 503))
        return {
            "event": "RequestServed",
            "engine_id": engine or self.engine_id(),
            "timestamp": self.now(),
            "route": self.rng.choice(ROUTES),
            "model": self.rng.choice(MODELS),
            "provider": "engine-curator",
            "latency_ms": int(self._latency()),
            "status_code": status,
        }

    def lifecycle(self, engine: str | None = None) -> dict[str, Any]:
        """A lifecycle event of a random variant."""
        engine = engine or self.engine_id()
        model = self.rng.choice(MODELS)
        base = {"engine_id": engine, "timestamp": self.now()}
        variant = self.rng.choice(
            ("EngineStarted", "ModelLoaded", "WarmUpComplete", "EngineError", "EngineStopping")
        )
        extra: dict[str, Any] = {"model": model}
        if variant == "EngineStarted":
            extra["port"] = 11_000 + self.rng.randrange(1000)
        elif variant == "EngineError":
            extra = {"kind": self.rng.choice(("inference", "timeout", "oom"))}
        return {"event": variant, **base, **extra}

    def session_events(self) -> list[dict[str, Any]]:
        """A whole device session: started, a few inferences and errors, ended."""
        session = f"sess-{uuid.UUID(int=self.rng.getrandbits(128)).hex}"
        t = self.now()
        events: list[dict[str, Any]] = [
            {
                "event": "session_started",
                "session_id": session,
                "timestamp": t,
                "device_id": f"dev-{self.rng.randrange(1000):04d}",
                "platform": self.rng.choice(PLATFORMS),
                "sdk_version": "0.1.0",
                "hardware": {"has_gpu": True, "memory_total_mb": 8192, "battery_level": 80},
            }
        ]
        for i in range(self.rng.randint(1, 6)):
            events.append(
                {
                    "event": "inference_recorded",
                    "session_id": session,
                    "timestamp": t + i + 1,
                    "model_id": self.rng.choice(MODELS),
                    "version": "1.0",
                    "latency_ms": self._latency(),
                }
            )
        if self.rng.random() < 0.3:
            events.append(
                {
                    "event": "error_recorded",
                    "session_id": session,
                    "timestamp": t + 8,
                    "model_id": self.rng.choice(MODELS),
                    "message": self.rng.choice(ERROR_MESSAGES),
                }
            )
        events.append({"event": "session_ended", "session_id": session, "timestamp": t + 9})
        return events

    def job_commands(self) -> list[dict[str, Any]]:
        """A job's life: submit, start, progress, then complete or fail."""
        job_id = f"{self.rng.getrandbits(128):032x}"
        t = self.now()
        # feature_refresh and drift_compute are run by the app itself, not reported.
        kind = self.rng.choice(("train", "backfill"))
        commands: list[dict[str, Any]] = [
            {
                "command": "submit",
                "job_id": job_id,
                "timestamp": t,
                "kind": kind,
                "target": "model-a",
                "spec": '{"epochs": 3}',
            },
            {"command": "start", "job_id": job_id, "timestamp": t + 1},
            {"command": "progress", "job_id": job_id, "timestamp": t + 2, "progress": 50},
        ]
        if self.rng.random() < 0.8:
            commands.append(
                {"command": "complete", "job_id": job_id, "timestamp": t + 3, "metrics": "{}"}
            )
        else:
            commands.append(
                {"command": "fail", "job_id": job_id, "timestamp": t + 3, "error": "diverged"}
            )
        return commands

    def mixed(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """An endless mix of (event_type, event) in realistic proportions."""
        while True:
            roll = self.rng.random()
            if roll < 0.55:
                yield "engine_execution", self.execution()
            elif roll < 0.75:
                yield "engine_event", self.request_served()
            elif roll < 0.83:
                yield "comparison_result", self.comparison()
            elif roll < 0.87:
                yield "engine_event", self.lifecycle()
            elif roll < 0.90:
                yield "training_sample", self.training_sample()
            elif roll < 0.97:
                for event in self.session_events():
                    yield "session_event", event
            else:
                for command in self.job_commands():
                    yield "ml_job_command", command


# Bad input the demo mixes in, so that dead letters can be seen with their reasons.
BAD_MESSAGES: tuple[tuple[bytes, dict[str, bytes]], ...] = (
    (b'{"schema_version":1,"trace_id":', {}),
    (b'{"engine_id":"gpt-x"}', {"event-type": b"engine_execution"}),
    (b'{"engine_id":"gpt-x","timestamp":1}', {"event-type": b"mystery_event"}),
    (
        b'{"event":"RequestServed","engine_id":"e","timestamp":1,"route":"/v1/chat",'
        b'"model":"m","provider":"p","latency_ms":3,"status_code":200,'
        b'"prompt":"confidential user text"}',
        {"event-type": b"engine_event"},
    ),
)
