"""Window-agent throughput: the enginestream worker against a plain aiokafka loop and
Quix Streams, on a real broker, the same pre-produced input for every system.

    .venv/bin/python -m bench.windows.run [--events 200000] [--engines 1000]
        [--batch 500] [--shapes single,batch]
        [--systems worker,worker-faust-stream,baseline-dict,baseline-stats,quix]
        [--profile] [--with-sinks] [--keep-topics]
        [--out bench/windows/results/latest.json]

Input: `--events` engine_execution events of `--engines` engines, historical event
times (from 2022-12-02, evenly spread over `--span-s` seconds, each up to 2 s early:
out of order within the worker's 5 s lateness), written straight to a fresh prefixed
`engine.executions` (4 partitions, each event on its engine's partition as Kafka's
default partitioner puts it), in two shapes: one event per message (keyed by
engine_id) and JSON arrays of up to `--batch` events of one partition.

Systems, each a process of its own, one after the other on the same topic:

* `worker`: `enginestream worker` as shipped (streams.runtime.processes.WorkerProcess), its
  window agent keeping the 60 s windows in its changelog-backed table (the JSONL sink
  of the same topic off unless `--with-sinks`: see README.md);
* `worker-faust-stream`: the same worker with the window agent consuming the way it
  did before streams.runtime.bulk (faust's consumer with a `wait_first` per message, a
  faust agent with `take_events(200)`, the root logger at DEBUG): the "before";
* `baseline-dict`: aiokafka consumer -> orjson.loads -> a plain dict per
  (engine, 60 s window) of [count, latency sum, latency min, latency max];
* `baseline-stats`: the same loop with streams.domain.aggregates.ExecutionStats per window
  (what the worker keeps: exact sums, means, the latency sketch);
* `quix`: Quix Streams (`pip install -e '.[bench]'`):
  `app.dataframe(topic).tumbling_window(60_000, grace_ms=5_000).agg(count, sum, min,
  max of latency).final()`, event time from the `timestamp` field (seconds -> ms) by
  the topic's timestamp extractor; for the batch shape the arrays are expanded,
  `set_timestamp` gives each event its own time and `group_by("engine_id")` keys the
  windows by engine (Quix windows by message key).

Measured (the same for all): from the moment the system had its first input message
in hand (`first`) to the moment it had applied the last input event to its windows
(`done`): events / (done - first). For the worker, `first` and `done` are the wall
times its window agent records before its first batch and after the batch holding the
last event was applied and its changelog and output records queued to the producer
(GET /windows/stats); the baselines and Quix print them. Also shown: `ready -> first`
(worker: /health first said ready, partitions assigned and tables recovered; baseline:
consumer positioned; Quix: first partition assigned) and, for the systems that commit
offsets to a consumer group (worker, Quix), `done -> committed`: until the group's
committed offsets reached the end of the input (their commit intervals are 2.8 s and
5 s; Faust flushes the producer before it commits).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import types
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.router.run import CpuMeter, broker_pid, machine
from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.kafka.admin import client_options, ensure_topics
from streams.kafka.partitioner import partition_for
from streams.runtime.processes import WorkerProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "windows" / "results"
MAX_BYTES = 8 * 1024 * 1024
DEADLINE_S = 900.0
POLL_S = 0.05
STATS_POLL_S = 0.25
WINDOW_S = 60
BASE_TIME = 1_670_000_000.0  # 2022-12-02T16:53:20Z
JITTER_S = 2.0


# --------------------------------------------------------------------------- input


@dataclass
class Workload:
    """The events, encoded once: (partition, engine id, JSON bytes) in time order."""

    events: list[tuple[int, bytes, bytes]]
    engines: int
    span_s: float

    @property
    def total(self) -> int:
        """Number of events."""
        return len(self.events)


def make_workload(n: int, engines: int, span_s: float, partitions: int, seed: int = 1) -> Workload:
    """`n` engine_execution events of `engines` engines over `span_s` seconds of
    event time (seeded)."""
    rng = random.Random(seed)
    ids = [f"engine-{i:04d}" for i in range(engines)]
    where = {e: partition_for(e.encode(), partitions) for e in ids}
    step = span_s / n
    out: list[tuple[int, bytes, bytes]] = []
    for i in range(n):
        engine = ids[rng.randrange(engines)]
        ok = rng.random() > 0.05
        doc = {
            "schema_version": 1,
            "trace_id": f"t-{i}",
            "task_id": f"task-{i % 977}",
            "engine_id": engine,
            "engine_instance_id": f"{engine}-0",
            "timestamp": round(BASE_TIME + i * step - rng.uniform(0, JITTER_S), 3),
            "input": "translate this",
            "output": "traduire ceci",
            "metrics": {
                "latency_ms": round(rng.lognormvariate(3.5, 0.6), 2),
                "memory_mb": round(rng.uniform(200, 4000), 1),
                "cpu_percent": round(rng.uniform(1, 100), 1),
                "success": ok,
                "quality_score": round(rng.random(), 3),
            },
            "status": "ok" if ok else "error",
        }
        out.append((where[engine], engine.encode(), orjson.dumps(doc)))
    return Workload(out, engines, span_s)


@dataclass(frozen=True, slots=True)
class InputMessage:
    """One message for engine.executions."""

    partition: int
    key: bytes | None
    value: bytes
    events: int


def single_messages(work: Workload) -> list[InputMessage]:
    """One event per message, keyed by its engine id, in time order."""
    return [InputMessage(p, key, body, 1) for p, key, body in work.events]


def batched_messages(work: Workload, batch: int) -> list[InputMessage]:
    """JSON arrays of up to `batch` events of one partition, in time order (the shape
    the router and the SDK write: no key unless every event is of one engine)."""
    by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
    for p, engine, body in work.events:
        by_partition.setdefault(p, []).append((engine, body))
    out: list[InputMessage] = []
    for p, items in sorted(by_partition.items()):
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            keys = {k for k, _ in chunk}
            shared: bytes | None = next(iter(keys)) if len(keys) == 1 else None
            value = b"[" + b",".join(b for _, b in chunk) + b"]"
            out.append(InputMessage(p, shared, value, len(chunk)))
    return out


async def produce_input(settings: Settings, topic: str, messages: list[InputMessage]) -> float:
    """Produce `messages` to their partitions of `topic` (acks=all); answer seconds."""
    producer = AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        linger_ms=20,
        max_batch_size=1024 * 1024,
        max_request_size=MAX_BYTES,
    )
    await producer.start()
    started = time.monotonic()
    try:
        futures = [
            await producer.send(topic, m.value, key=m.key, partition=m.partition)
            for m in messages
        ]
        await producer.flush()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.monotonic() - started


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """End offset of every partition of `topic`."""
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: int(offset) for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def wait_committed(
    settings: Settings, group: str, topic: str, ends: dict[int, int], timeout: float = 60.0
) -> float | None:
    """Poll `group`'s committed offsets on `topic` until they reach `ends`; answer the
    epoch time they did (None on timeout)."""
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=10_000)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            offsets = await admin.list_consumer_group_offsets(group)
            got = {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
            if all(got.get(p, -1) >= end for p, end in ends.items() if end > 0):
                return time.time()
            await asyncio.sleep(0.1)
        return None
    finally:
        await admin.close()


async def delete_topics(settings: Settings, run_id: str) -> int:
    """Delete every topic whose name holds `run_id`: the inputs, the worker's outputs
    and internal topics, Quix's changelog and repartition topics. Answer how many."""
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=30_000)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if run_id in t]
        if names:
            await admin.delete_topics(names)
        return len(names)
    finally:
        await admin.close()


