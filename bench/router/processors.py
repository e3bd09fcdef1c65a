"""One run of one processor on one input shape: the router (a worker process with a
probe on Router.route) or the plain loop (a child process, see baseline.py), started
on the pre-produced ingest topic and measured on its outputs."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common.cpu import CpuMeter
from bench.common.processes import (
    ModuleWorker,
    health_ready,
    start_child,
    stop_child,
    tail,
    worker_env,
)
from bench.common.results import ShapeRun
from bench.router.outputs import POLL_S, Measurement, OutputCounter, create_topics
from bench.router.stamp import STAMP_ENV, wait_stamp, write_stamp
from bench.router.workload import Workload
from streams.config.settings import Settings
from streams.config.topics import EVENT_TYPES, TopicNames
from streams.domain.validation import default_registry
from tests.worker_process import WorkerProcess

# The module whose command line starts the processors' processes (--router-child,
# --baseline-child).
ENTRY = "bench.router.run"


@dataclass
class RunResult(ShapeRun):
    """One processor on one input shape."""

    elapsed_s: float
    events_per_s: float
    ready_to_first_input_s: float | None
    first_input_to_first_output_s: float
    output_span_s: float
    typed_events: int
    typed_messages: int
    dead_letters: int
    correct: bool
    cpu_s: dict[str, float]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    non_log_append: int


def _result(
    shape: str,
    system: str,
    work: Workload,
    n_messages: int,
    ready_at: float | None,
    started_at: float,
    measured: Measurement,
    meter: CpuMeter,
    load_before: tuple[float, float, float],
) -> RunResult:
    assert measured.last_append_ms is not None and measured.first_append_ms is not None
    elapsed = measured.last_append_ms / 1000.0 - started_at
    typed = sum(measured.typed_events.values())
    per_type_ok = all(
        measured.typed_events[t] == work.valid_per_type.get(t, 0) for t in EVENT_TYPES
    )
    correct = (
        typed + measured.dead_letters == work.total
        and measured.dead_letters == work.invalid
        and per_type_ok
    )
    if not correct:
        raise AssertionError(
            f"{system}/{shape}: wrong outputs: typed {measured.typed_events} "
            f"(expected {dict(work.valid_per_type)}), dead {measured.dead_letters} "
            f"(expected {work.invalid})"
        )
    return RunResult(
        shape=shape,
        system=system,
        events=work.total,
        input_messages=n_messages,
        elapsed_s=round(elapsed, 3),
        events_per_s=round(work.total / elapsed, 1),
        ready_to_first_input_s=None if ready_at is None else round(started_at - ready_at, 3),
        first_input_to_first_output_s=round(measured.first_append_ms / 1000.0 - started_at, 3),
        output_span_s=round((measured.last_append_ms - measured.first_append_ms) / 1000.0, 3),
        typed_events=typed,
        typed_messages=measured.typed_messages,
        dead_letters=measured.dead_letters,
        correct=correct,
        cpu_s=meter.used(),
        load_before=load_before,
        load_after=os.getloadavg(),
        non_log_append=measured.non_log_append,
    )


async def _health_ready_at(worker: WorkerProcess, timeout: float = 120.0) -> float | None:
    """The epoch time at which the worker's /health first answered ready, polling every
    POLL_S (None if it never did). The answer can come late: the web view shares the
    event loop with the router agent, so it waits while the agent routes a chunk."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.proc is not None and worker.proc.poll() is not None:
            return None
        if await health_ready(worker):
            return time.time()
        await asyncio.sleep(POLL_S)
    return None


def router_child(full_worker: bool) -> None:
    """Run a worker with Router.route wrapped so that its first call writes the stamp
    file named by STAMP_ENV, then steps aside (the original method is put back, so
    later messages pay nothing).

    `full_worker`: run `enginestream worker` as it is, with every agent it registers.
    Otherwise: the router agent and the web views only, assembled as
    streams.runtime.worker.build_worker_app assembles them, so that other agents (windows)
    do not share the process and the figures are the router's."""
    from streams.domain.router import Inbound, Router, Routing

    original = Router.route

    def first_route(self: Router, msg: Inbound, now: float | None = None) -> Routing:
        write_stamp(os.environ.get(STAMP_ENV))
        Router.route = original  # type: ignore[method-assign]
        return original(self, msg, now)

    Router.route = first_route  # type: ignore[method-assign]
    if full_worker:
        from streams import cli

        cli.main(["worker"])
        return
    import faust

    from streams.agents.router_agent import register_router
    from streams.kafka.admin import check_broker, ensure_topics
    from streams.runtime.app import create_app
    from streams.runtime.router_counters import RouterCounters
    from streams.web.health import register_web

    settings = Settings.from_env()

    async def prepare() -> dict[str, int]:
        await check_broker(settings)
        return {s.name: s.partitions for s in await ensure_topics(settings)}

    partitions = asyncio.run(prepare())
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    asyncio.set_event_loop(asyncio.new_event_loop())
    app = create_app(settings)
    router = Router(
        TopicNames(settings.topic_prefix),
        default_registry(),
        max_message_bytes=settings.max_message_bytes,
        dead_letter_keep_bytes=settings.dead_letter_keep_bytes,
    )
    counters = RouterCounters()
    register_router(app, settings, router, partitions, counters)
    register_web(app, counters)
    faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True).execute_from_commandline()


