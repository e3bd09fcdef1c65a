"""One run: a system and the producer started side by side, the input produced once
the system is ready, and the run timed from just before the first produce until every
final window is readable on the system's output topic and every execution's line is
durable in its JSONL file (both polled from here, with a deadline)."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common.cpu import CpuMeter
from bench.common.processes import worker_env
from bench.common.profile import start_profiler, stop_profiler
from bench.pipeline.observe import PlainLines, SinkLines, WindowWatcher
from bench.pipeline.procs import (
    Child,
    peak_rss_mb,
    start_producer,
    wait_mark,
    wait_worker_ready,
)  # fmt: skip
from bench.pipeline.results import RunResult
from bench.pipeline.workload import Input
from streams.config.settings import Settings
from streams.config.topics import TopicNames
from tests.worker_process import WorkerProcess

POLL_S = 0.05


@dataclass
class Plan:
    """What one run is: the scenario, the system, its topics, its input (as built by
    the producer from `producer_args`) and what done means."""

    settings: Settings
    scenario: str
    system: str
    tag: str  # unique in the run's topic, group and app names
    prefix: str
    item: Input
    engines: int
    producer_args: list[str]
    tmp: Path
    broker: int | None
    deadline_s: float = 900.0
    worker_env: dict[str, str] = field(default_factory=dict)
    watch_since: dict[int, int] | None = None  # window offsets to read from
    done_by_stats: bool = False  # memory: done when the window agent took every event
    repeat: int = 0
    profile_dir: Path | None = None  # a py-spy profile of the worker per run, here

    @property
    def names(self) -> TopicNames:
        """The run's topic names."""
        return TopicNames(self.prefix)

    @property
    def out_topic(self) -> str:
        """Where the system's final windows are read."""
        if self.system == "worker":
            return self.names.metrics_windows
        return f"{self.prefix}{self.system}.windows"


@dataclass
class Running:
    """The system under test while it runs."""

    pid: int
    started: float
    lines: SinkLines | PlainLines | None
    worker: WorkerProcess | None = None
    child: Child | None = None


async def start_system(plan: Plan) -> Running:
    """Start the system (does not wait for it to be ready)."""
    data = plan.tmp / f"data-{plan.tag}"
    log = plan.tmp / f"{plan.tag}.log"
    started = time.time()
    if plan.system == "worker":
        env = worker_env(plan.settings, plan.prefix, f"bp-{plan.tag}", data)
        worker = WorkerProcess({**env, **plan.worker_env}, log).start()
        assert worker.proc is not None
        lines = SinkLines(data / "jsonl", "events", plan.settings.partitions)
        return Running(worker.proc.pid, started, lines, worker=worker)
    path = data / "executions.jsonl"
    args = [
        "--child", plan.system, "--topic", plan.names.ingest, "--out-topic", plan.out_topic,
        "--partitions", str(plan.settings.partitions), "--path", str(path),
        "--group", f"bp-{plan.tag}", "--state-dir", str(data / "state"),
        "--batched", "no" if plan.item.shape == "single" else "yes",
    ]  # fmt: skip
    env = {"KAFKA_BOOTSTRAP_SERVERS": plan.settings.bootstrap_servers}
    child = await Child.start("bench.pipeline.run", args, log, env)
    windows_only = plan.system == "quix-windows"
    return Running(child.proc.pid, started, None if windows_only else PlainLines(path), child=child)


async def worker_stats(worker: WorkerProcess) -> dict[str, Any]:
    """The worker's /windows/stats and /stats (router counts), or {} while it cannot say."""
    out: dict[str, Any] = {}
    for path, key in (("/windows/stats", "windows"), ("/stats", "router")):
        try:
            status, body = await asyncio.to_thread(worker.get_json, path, 5.0)
        except (OSError, ValueError):
            continue
        if status == 200 and isinstance(body, dict):
            out[key] = body.get(key, {})
    return out