# --------------------------------------------------------------------------- results


@dataclass
class RunResult:
    """One system on one input shape."""

    shape: str
    system: str
    events: int
    input_messages: int
    events_done: int
    elapsed_s: float  # first input in hand -> last event applied
    events_per_s: float
    ready_to_first_s: float | None
    done_to_committed_s: float | None
    cpu_s: dict[str, float]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    profile: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    repeat: int = 0


def _result(
    shape: str,
    system: str,
    work: Workload,
    n_messages: int,
    done_events: int,
    ready_at: float | None,
    first_at: float,
    done_at: float,
    committed_at: float | None,
    meter: CpuMeter,
    load_before: tuple[float, float, float],
    **extra: Any,
) -> RunResult:
    elapsed = done_at - first_at
    return RunResult(
        shape=shape,
        system=system,
        events=work.total,
        input_messages=n_messages,
        events_done=done_events,
        elapsed_s=round(elapsed, 3),
        events_per_s=round(work.total / elapsed, 1),
        ready_to_first_s=None if ready_at is None else round(first_at - ready_at, 3),
        done_to_committed_s=None if committed_at is None else round(committed_at - done_at, 3),
        cpu_s=meter.used(),
        load_before=load_before,
        load_after=os.getloadavg(),
        **extra,
    )


