"""Router throughput: the Faust router against a plain aiokafka loop, on a real broker.

    .venv/bin/python -m bench.router.run [--events 200000] [--batch 500]
                                         [--out bench/router/results/latest.json]

Two input shapes of the same events (one event per message; JSON arrays of up to
`--batch` events of one type), each pre-produced to a fresh prefixed `engine.ingest`
before any consumer starts, then processed by:

* the router: one `enginestream worker` subprocess (streams.runtime.processes.WorkerProcess);
* the baseline: a plain asyncio loop in a subprocess (this module, `--baseline-child`):
  aiokafka consumer -> orjson.loads -> jsonschema Draft7Validator -> aiokafka producer,
  one output message per event;
* the same baseline validating with fastjsonschema first (streams.domain.validation's fast
  path, which the router uses), so that the comparison can be read both ways.

Every output topic is created here with `message.timestamp.type=LogAppendTime`, so
each output message carries the broker's time of append. Elapsed time for a run is
from the moment the processor's own code has its first input message in hand
(router: first call of Router.route, stamped by a wrapper in `--router-child`;
baseline: first non-empty fetch) to the append time of the last output message. The
run is over when the events counted on the outputs (elements of JSON arrays on the
typed topics, messages on the dead-letter topic) add up to the number of input
events; the counts are also checked per type and against the invalid events made.
See README.md for why (the worker's /health "ready" can come late), and the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from jsonschema import Draft7Validator
from jsonschema.exceptions import best_match

from streams.config.settings import Settings
from streams.config.topics import EVENT_ROUTES, EVENT_TYPES, TopicNames
from streams.domain.validation import SCHEMA_DIR, default_registry
from streams.kafka.admin import client_options, describe_topics
from streams.kafka.fleet import Fleet
from streams.runtime.processes import WorkerProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = ROOT / "ops" / "kafka" / "kafka.sh"
POM = ROOT / "ops" / "kafka" / "pom.xml"
MAX_BYTES = 8 * 1024 * 1024
INVALID_SHARE = 0.02
DEADLINE_S = 600.0
# The outputs are counted once they have been quiet this long (see OutputCounter).
QUIET_S = 2.0
POLL_S = 0.05
TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}
LOG_APPEND_TIME = 1
# Names the file where a processor writes when its first input message was in hand.
STAMP_ENV = "BENCH_ROUTER_STAMP"


# --------------------------------------------------------------------------- input


@dataclass
class Workload:
    """The benchmark's events, encoded once, and what the outputs must hold."""

    encoded: list[tuple[str, bytes]]  # (event_type, JSON bytes), in generation order
    invalid: int
    valid_per_type: Counter[str]

    @property
    def total(self) -> int:
        """Number of input events."""
        return len(self.encoded)


def make_workload(n: int, seed: int = 1, bad_seed: int = 2) -> Workload:
    """`n` fleet events (seeded), about 2% of them made invalid by removing their
    required entity-id field; each checked against the shipped schemas."""
    registry = default_registry()
    fleet = Fleet(rng=random.Random(seed), engines=50).mixed()
    bad = random.Random(bad_seed)
    encoded: list[tuple[str, bytes]] = []
    valid: Counter[str] = Counter()
    invalid = 0
    for _ in range(n):
        event_type, doc = next(fleet)
        if bad.random() < INVALID_SHARE:
            del doc[EVENT_ROUTES[event_type].key_field]
            if registry.check(event_type, doc) is None:
                raise AssertionError(f"{event_type} without its key field still validates")
            invalid += 1
        else:
            violation = registry.check(event_type, doc)
            if violation is not None:
                raise AssertionError(f"the fleet made an invalid {event_type}: {violation}")
            valid[event_type] += 1
        encoded.append((event_type, orjson.dumps(doc)))
    return Workload(encoded, invalid, valid)


@dataclass(frozen=True, slots=True)
class InputMessage:
    """One message for engine.ingest."""

    event_type: str
    value: bytes
    events: int


def single_messages(work: Workload) -> list[InputMessage]:
    """One event per message, in generation order (types mixed)."""
    return [InputMessage(t, body, 1) for t, body in work.encoded]