async def run_router(
    settings: Settings,
    shape: str,
    prefix: str,
    work: Workload,
    n_messages: int,
    tmp: Path,
    broker: int | None,
    full_worker: bool,
) -> RunResult:
    """Start a worker on the pre-produced `prefix` ingest topic; measure it."""
    names = TopicNames(prefix)
    counter = OutputCounter(settings, names)
    await counter.start()
    app_id = f"bench-router-{prefix.rstrip('.')}"
    log = tmp / f"worker-{shape}.log"
    stamp = tmp / f"router-{shape}.stamp"
    env = {**worker_env(settings, prefix, app_id, tmp / f"data-{shape}"), STAMP_ENV: str(stamp)}
    flags = ["--full-worker"] if full_worker else []
    worker = ModuleWorker(env, log, ENTRY, ["--router-child", *flags])
    load_before = os.getloadavg()
    worker.start()
    health = asyncio.create_task(_health_ready_at(worker))
    try:
        assert worker.proc is not None

        def alive() -> None:
            if worker.proc is not None and worker.proc.poll() is not None:
                raise RuntimeError(
                    f"worker died (code {worker.proc.returncode}); log: {log}{tail(log)}"
                )

        started_at = await wait_stamp(stamp, alive)
        meter = CpuMeter({"worker": worker.proc.pid, "broker": broker})
        measured = await counter.wait_for(work.total, alive, meter)
        ready_at = await health
        return _result(
            shape, "router", work, n_messages, ready_at, started_at, measured, meter, load_before
        )
    finally:
        health.cancel()
        await asyncio.to_thread(worker.stop)
        await counter.stop()


async def run_baseline(
    settings: Settings,
    shape: str,
    ingest: str,
    out_prefix: str,
    validator: str,
    work: Workload,
    n_messages: int,
    tmp: Path,
    broker: int | None,
) -> RunResult:
    """Run the plain loop (a child process, see baseline.py) from `ingest` to the
    topics of `out_prefix`; measure it."""
    names = TopicNames(out_prefix)
    await create_topics(settings, [*names.typed.values(), names.dead_letter])
    counter = OutputCounter(settings, names)
    await counter.start()
    log = tmp / f"baseline-{validator}-{shape}.log"
    stamp = tmp / f"baseline-{validator}-{shape}.stamp"
    load_before = os.getloadavg()
    proc = await start_child(
        ENTRY,
        [
            "--baseline-child",
            "--bootstrap", settings.bootstrap_servers,
            "--in-topic", ingest,
            "--out-prefix", out_prefix,
            "--partitions", str(settings.partitions),
            "--validator", validator,
        ],
        log,
        env={**os.environ, STAMP_ENV: str(stamp)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if not line.startswith(b"READY "):
            raise RuntimeError(f"baseline did not start: {line!r}; log: {log}")
        ready_at = float(line.split()[1])

        def alive() -> None:
            if proc.returncode not in (None, 0):
                raise RuntimeError(f"baseline died (code {proc.returncode}); log: {log}{tail(log)}")

        waiter = asyncio.create_task(proc.wait())
        try:
            started_at = await wait_stamp(stamp, alive)
            meter = CpuMeter({"baseline": proc.pid, "broker": broker})
            measured = await counter.wait_for(work.total, alive, meter)
        finally:
            if not waiter.done():
                waiter.cancel()
        return _result(
            shape,
            f"baseline-{validator}",
            work,
            n_messages,
            ready_at,
            started_at,
            measured,
            meter,
            load_before,
        )
    finally:
        await stop_child(proc)
        await counter.stop()