# --------------------------------------------------------------------------- worker


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy (if installed in this environment) sampling `pid` into `out` (collapsed
    stacks) until stopped with SIGINT."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        print("  (py-spy not installed: no profile)", flush=True)
        return None
    return subprocess.Popen(
        [str(spy), "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
         "--nonblocking", "--threads", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_profiler(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop py-spy; it writes its output on SIGINT."""
    if proc is None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


async def run_worker(
    settings: Settings,
    shape: str,
    prefix: str,
    work: Workload,
    n_messages: int,
    ends: dict[int, int],
    tmp: Path,
    broker: int | None,
    profile_to: Path | None,
    with_sinks: bool,
    system: str = "worker",
    rep: int = 0,
) -> RunResult:
    """Start `enginestream worker` on the pre-produced topic; measure its window agent.
    `system` "worker-faust-stream": the same worker with faust's per-message path (see
    faust_stream_child)."""
    app_id = f"bw-{system}-r{rep}-{prefix.rstrip('.')}"
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "ENGINESTREAM_TOPIC_PREFIX": prefix,
        "ENGINESTREAM_APP_ID": app_id,
        "ENGINESTREAM_DATA_DIR": str(tmp / f"data-{system}-{shape}-{rep}"),
        "ENGINESTREAM_WEB_PORT": str(free_port()),
        "ENGINESTREAM_PARTITIONS": str(settings.partitions),
        "ENGINESTREAM_LOG_LEVEL": "warning",
    }
    if not with_sinks:
        # The JSONL sink of engine.executions (events.jsonl) reads the same topic: off,
        # so that the figures are the window agent's (see README.md).
        env["ENGINESTREAM_SINK_EVENTS_ENABLED"] = "false"
    log = tmp / f"{system}-{shape}-{rep}.log"
    worker = WorkerProcess(env, log) if system == "worker" else FaustStreamWorker(env, log)
    load_before = os.getloadavg()
    worker.start()
    assert worker.proc is not None
    pids = {"worker": worker.proc.pid, "broker": broker}
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
            if ready_at is None:
                try:
                    status, body = await asyncio.to_thread(worker.get_json, "/health", 2.0)
                    if status == 200 and isinstance(body, dict) and body.get("ready"):
                        ready_at = time.time()
                        meter = CpuMeter(pids)
                        if profile_to is not None:
                            spy = start_profiler(worker.proc.pid, profile_to)
                except (OSError, ValueError):
                    pass
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
                if stats.get("events_in", 0) >= work.total:
                    break
            await asyncio.sleep(POLL_S)
        stop_profiler(spy)
        spy = None
        if meter is None:  # done before /health ever answered ready
            meter = CpuMeter(pids)
        committed_at = await wait_committed(
            settings, app_id, TopicNames(prefix).typed["engine_execution"], ends
        )
        return _result(
            shape,
            system,
            work,
            n_messages,
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


class FaustStreamWorker(WorkerProcess):
    """`enginestream worker` through this module's `--worker-child faust-stream`."""

    def start(self) -> FaustStreamWorker:
        """Start the worker (does not wait)."""
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.windows.run", "--worker-child", "faust-stream"],
            env=self.env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self


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

    consumer.install = lambda app: None
    app_module.keep_root_log_level = lambda app, level: None
    window_agent.BulkConsumer = StreamAgentConsumer  # type: ignore[assignment,misc]
    cli.main(["worker"])


# --------------------------------------------------------------------------- children


async def run_child(
    settings: Settings,
    system: str,
    shape: str,
    topic: str,
    work: Workload,
    n_messages: int,
    ends: dict[int, int],
    tmp: Path,
    broker: int | None,
    rep: int = 0,
) -> RunResult:
    """Run a baseline or Quix (a subprocess of this module); measure it from the lines
    it prints: READY <t>, FIRST <t>, DONE <t> <events>."""
    # The group name holds the run id (see delete_topics).
    group = f"bw-{system}-r{rep}-{topic.split('.')[0]}"
    log = tmp / f"{system}-{shape}-{rep}.log"
    args = [
        sys.executable, "-m", "bench.windows.run", "--child", system,
        "--bootstrap", settings.bootstrap_servers, "--topic", topic,
        "--partitions", str(settings.partitions), "--total", str(work.total),
        "--group", group, "--state-dir", str(tmp / f"state-{system}-{shape}-{rep}"),
        "--shape", shape,
    ]  # fmt: skip
    load_before = os.getloadavg()
    with open(log, "wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=err
        )
    pids = {system: proc.pid, "broker": broker}
    meter: CpuMeter | None = None  # from READY (or FIRST) on, as for the worker
    marks: dict[str, float] = {}
    done_events = 0
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + DEADLINE_S
        while "DONE" not in marks:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{system} did not finish in {DEADLINE_S}s; log {log}")
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), min(left, 1.0))
            except TimeoutError:
                if meter is not None:
                    meter.sample()
                continue
            if not line:
                raise RuntimeError(f"{system} exited (code {await proc.wait()}); log {log}")
            parts = line.decode().split()
            if parts and parts[0] in ("READY", "FIRST", "DONE"):
                marks.setdefault(parts[0], float(parts[1]))
                if meter is None:
                    meter = CpuMeter(pids)
                if parts[0] == "DONE":
                    done_events = int(parts[2])
            if meter is not None:
                meter.sample()
        assert meter is not None
        meter.sample()
        committed_at = None
        if system == "quix":
            committed_at = await wait_committed(settings, group, topic, ends)
        return _result(
            shape,
            system,
            work,
            n_messages,
            done_events,
            marks.get("READY"),
            marks["FIRST"],
            marks["DONE"],
            committed_at,
            meter,
            load_before,
        )
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _mark(what: str, *rest: Any) -> None:
    print(what, f"{time.time():.6f}", *rest, flush=True)