def batched_messages(work: Workload, batch: int) -> list[InputMessage]:
    """JSON arrays of up to `batch` events of one type (events grouped by type)."""
    by_type: dict[str, list[bytes]] = {}
    for event_type, body in work.encoded:
        by_type.setdefault(event_type, []).append(body)
    out: list[InputMessage] = []
    for event_type, bodies in by_type.items():
        for start in range(0, len(bodies), batch):
            chunk = bodies[start : start + batch]
            out.append(InputMessage(event_type, b"[" + b",".join(chunk) + b"]", len(chunk)))
    return out


# --------------------------------------------------------------------------- kafka


async def create_topics(settings: Settings, names: list[str]) -> None:
    """Create `names` (none may exist) with the settings' partition count and
    LogAppendTime timestamps; wait until their metadata shows every partition."""
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=15_000)
    await admin.start()
    try:
        response = await admin.create_topics(
            [
                NewTopic(
                    name,
                    settings.partitions,
                    settings.replication_factor,
                    topic_configs=TOPIC_CONFIG,
                )
                for name in names
            ]
        )
        for name, code, *rest in response.topic_errors:
            if code != 0:
                raise RuntimeError(f"creating topic {name} failed: error {code} {rest}")
    finally:
        await admin.close()
    states = await describe_topics(settings, names)
    short = [s.name for s in states if s.partitions != settings.partitions]
    if len(states) != len(names) or short:
        raise RuntimeError(f"topics not ready: {short or names}")
    await _wait_for_leaders(settings, names)


