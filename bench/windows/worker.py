"""The worker's runs: `enginestream worker` as shipped, or with the window agent
consuming the way it did before streams.runtime.bulk ("worker-faust-stream"), measured
from its window agent's own counts (GET /windows/stats), optionally under py-spy."""

from __future__ import annotations

import asyncio
import os
import time
import types
from pathlib import Path
from typing import Any

from bench.common.cpu import CpuMeter
from bench.common.processes import ModuleWorker, health_ready, worker_env
from bench.common.profile import start_profiler, stop_profiler
from bench.windows.results import RunResult, make_result
from bench.windows.topics import wait_committed
from bench.windows.workload import Stage
from streams.config.settings import Settings
from tests.worker_process import WorkerProcess

DEADLINE_S = 900.0
POLL_S = 0.05
STATS_POLL_S = 0.25


async def run_worker(
    stage: Stage,
    profile_to: Path | None,
    with_sinks: bool,
    system: str = "worker",
    rep: int = 0,
) -> RunResult:
    """Start `enginestream worker` on the pre-produced topic; measure its window agent.
    `system` "worker-faust-stream": the same worker with faust's per-message path (see
    faust_stream_child)."""
    shape, tmp = stage.shape, stage.tmp
    app_id = f"bw-{system}-r{rep}-{stage.prefix.rstrip('.')}"
    env = worker_env(stage.settings, stage.prefix, app_id, tmp / f"data-{system}-{shape}-{rep}")
    if not with_sinks:
        # The JSONL sink of engine.executions (events.jsonl) reads the same topic: off,
        # so that the figures are the window agent's (see README.md).
        env["ENGINESTREAM_SINK_EVENTS_ENABLED"] = "false"
    log = tmp / f"{system}-{shape}-{rep}.log"
    worker = (
        WorkerProcess(env, log)
        if system == "worker"
        else ModuleWorker(env, log, "bench.windows.run", ["--worker-child", "faust-stream"])
    )
    load_before = os.getloadavg()
    worker.start()
    assert worker.proc is not None
    pids = {"worker": worker.proc.pid, "broker": stage.broker}
    meter: CpuMeter | None = None  # from ready on: the worker's start-up is not counted
    spy = None
    try:
        ready_at: float | None = None
        stats: dict[str, Any] = {}
        deadline = time.monotonic() + DEADLINE_S
        last_stats = 0.0
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker did not finish in {DEADLINE_S}s: {stats}")
            if worker.proc.poll() is not None:
                raise RuntimeError(f"worker died (code {worker.proc.returncode}), log {log}")
            if ready_at is None and await health_ready(worker):
                ready_at = time.time()
                meter = CpuMeter(pids)
                if profile_to is not None:
                    spy = start_profiler(worker.proc.pid, profile_to)
            now = time.monotonic()
            if now - last_stats >= STATS_POLL_S:
                last_stats = now
                try:
                    status, body = await asyncio.to_thread(worker.get_json, "/windows/stats", 5.0)
                    if status == 200 and isinstance(body, dict):
                        stats = body["windows"]
                except (OSError, ValueError):
                    pass
                if meter is not None:
                    meter.sample()
                if stats.get("events_in", 0) >= stage.work.total:
                    break
            await asyncio.sleep(POLL_S)
        stop_profiler(spy)
        spy = None
        if meter is None:  # done before /health ever answered ready
            meter = CpuMeter(pids)
        committed_at = await wait_committed(stage.settings, app_id, stage.topic, stage.ends)
        return make_result(
            stage,
            system,
            stats["events_in"],
            ready_at,
            # The first message in hand (its batch may start up to ~0.5 s later).
            stats.get("first_message_at") or stats["first_batch_at"],
            stats["last_batch_at"],
            committed_at,
            meter,
            load_before,
            profile=None if profile_to is None else str(profile_to),
            detail={
                "messages_in": stats["messages_in"],
                "batches": stats.get("batches"),
                "emitted": stats["emitted"],
            },
        )
    finally:
        stop_profiler(spy)
        await asyncio.to_thread(worker.stop)


class StreamAgentConsumer:
    """The window agent's consumption as it was before streams.runtime.bulk: a faust agent
    iterating `stream.take_events(200, within=0.05)` (Event, Stream and acks per
    message), handing the events' messages to the same processor. Same signature as
    streams.runtime.bulk.BulkConsumer, which it replaces in faust_stream_child."""

    def __init__(
        self,
        app: Any,
        topics: Any,
        handler: Any,
        *,
        max_batch: int,
        within_s: float,
        name: str,
    ) -> None:
        self.batches = self.failed_batches = self.stale_dropped = 0
        self.buffer = types.SimpleNamespace(first_put_at=None)  # no buffer: see stats()
        source = app.topic(
            *topics, key_type=bytes, value_type=bytes, key_serializer="raw",
            value_serializer="raw",
        )  # fmt: skip
        take = Settings.from_env().router_take

        @app.agent(source, name=name)
        async def windows(stream: Any) -> None:
            async for events in stream.take_events(take, within=within_s):
                await handler([event.message for event in events])
                self.batches += 1


def faust_stream_child() -> None:
    """Run `enginestream worker` with the window agent consuming the way it did before
    streams.runtime.bulk: faust's consumer (a `wait_first` per message), a faust agent with
    take_events (StreamAgentConsumer), and the root logger left at DEBUG as faust.Worker
    sets it. Everything else (the processor, its changelog writes, the idle timer) is
    the current code."""
    from streams import cli
    from streams.agents import window_agent
    from streams.runtime import app as app_module
    from streams.runtime import consumer

    def faust_consumer(app: object, fetch_wait_s: float | None = None) -> None:
        """Leave faust's own consumer in place (install's signature)."""

    consumer.install = faust_consumer
    app_module.keep_root_log_level = lambda app, level: None
    window_agent.BulkConsumer = StreamAgentConsumer  # type: ignore[assignment,misc]
    cli.main(["worker"])