async def baseline_main(
    bootstrap: str, topic: str, partitions: int, total: int, stats: bool
) -> None:
    """The plain loop: read `topic` from the beginning to its current end, aggregate
    every event into its (engine, 60 s window)."""
    from streams.domain.aggregates import ExecutionStats

    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_BYTES,
        fetch_max_bytes=4 * MAX_BYTES,
    )
    await consumer.start()
    windows: dict[tuple[str, int], Any] = {}
    loads = orjson.loads
    floor = math.floor
    done = 0
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            await consumer.position(tp)
        _mark("READY")
        pending = {tp for tp in tps if ends[tp] > 0}
        first = True
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            if batch and first:
                _mark("FIRST")
                first = False
            for records in batch.values():
                for rec in records:
                    value = loads(rec.value)
                    docs = value if isinstance(value, list) else (value,)
                    for doc in docs:
                        key = (doc["engine_id"], floor(doc["timestamp"] / WINDOW_S) * WINDOW_S)
                        if stats:
                            acc = windows.get(key)
                            if acc is None:
                                acc = windows[key] = ExecutionStats()
                            acc.add(doc)
                        else:
                            lat = doc["metrics"]["latency_ms"]
                            w = windows.get(key)
                            if w is None:
                                windows[key] = [1, lat, lat, lat]
                            else:
                                w[0] += 1
                                w[1] += lat
                                if lat < w[2]:
                                    w[2] = lat
                                if lat > w[3]:
                                    w[3] = lat
                    done += len(docs)
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
        _mark("DONE", done, len(windows))
    finally:
        await consumer.stop()
    if done != total:
        print(f"expected {total} events, read {done}", file=sys.stderr)