async def _wait_for_leaders(settings: Settings, names: list[str], timeout: float = 30.0) -> None:
    """Wait until every partition of `names` has a leader (a fresh topic may show its
    partitions in metadata before their leaders are elected)."""
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=15_000)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            described = await admin.describe_topics(names)
            leaderless = [
                f"{t['topic']}:{p['partition']}"
                for t in described
                for p in t["partitions"]
                if p.get("leader", -1) < 0
            ]
            if not leaderless and len(described) == len(names):
                # Leaders are known before they serve: give them a moment.
                await asyncio.sleep(1.0)
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"partitions without a leader: {leaderless[:5]}")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def produce_input(settings: Settings, topic: str, messages: list[InputMessage]) -> float:
    """Produce `messages` round-robin over the partitions of `topic` (acks=all);
    answer the seconds it took."""
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
        futures = []
        for i, msg in enumerate(messages):
            futures.append(
                await producer.send(
                    topic,
                    msg.value,
                    partition=i % settings.partitions,
                    headers=[("event-type", msg.event_type.encode())],
                )
            )
        await producer.flush()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.monotonic() - started


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of process `pid` so far (None if it is gone)."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_pid() -> int | None:
    """The local broker's pid, as ops/kafka/kafka.sh reports it (None if not local)."""
    try:
        out = subprocess.run(
            [str(KAFKA_SH), "status"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"pid (\d+)", out)
    return int(found.group(1)) if found else None


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine so far, all cores (from /proc/stat)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return 0.0
    # user nice system idle iowait irq softirq steal ...: busy = all but idle, iowait
    values = [int(v) for v in first[1:9]]
    busy = sum(values) - values[3] - values[4]
    return busy / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Samples the CPU seconds of a few processes; keeps the last value of each, so a
    process that exits keeps its last sample (at most one poll interval short).

    Also samples the whole machine: `used()` then has "all" (every process, all cores)
    and "other" (all minus the processes named and this one): what other users of the
    machine took while this run was measured."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.first["bench"] = self.last["bench"] = time.process_time()
        self.first_at = self.last_at = time.monotonic()
        self.sample()
        self.first.update({k: v for k, v in self.last.items() if k != "bench"})

    def sample(self) -> None:
        """Take one sample of every process."""
        for name, pid in self.pids.items():
            value = cpu_seconds(pid)
            if value is not None:
                self.last[name] = value
        self.last["bench"] = time.process_time()
        self.last["all"] = machine_cpu_seconds()
        self.last_at = time.monotonic()

    def used(self) -> dict[str, float]:
        """CPU seconds each process used between the first and the last sample, and
        that window's length ("window_s": it runs past the last output, see
        OutputCounter)."""
        used = {k: self.last[k] - v for k, v in self.first.items() if k in self.last}
        ours = sum(v for k, v in used.items() if k != "all")
        used["other"] = max(0.0, used.get("all", 0.0) - ours)
        used["window_s"] = self.last_at - self.first_at
        return {k: round(v, 2) for k, v in used.items()}


@dataclass
class Measurement:
    """What the outputs held at the end of one run, and when."""

    typed_events: dict[str, int] = field(default_factory=dict)
    typed_messages: int = 0
    dead_letters: int = 0
    first_append_ms: int | None = None
    last_append_ms: int | None = None
    non_log_append: int = 0

    @property
    def total(self) -> int:
        """Events accounted for: typed events plus dead letters."""
        return sum(self.typed_events.values()) + self.dead_letters


class OutputCounter:
    """Counts the events on a set of output topics, read from the beginning.

    While a run goes on it only polls end offsets (cheap for the processes being
    measured); once the outputs have been quiet for QUIET_S it reads what is new and
    counts it, and goes back to polling if the count is still short."""

    def __init__(self, settings: Settings, names: TopicNames) -> None:
        self.settings = settings
        self.names = names
        self.type_of = {topic: t for t, topic in names.typed.items()}
        topics = [*names.typed.values(), names.dead_letter]
        self.tps = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
        self.consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=MAX_BYTES,
            fetch_max_bytes=4 * MAX_BYTES,
            fetch_max_wait_ms=100,
        )
        self.result = Measurement(typed_events={t: 0 for t in names.typed})
        self.counted_messages = 0

    async def start(self) -> None:
        """Connect, and position at the start of every output partition."""
        await self.consumer.start()
        self.consumer.assign(self.tps)
        await self.consumer.seek_to_beginning(*self.tps)

    async def stop(self) -> None:
        """Disconnect."""
        await self.consumer.stop()

    async def end_total(self) -> int:
        """Messages on the outputs now (sum of end offsets)."""
        ends = await self.consumer.end_offsets(self.tps)
        return int(sum(ends.values()))

    async def drain(self) -> None:
        """Read and count every output message up to the current end offsets."""
        ends = await self.consumer.end_offsets(self.tps)
        pending = {tp for tp in self.tps if await self.consumer.position(tp) < ends[tp]}
        while pending:
            batch = await self.consumer.getmany(*pending, timeout_ms=500, max_records=20_000)
            for tp, records in batch.items():
                for rec in records:
                    self._count(tp.topic, rec.value or b"", rec.timestamp, rec.timestamp_type)
            pending = {tp for tp in pending if await self.consumer.position(tp) < ends[tp]}

    def _count(self, topic: str, value: bytes, stamp: int, stamp_type: int) -> None:
        res = self.result
        self.counted_messages += 1
        if stamp_type != LOG_APPEND_TIME:
            res.non_log_append += 1
        res.first_append_ms = (
            stamp if res.first_append_ms is None else min(res.first_append_ms, stamp)
        )
        res.last_append_ms = stamp if res.last_append_ms is None else max(res.last_append_ms, stamp)
        if topic == self.names.dead_letter:
            res.dead_letters += 1
            return
        event_type = self.type_of[topic]
        res.typed_messages += 1
        events = len(orjson.loads(value)) if value[:1] == b"[" else 1
        res.typed_events[event_type] += events

    async def wait_for(
        self, expected: int, check_alive: Callable[[], None], meter: CpuMeter
    ) -> Measurement:
        """Block until the outputs account for `expected` events; fail after
        DEADLINE_S, on more events than expected, or when `check_alive` raises."""
        deadline = time.monotonic() + DEADLINE_S
        last_end, last_change = -1, time.monotonic()
        while True:
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(
                    f"outputs hold {self.result.total} of {expected} events after "
                    f"{DEADLINE_S:.0f}s: {self.result}"
                )
            meter.sample()
            end = await self.end_total()
            if end != last_end:
                last_end, last_change = end, now
            elif end > self.counted_messages and now - last_change >= QUIET_S:
                await self.drain()
                if self.result.total == expected:
                    return self.result
                if self.result.total > expected:
                    raise AssertionError(
                        f"outputs hold {self.result.total} events, more than the "
                        f"{expected} sent: {self.result}"
                    )
            check_alive()
            await asyncio.sleep(POLL_S)


