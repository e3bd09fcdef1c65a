"""The latency case: live executions (stamped with the wall clock) at a fixed rate into
a worker with short windows; for every window closed by event time, the wall time from
the moment it could close (its end + the lateness + the grace, as Settings has them)
until its final record was readable on engine.metrics.windows."""

from __future__ import annotations

import asyncio
import math
import os
import time
from typing import Any

from bench.common.cpu import CpuMeter
from bench.pipeline.observe import WindowWatcher
from bench.pipeline.procs import peak_rss_mb, start_producer, wait_mark, wait_worker_ready
from bench.pipeline.runs import Plan, start_system
from streams.config.settings import Settings


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank) of `values`, None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def run_latency(plan: Plan, size_s: int, rate: float, duration_s: float) -> dict[str, Any]:
    """Run the worker on live traffic; answer the delays' summary."""
    settings = Settings.from_env({**plan.worker_env, "KAFKA_BOOTSTRAP_SERVERS": "x:1"})
    after_end = settings.window_lateness_s + settings.window_grace_s
    env = {"KAFKA_BOOTSTRAP_SERVERS": plan.settings.bootstrap_servers}
    producer = await start_producer(plan.producer_args, plan.tmp / f"{plan.tag}-producer.log", env)
    system = await start_system(plan)
    watcher = WindowWatcher(plan.settings, plan.out_topic)
    out: dict[str, Any] = {"window_s": size_s, "rate": rate, "duration_s": duration_s,
                           "close_after_end_s": after_end, "load_before": os.getloadavg()}
    try:
        assert system.worker is not None
        deadline = time.monotonic() + duration_s + 300
        await wait_worker_ready(system.worker, deadline)
        await wait_mark(producer, "READY", deadline)
        await watcher.start()
        meter = CpuMeter({"worker": system.pid, "producer": producer.proc.pid,
                          "broker": plan.broker})  # fmt: skip
        producer.go()
        started = await wait_mark(producer, "START", deadline)
        while producer.at("DONE") is None and time.monotonic() < deadline:
            meter.sample()
            await asyncio.sleep(0.5)
        await asyncio.sleep(size_s + after_end + 3.0)  # the last windows closed by events
        meter.sample()
        delays = [
            at - (start + size_s + after_end)
            for (_, start), at in watcher.readable_at.items()
            if start >= started - size_s
        ]
        out.update({
            "windows": len(delays), "sent": int(producer.marks.get("DONE", ["0", "0"])[1]),
            "p50_s": percentile(delays, 0.5), "p99_s": percentile(delays, 0.99),
            "max_s": max(delays, default=None), "goal_s": 1.0,
            "cpu_s": meter.used(), "peak_rss_mb": peak_rss_mb(system.pid), "ok": True,
        })  # fmt: skip
    except Exception as exc:
        out.update({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    finally:
        out["load_after"] = os.getloadavg()
        await watcher.stop()
        await producer.stop()
        if system.worker is not None:
            await asyncio.to_thread(system.worker.stop)
    return out