def quix_main(
    bootstrap: str, topic_name: str, group: str, state_dir: str, total: int, shape: str
) -> None:
    """Quix Streams: 60 s tumbling windows per engine over the event time."""
    from quixstreams import Application
    from quixstreams.dataframe.windows import Count, Max, Min, Sum

    def on_assign(*_: Any) -> None:
        if not ready[0]:
            ready[0] = True
            _mark("READY")

    ready = [False]
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=state_dir,
        loglevel="WARNING",
        consumer_extra_config={"max.partition.fetch.bytes": MAX_BYTES},
    )

    def event_time(value: Any, headers: Any, timestamp: int, timestamp_type: Any) -> int:
        if isinstance(value, dict):
            return int(value["timestamp"] * 1000)
        return timestamp  # a batch: each event gets its own time below

    topic = app.topic(
        topic_name,
        value_deserializer="json",
        key_deserializer="bytes",
        timestamp_extractor=event_time,
    )
    sdf = app.dataframe(topic)
    if shape == "batch":
        sdf = sdf.apply(lambda batch: batch, expand=True)
        sdf = sdf.set_timestamp(lambda value, key, ts, headers: int(value["timestamp"] * 1000))
        sdf = sdf.group_by("engine_id")
    count = [0]

    def counted(event: dict[str, Any]) -> dict[str, Any]:
        if count[0] == 0:
            _mark("FIRST")
        count[0] += 1
        if count[0] == total:
            _mark("DONE", total)
        return {"latency_ms": event["metrics"]["latency_ms"]}

    sdf = sdf.apply(counted)
    sdf = (
        sdf.tumbling_window(WINDOW_S * 1000, grace_ms=5_000)
        .agg(
            count=Count(),
            latency_sum=Sum("latency_ms"),
            latency_min=Min("latency_ms"),
            latency_max=Max("latency_ms"),
        )
        .final()
    )
    consumer_assign = app._on_assign  # what Quix subscribes with (in run): wrap it

    def assigned(*args: Any, **kwargs: Any) -> Any:
        on_assign()
        return consumer_assign(*args, **kwargs)

    app._on_assign = assigned  # type: ignore[method-assign]
    app.run()


# --------------------------------------------------------------------------- report