# --------------------------------------------------------------------------- runs


@dataclass
class RunResult:
    """One processor on one input shape."""

    shape: str
    system: str
    events: int
    input_messages: int
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


def _env(settings: Settings, prefix: str, app_id: str, data_dir: Path) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "ENGINESTREAM_TOPIC_PREFIX": prefix,
        "ENGINESTREAM_APP_ID": app_id,
        "ENGINESTREAM_DATA_DIR": str(data_dir),
        "ENGINESTREAM_WEB_PORT": str(free_port()),
        "ENGINESTREAM_PARTITIONS": str(settings.partitions),
        "ENGINESTREAM_LOG_LEVEL": "warning",
    }


async def _health_ready_at(worker: WorkerProcess, timeout: float = 120.0) -> float | None:
    """The epoch time at which the worker's /health first answered ready, polling every
    POLL_S (None if it never did). The answer can come late: the web view shares the
    event loop with the router agent, so it waits while the agent routes a chunk."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.proc is not None and worker.proc.poll() is not None:
            return None
        try:
            status, body = await asyncio.to_thread(worker.get_json, "/health", 2.0)
            if status == 200 and isinstance(body, dict) and body.get("ready"):
                return time.time()
        except (OSError, ValueError):
            pass
        await asyncio.sleep(POLL_S)
    return None


async def _wait_stamp(stamp: Path, alive: Callable[[], None], timeout: float = 120.0) -> float:
    """Wait until the processor has written the epoch time at which its processing
    code got its first input message to `stamp`; answer that time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive()
        try:
            text = stamp.read_text().strip()
            if text:
                return float(text)
        except OSError:
            pass
        await asyncio.sleep(POLL_S)
    raise TimeoutError(f"no input message processed within {timeout}s")


def _tail(log: Path, lines: int = 40) -> str:
    """The last lines of a processor's log, to quote in an error."""
    try:
        text = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n--- log tail ---\n" + "\n".join(text)


def write_stamp(path: str | None) -> None:
    """Record now (epoch seconds) in `path`: the first input message is in hand."""
    if path:
        tmp = Path(path + ".tmp")
        tmp.write_text(f"{time.time():.6f}\n")
        tmp.replace(path)