async def run_one(plan: Plan) -> RunResult:
    """Run the plan; a failure is a result (ok False, the error) so the series goes on."""
    result = RunResult(
        shape=plan.item.shape, system=plan.system, events=plan.item.events,
        input_messages=len(plan.item.messages), scenario=plan.scenario, engines=plan.engines,
        executions=plan.item.executions, load_before=os.getloadavg(), repeat=plan.repeat,
    )  # fmt: skip
    env = {"KAFKA_BOOTSTRAP_SERVERS": plan.settings.bootstrap_servers}
    producer = await start_producer(plan.producer_args, plan.tmp / f"{plan.tag}-producer.log", env)
    system = await start_system(plan)
    watcher = WindowWatcher(plan.settings, plan.out_topic, plan.watch_since)
    try:
        await measure(plan, system, producer, watcher, result)
        result.ok = True
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.load_after = os.getloadavg()
        await watcher.stop()
        await producer.stop()
        if system.worker is not None:
            await asyncio.to_thread(system.worker.stop)
        if system.child is not None:
            await system.child.stop()
            result.detail["child_said"] = system.child.lines[-3:]
    return result


async def measure(
    plan: Plan, system: Running, producer: Child, watcher: WindowWatcher, result: RunResult
) -> None:
    """Wait for both processes, give the go, poll until done; fill `result`."""
    deadline = time.monotonic() + plan.deadline_s
    if system.worker is not None:
        ready = await wait_worker_ready(system.worker, deadline)
    else:
        assert system.child is not None
        ready = await wait_mark(system.child, "READY", deadline)
    result.start_to_ready_s = round(ready - system.started, 3)
    await wait_mark(producer, "READY", deadline)
    await watcher.start()
    meter = CpuMeter({plan.system: system.pid, "producer": producer.proc.pid,
                      "broker": plan.broker})  # fmt: skip
    spy = None
    if plan.profile_dir is not None and system.worker is not None:
        name = f"{plan.tag}-{plan.scenario}-{plan.item.shape}-e{plan.engines}.txt"
        profile = plan.profile_dir / name
        spy = start_profiler(system.pid, profile)
        result.detail["profile"] = str(profile)
    try:
        await _timed(plan, system, producer, watcher, result, meter, deadline)
    finally:
        stop_profiler(spy)


async def _timed(
    plan: Plan, system: Running, producer: Child, watcher: WindowWatcher, result: RunResult,
    meter: CpuMeter, deadline: float,
) -> None:  # fmt: skip
    """From the go to done."""
    producer.go()
    first = await wait_mark(producer, "START", deadline)
    item = plan.item
    windows_at = lines_at = None
    stats: dict[str, Any] = {}
    while True:
        now = time.time()
        meter.sample()
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"not done in {plan.deadline_s:.0f}s: windows {watcher.total}/{item.executions}, "
                f"lines {system.lines.count() if system.lines else '-'}/{item.lines}, {stats}"
            )
        if system.worker is not None and plan.done_by_stats:
            stats = await worker_stats(system.worker)
        if plan.done_by_stats:
            if stats.get("windows", {}).get("events_in", 0) >= item.executions:
                windows_at = lines_at = now
        else:
            if windows_at is None and watcher.total >= item.executions:
                windows_at = now
            if lines_at is None and (system.lines is None or system.lines.count() >= item.lines):
                lines_at = now
        if windows_at is not None and lines_at is not None:
            break
        if system.worker is not None and system.worker.proc.poll() is not None:  # type: ignore[union-attr]
            raise RuntimeError("the worker exited")
        if system.child is not None and not system.child.alive():
            raise RuntimeError(f"{plan.system} exited: {system.child.lines[-3:]}")
        await asyncio.sleep(POLL_S)
    done = max(windows_at, lines_at)
    meter.sample()
    produced = producer.at("DONE")
    result.elapsed_s = round(done - first, 3)
    result.events_per_s = round(item.events / (done - first), 1)
    result.produce_s = None if produced is None else round(produced - first, 3)
    result.windows_done_s = round(windows_at - first, 3)
    result.lines_done_s = round(lines_at - first, 3)
    result.cpu_s = meter.used()
    result.peak_rss_mb = peak_rss_mb(system.pid)
    result.detail["windows_read"] = len(watcher.latest)
    result.detail["window_count_sum"] = watcher.total
    if system.worker is not None:
        stats = await worker_stats(system.worker)
        win = stats.get("windows", {})
        if win.get("first_batch_at"):
            result.start_to_first_s = round(win["first_batch_at"] - system.started, 3)
        result.detail["dead_letters"] = stats.get("router", {}).get("dead_letters", {})
        keep = ("messages_in", "events_in", "emitted", "late_events", "too_late", "refused")
        result.detail["windows"] = {k: win.get(k) for k in keep}
    elif system.child is not None and (at := system.child.at("FIRST")) is not None:
        result.start_to_first_s = round(at - system.started, 3)