def table(results: list[RunResult]) -> str:
    """The results as a plain-text table."""
    head = (
        f"{'shape':<7} {'system':<19} {'msgs':>7} {'elapsed s':>9} {'events/s':>10} "
        f"{'rdy>1st':>7} {'>commit':>7}  cpu s"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        cpu = " ".join(f"{k}={v:.1f}" for k, v in r.cpu_s.items() if k != "window_s")
        rdy = "" if r.ready_to_first_s is None else f"{r.ready_to_first_s:.2f}"
        com = "" if r.done_to_committed_s is None else f"{r.done_to_committed_s:.2f}"
        lines.append(
            f"{r.shape:<7} {r.system:<19} {r.input_messages:>7} {r.elapsed_s:>9.2f} "
            f"{r.events_per_s:>10.0f} {rdy:>7} {com:>7}  {cpu}"
        )
    return "\n".join(lines)


def medians(results: list[RunResult]) -> dict[tuple[str, str], float]:
    """Median events/s per (shape, system) over the repetitions."""
    rates: dict[tuple[str, str], list[float]] = {}
    for r in results:
        rates.setdefault((r.shape, r.system), []).append(r.events_per_s)
    return {key: round(statistics.median(values), 1) for key, values in rates.items()}


def ratios(results: list[RunResult]) -> dict[str, dict[str, float]]:
    """Per shape, from the medians: the worker's events/s over each other system's
    (and over Quix's best figure of any shape)."""
    rate = medians(results)
    quix_best = max((v for (_, system), v in rate.items() if system == "quix"), default=None)
    out: dict[str, dict[str, float]] = {}
    for (shape, system), value in rate.items():
        if system != "worker":
            continue
        mine = out.setdefault(shape, {})
        for (other_shape, other), other_value in rate.items():
            if other_shape == shape and other != "worker":
                mine[f"worker/{other}"] = round(value / other_value, 2)
        if quix_best:
            mine["worker/quix_best"] = round(value / quix_best, 2)
    return out


# --------------------------------------------------------------------------- main


async def run_system(
    args: argparse.Namespace,
    settings: Settings,
    system: str,
    shape: str,
    prefix: str,
    topic: str,
    work: Workload,
    n_messages: int,
    ends: dict[int, int],
    tmp: Path,
    broker: int | None,
    rep: int,
) -> RunResult:
    """One run of one system (repetition `rep`: its own consumer group)."""
    if system in ("worker", "worker-faust-stream"):
        profile = None
        if args.profile:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            profile = args.out.parent / f"{args.out.stem}-profile-{system}-{shape}-{rep}.txt"
        result = await run_worker(
            settings, shape, prefix, work, n_messages, ends, tmp, broker, profile,
            args.with_sinks, system, rep,
        )  # fmt: skip
    else:
        result = await run_child(
            settings, system, shape, topic, work, n_messages, ends, tmp, broker, rep
        )
    result.repeat = rep
    return result


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run every scenario; answer the results document."""
    settings = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            "ENGINESTREAM_PARTITIONS": str(args.partitions),
        }
    )
    started = time.time()
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    work = make_workload(args.events, args.engines, args.span_s, args.partitions)
    shapes = {"single": single_messages(work), "batch": batched_messages(work, args.batch)}
    run_id = uuid.uuid4().hex[:8]
    broker = broker_pid()
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    results: list[RunResult] = []
    inputs: dict[str, dict[str, float]] = {}
    print(
        f"workload: {work.total} events of {work.engines} engines over {work.span_s:.0f}s "
        f"of event time; run {run_id}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-windows-") as tmp_name:
        tmp = Path(tmp_name)
        for shape in args.shapes.split(","):
            messages = shapes[shape]
            prefix = f"benchw{run_id}-{shape}."
            shaped = Settings.from_env(
                {
                    "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
                    "ENGINESTREAM_PARTITIONS": str(args.partitions),
                    "ENGINESTREAM_TOPIC_PREFIX": prefix,
                }
            )
            await ensure_topics(shaped)
            await asyncio.sleep(1.0)  # let the new partitions' leaders settle
            topic = TopicNames(prefix).typed["engine_execution"]
            seconds = await produce_input(settings, topic, messages)
            ends = await end_offsets(settings, topic)
            inputs[shape] = {"messages": len(messages), "produce_s": round(seconds, 2)}
            print(f"{shape}: produced {len(messages)} messages in {seconds:.1f}s", flush=True)
            for rep in range(args.repeat):
                for system in systems:
                    result = await run_system(
                        args, settings, system, shape, prefix, topic, work, len(messages),
                        ends, tmp, broker, rep,
                    )  # fmt: skip
                    results.append(result)
                    print(
                        f"  {system:<19} {result.events_per_s:>10.0f} events/s "
                        f"({result.elapsed_s:.2f}s, cpu {result.cpu_s}, "
                        f"load {result.load_before[0]:.2f}->{result.load_after[0]:.2f})",
                        flush=True,
                    )
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    if not args.keep_topics:
        print(f"deleted {await delete_topics(settings, run_id)} topics of run {run_id}")
    print()
    print(table(results))
    doc = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "run_id": run_id,
        "events": work.total,
        "engines": work.engines,
        "span_s": work.span_s,
        "batch": args.batch,
        "partitions": args.partitions,
        "repeat": args.repeat,
        "profiled": bool(args.profile),
        "worker_sinks": "all" if args.with_sinks else "events.jsonl sink off",
        "inputs": inputs,
        "machine": machine(),
        "uptime_before": uptime_before,
        "uptime_after": uptime_after,
        "results": [asdict(r) for r in results],
        "median_events_per_s": {f"{k[0]}/{k[1]}": v for k, v in medians(results).items()},
        "ratios": ratios(results),
    }
    print(f"\nmedian events/s: {doc['median_events_per_s']}")
    print(f"ratios: {doc['ratios']}")
    print(f"uptime before: {uptime_before}\nuptime after:  {uptime_after}")
    return doc


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.windows.run", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--engines", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=500, help="events per batch message")
    parser.add_argument("--span-s", type=float, default=2000.0, help="seconds of event time")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each system (ratios use medians)"
    )
    parser.add_argument("--shapes", default="single,batch")
    parser.add_argument(
        "--systems",
        default="worker,worker-faust-stream,baseline-dict,baseline-stats,quix",
        help="in order; worker-faust-stream is the worker with faust's per-message path",
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the worker (slows it a little)"
    )
    parser.add_argument(
        "--with-sinks",
        action="store_true",
        help="keep the worker's events.jsonl sink (it reads the same topic)",
    )
    parser.add_argument(
        "--keep-topics", action="store_true", help="do not delete the run's topics at the end"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    # A child process of this module (a baseline or Quix).
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--worker-child", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--total", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    parser.add_argument("--state-dir", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    args = parse_args(argv)
    if args.worker_child == "faust-stream":
        faust_stream_child()
        return
    if args.child in ("baseline-dict", "baseline-stats"):
        asyncio.run(
            baseline_main(
                args.bootstrap, args.topic, args.partitions, args.total,
                args.child == "baseline-stats",
            )
        )  # fmt: skip
        return
    if args.child == "quix":
        quix_main(args.bootstrap, args.topic, args.group, args.state_dir, args.total, args.shape)
        return
    doc = asyncio.run(bench(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