class ProbedWorker(WorkerProcess):
    """A worker started through this module's `--router-child` (see router_child),
    which adds a stamp of the moment the router gets its first message (STAMP_ENV)."""

    def __init__(self, env: dict[str, str], log_path: Path, full_worker: bool) -> None:
        super().__init__(env, log_path)
        self.full_worker = full_worker

    def start(self) -> ProbedWorker:
        """Start the worker (does not wait)."""
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        flags = ["--full-worker"] if self.full_worker else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.router.run", "--router-child", *flags],
            env=self.env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self


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

    def first_route(self: Router, msg: Inbound) -> Routing:
        write_stamp(os.environ.get(STAMP_ENV))
        Router.route = original  # type: ignore[method-assign]
        return original(self, msg)

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
    env = {**_env(settings, prefix, app_id, tmp / f"data-{shape}"), STAMP_ENV: str(stamp)}
    worker = ProbedWorker(env, log, full_worker)
    load_before = os.getloadavg()
    worker.start()
    health = asyncio.create_task(_health_ready_at(worker))
    try:
        assert worker.proc is not None

        def alive() -> None:
            if worker.proc is not None and worker.proc.poll() is not None:
                raise RuntimeError(
                    f"worker died (code {worker.proc.returncode}); log: {log}{_tail(log)}"
                )

        started_at = await _wait_stamp(stamp, alive)
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
    """Run the plain loop (a subprocess of this module) from `ingest` to the topics
    of `out_prefix`; measure it."""
    names = TopicNames(out_prefix)
    await create_topics(settings, [*names.typed.values(), names.dead_letter])
    counter = OutputCounter(settings, names)
    await counter.start()
    log = tmp / f"baseline-{validator}-{shape}.log"
    stamp = tmp / f"baseline-{validator}-{shape}.stamp"
    load_before = os.getloadavg()
    with open(log, "wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.router.run",
            "--baseline-child",
            "--bootstrap",
            settings.bootstrap_servers,
            "--in-topic",
            ingest,
            "--out-prefix",
            out_prefix,
            "--partitions",
            str(settings.partitions),
            "--validator",
            validator,
            cwd=ROOT,
            env={**os.environ, STAMP_ENV: str(stamp)},
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if not line.startswith(b"READY "):
            raise RuntimeError(f"baseline did not start: {line!r}; log: {log}")
        ready_at = float(line.split()[1])

        def alive() -> None:
            if proc.returncode not in (None, 0):
                raise RuntimeError(
                    f"baseline died (code {proc.returncode}); log: {log}{_tail(log)}"
                )

        waiter = asyncio.create_task(proc.wait())
        try:
            started_at = await _wait_stamp(stamp, alive)
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
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
        await counter.stop()


# --------------------------------------------------------------------------- baseline


def _dead_letter(
    rec_topic: str,
    partition: int,
    offset: int,
    index: int | None,
    reason: str,
    message: str,
    original: bytes,
    event_type: str | None,
) -> bytes:
    """A dead-letter record of the same shape as the router's (schemas/v1/dead_letter)."""
    index_part = "-" if index is None else str(index)
    return orjson.dumps(
        {
            "id": f"{rec_topic}/{partition}/{offset}/{index_part}",
            "reason": reason,
            "error": {"message": message},
            "source": {
                "topic": rec_topic,
                "partition": partition,
                "offset": offset,
                "batch_index": index,
            },
            "original": base64.b64encode(original).decode("ascii"),
            "original_size": len(original),
            "original_truncated": False,
            "dead_lettered_at": time.time(),
            "event_type": event_type,
        }
    )


def _validators(kind: str) -> dict[str, Callable[[dict[str, Any]], str | None]]:
    """Per event type: doc -> None when valid, else jsonschema's best error message."""
    out: dict[str, Callable[[dict[str, Any]], str | None]] = {}
    if kind == "fastjsonschema":
        registry = default_registry()
        for event_type in EVENT_TYPES:

            def fast(doc: dict[str, Any], t: str = event_type) -> str | None:
                violation = registry.check(t, doc)
                return None if violation is None else violation.message

            out[event_type] = fast
        return out
    for event_type in EVENT_TYPES:
        validator = Draft7Validator(orjson.loads((SCHEMA_DIR / f"{event_type}.json").read_bytes()))

        def full(doc: dict[str, Any], v: Draft7Validator = validator) -> str | None:
            if v.is_valid(doc):
                return None
            error = best_match(v.iter_errors(doc))
            return "invalid" if error is None else error.message

        out[event_type] = full
    return out


async def baseline_main(
    bootstrap: str, in_topic: str, out_prefix: str, partitions: int, kind: str
) -> None:
    """The plain loop: read `in_topic` from the beginning to its current end, validate
    every event, send each valid one to its typed topic (keyed by its entity id) and
    each invalid one to the dead-letter topic; print READY <epoch> once positioned."""
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    names = TopicNames(out_prefix)
    validators = _validators(kind)
    tps = [TopicPartition(in_topic, p) for p in range(partitions)]
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_BYTES,
        fetch_max_bytes=4 * MAX_BYTES,
    )
    producer = AIOKafkaProducer(**client_options(settings), acks="all", max_request_size=MAX_BYTES)
    await consumer.start()
    await producer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            await consumer.position(tp)
        print(f"READY {time.time():.6f}", flush=True)
        pending = {tp for tp in tps if ends[tp] > 0}
        stamped = False
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            if batch and not stamped:
                write_stamp(os.environ.get(STAMP_ENV))
                stamped = True
            for records in batch.values():
                for rec in records:
                    await _baseline_message(producer, names, validators, rec)
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
        await producer.flush()
    finally:
        await producer.stop()
        await consumer.stop()


async def _baseline_message(
    producer: AIOKafkaProducer,
    names: TopicNames,
    validators: dict[str, Callable[[dict[str, Any]], str | None]],
    rec: Any,
) -> None:
    header_type: str | None = None
    for key, value in rec.headers or ():
        if key == "event-type":
            header_type = value.decode()
    raw: bytes = rec.value or b""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        dead = _dead_letter(
            rec.topic, rec.partition, rec.offset, None, "malformed_json", str(exc), raw, None
        )
        await producer.send(names.dead_letter, dead)
        return
    batch = isinstance(parsed, list)
    docs: Iterable[Any] = parsed if batch else [parsed]
    for index, doc in enumerate(docs):
        position = index if batch else None
        if not isinstance(doc, dict):
            dead = _dead_letter(
                rec.topic,
                rec.partition,
                rec.offset,
                position,
                "not_an_object",
                "not an object",
                orjson.dumps(doc),
                None,
            )
            await producer.send(names.dead_letter, dead)
            continue
        event_type = doc.pop("event_type", None) or header_type
        check = validators.get(event_type) if isinstance(event_type, str) else None
        error = "unknown event type" if check is None else check(doc)
        if error is None and isinstance(event_type, str):
            route = EVENT_ROUTES[event_type]
            await producer.send(
                names.typed[event_type], orjson.dumps(doc), key=doc[route.key_field].encode()
            )
        else:
            dead = _dead_letter(
                rec.topic,
                rec.partition,
                rec.offset,
                position,
                "schema_violation",
                error or "invalid",
                orjson.dumps(doc),
                event_type,
            )
            await producer.send(names.dead_letter, dead)


# --------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    """Where the benchmark ran."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    kafka = "unknown"
    try:
        found = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
        kafka = found.group(1) if found else kafka
    except OSError:
        pass
    try:
        nproc = int(subprocess.run(["nproc"], capture_output=True, text=True).stdout)
    except (OSError, ValueError):
        nproc = os.cpu_count() or 0
    return {
        "nproc": nproc,
        "cpu": cpu,
        "python": platform.python_version(),
        "kafka": kafka,
        "kernel": platform.release(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def table(results: list[RunResult]) -> str:
    """The results as a plain-text table."""
    head = (
        f"{'shape':<8} {'system':<24} {'msgs in':>8} {'elapsed s':>10} {'events/s':>10} "
        f"{'rdy>in s':>8} {'in>out s':>8} {'msgs out':>9} {'dead':>5}  cpu s"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        cpu = " ".join(f"{k}={v:.1f}" for k, v in r.cpu_s.items())
        ready = "" if r.ready_to_first_input_s is None else f"{r.ready_to_first_input_s:.2f}"
        lines.append(
            f"{r.shape:<8} {r.system:<24} {r.input_messages:>8} {r.elapsed_s:>10.2f} "
            f"{r.events_per_s:>10.0f} {ready:>8} {r.first_input_to_first_output_s:>8.2f} "
            f"{r.typed_messages:>9} {r.dead_letters:>5}  {cpu}"
        )
    return "\n".join(lines)


def ratios(results: list[RunResult], baseline: str) -> dict[str, float]:
    """Per shape: router events/s divided by `baseline` events/s."""
    out: dict[str, float] = {}
    for shape in {r.shape for r in results}:
        router = [r for r in results if r.shape == shape and r.system == "router"]
        base = [r for r in results if r.shape == shape and r.system == baseline]
        if router and base:
            out[shape] = round(router[0].events_per_s / base[0].events_per_s, 2)
    return out


# --------------------------------------------------------------------------- main


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run every scenario; answer the results document."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        "ENGINESTREAM_PARTITIONS": str(args.partitions),
    }
    settings = Settings.from_env(env)
    started = time.time()
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    t0 = time.monotonic()
    work = make_workload(args.events)
    shapes = {
        "single": single_messages(work),
        "batch": batched_messages(work, args.batch),
    }
    print(
        f"workload: {work.total} events ({work.invalid} invalid), "
        f"{len(shapes['single'])} single / {len(shapes['batch'])} batch messages, "
        f"made in {time.monotonic() - t0:.1f}s",
        flush=True,
    )
    run_id = uuid.uuid4().hex[:8]
    broker = broker_pid()
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    results: list[RunResult] = []
    inputs: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-router-") as tmp_name:
        tmp = Path(tmp_name)
        for shape in args.shapes.split(","):
            messages = shapes[shape]
            prefix = f"bench{run_id}-{shape}."
            names = TopicNames(prefix)
            specs = names.specs(settings.partitions)
            await create_topics(settings, [s.name for s in specs])
            seconds = await produce_input(settings, names.ingest, messages)
            inputs[shape] = {"messages": len(messages), "produce_s": round(seconds, 2)}
            print(f"{shape}: produced {len(messages)} messages in {seconds:.1f}s", flush=True)
            for system in systems:
                if system == "router":
                    result = await run_router(
                        settings, shape, prefix, work, len(messages), tmp, broker, args.full_worker
                    )
                else:
                    validator = system.removeprefix("baseline-")
                    result = await run_baseline(
                        settings,
                        shape,
                        names.ingest,
                        f"bench{run_id}-{shape}-{validator}.",
                        validator,
                        work,
                        len(messages),
                        tmp,
                        broker,
                    )
                results.append(result)
                print(
                    f"  {system:<24} {result.events_per_s:>10.0f} events/s "
                    f"({result.elapsed_s:.2f}s, cpu {result.cpu_s}, "
                    f"load {result.load_before[0]:.2f}->{result.load_after[0]:.2f})",
                    flush=True,
                )
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print()
    print(table(results))
    doc = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "run_id": run_id,
        "events": work.total,
        "invalid": work.invalid,
        "valid_per_type": dict(work.valid_per_type),
        "batch": args.batch,
        "partitions": settings.partitions,
        "worker": "enginestream worker (all agents)" if args.full_worker else "router agent only",
        "inputs": inputs,
        "machine": machine(),
        "uptime_before": uptime_before,
        "uptime_after": uptime_after,
        "results": [asdict(r) for r in results],
        "ratio_router_over_baseline": ratios(results, "baseline-jsonschema"),
        "ratio_router_over_baseline_fastjsonschema": ratios(results, "baseline-fastjsonschema"),
    }
    print(f"\nratio router/baseline (jsonschema): {doc['ratio_router_over_baseline']}")
    print(
        "ratio router/baseline (fastjsonschema): "
        f"{doc['ratio_router_over_baseline_fastjsonschema']}"
    )
    print(f"uptime before: {uptime_before}\nuptime after:  {uptime_after}")
    return doc


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.router.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--events", type=int, default=200_000, help="input events")
    parser.add_argument("--batch", type=int, default=500, help="events per batch message")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "router" / "results" / "latest.json"
    )
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--shapes", default="single,batch", help="single,batch")
    parser.add_argument(
        "--systems",
        default="router,baseline-jsonschema,baseline-fastjsonschema",
        help="which processors to run, in order",
    )
    # The baseline loop's own process (started by this module).
    parser.add_argument("--baseline-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--full-worker",
        action="store_true",
        help="run `enginestream worker` with all its agents (default: the router agent only)",
    )
    parser.add_argument("--router-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--in-topic", help=argparse.SUPPRESS)
    parser.add_argument("--out-prefix", help=argparse.SUPPRESS)
    parser.add_argument(
        "--validator", choices=("jsonschema", "fastjsonschema"), help=argparse.SUPPRESS
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    args = parse_args(argv)
    if args.router_child:
        router_child(args.full_worker)
        return
    if args.baseline_child:
        asyncio.run(
            baseline_main(
                args.bootstrap, args.in_topic, args.out_prefix, args.partitions, args.validator
            )
        )
        return
    doc = asyncio.run(bench(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
