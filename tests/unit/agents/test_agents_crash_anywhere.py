"""Every agent kind, killed after each single write of its run and taken over by a new
worker, writes every output exactly once, dead letters included.

The broker is the stub producer's record of sends: a write is durable once sent. A
crash after write k keeps writes 1..k (outputs, state, ledgers, in the order the agent
made them); the next worker rebuilds its tables from the changelog writes kept, gets
every input again from offset 0 (the worst case: nothing was committed) in batches of
another size, and runs to the end. Its outputs, taken together with those kept, must
be exactly those of a run without a crash.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import orjson
import pytest

from streams.agents.jobs_agent import apply_job_command
from streams.agents.keyed_state import EventHandler, KeyedState, apply_and_save
from streams.agents.router_agent import RouterProcessor
from streams.agents.sessions_agent import apply_session_event
from streams.agents.sink_agent import ChannelSink
from streams.agents.training_agent import TrainingProcessor
from streams.agents.window_agent import WindowProcessor
from streams.config.channels import CHANNELS, ChannelConfig
from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.router import Router
from streams.domain.validation import default_registry
from streams.domain.windows import WindowConfig, emission_id
from streams.durable import exactly_once
from streams.durable.exactly_once import TableWriter, is_bookkeeping
from streams.durable.filesink import PartitionFile, read_lines
from streams.runtime.router_counters import RouterCounters
from tests.unit.agents.stub_app import Sent, StubProducer, StubTable, StubTails, message

NAMES = TopicNames()
PARTITIONS = {
    topic: 3 for topic in [*NAMES.typed.values(), NAMES.dead_letter, NAMES.metrics_windows]
}
# On a window boundary, so that which events share a window does not depend on when
# the test runs.
NOW = time.time() // 3600 * 3600


class Crashed(Exception):
    """The worker died (the stub producer refuses the write after the last kept one)."""


class CrashingProducer(StubProducer):
    """A stub producer that dies before write number `crash_at` (0-based); writes to
    files count too (`step`)."""

    crash_at: int | None = None
    steps: int = 0

    def step(self) -> None:
        if self.crash_at is not None and self.steps >= self.crash_at:
            raise Crashed()
        self.steps += 1

    async def send(self, *args: Any) -> Any:
        self.step()
        return await super().send(*args)


def kept(sent: list[Sent]) -> CrashingProducer:
    """A producer over the broker's log: the writes made before the crash."""
    producer = CrashingProducer()
    for s in sent:
        producer.sent.append(s)
        producer.next_offset[(s.topic, s.partition or 0)] = s.offset + 1
    return producer


def worker(producer: CrashingProducer, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(exactly_once, "KafkaTails", lambda settings: StubTails(producer))
    consumer = SimpleNamespace(assignment=lambda: set())
    return SimpleNamespace(producer=producer, consumer=consumer, rebalancing=False)


def recovered(name: str, producer: StubProducer) -> StubTable:
    """A table as Faust recovers it: every changelog write kept, in order."""
    table = StubTable(name, producer)
    for s in producer.sent:
        if s.topic == f"{name}-changelog":
            if s.value is None:
                table.data.pop(s.key or b"", None)
            else:
                table.data[s.key or b""] = s.value
    return table


def identity(sent: Sent) -> list[Any]:
    """What makes each output of a write itself (not the wall-clock parts)."""
    doc = sent.doc()
    if sent.topic == NAMES.dead_letter:
        return [("dead letter", doc["id"])]
    docs = doc if isinstance(doc, list) else [doc]
    if sent.topic == NAMES.metrics_windows:
        return [emission_id(d) for d in docs]
    return [orjson.dumps(d, option=orjson.OPT_SORT_KEYS) for d in docs]


def outputs(sent: list[Sent]) -> Counter[Any]:
    return Counter(
        out for s in sent if not s.topic.endswith("-changelog") for out in identity(s)
    )


# One agent kind: (make a processor on an app, its process function, its inputs).
Build = Callable[[Any, Path], Callable[[list[Any]], Awaitable[None]]]


def execution(i: int, engine: str = "e", **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema_version": 1, "trace_id": f"t-{i}", "task_id": "x", "engine_id": engine,
        "timestamp": NOW - 3600 + i * 20, "input": "", "output": "",
        "metrics": {"latency_ms": 5.0 + i, "success": True},
    }  # fmt: skip
    doc.update(changes)
    return doc


def comparison(cid: str, winner: str = "a") -> dict[str, Any]:
    return {"comparison_id": cid, "query": "q", "winner": {"engine_id": winner, "score": 0.95},
            "candidates": [{"engine_id": "a", "output": "x"}, {"engine_id": "b", "output": "y"}]}


def job(name: str, job_id: str, **extra: Any) -> dict[str, Any]:
    defaults = {"submit": {"kind": "train", "target": "ranker"}, "progress": {"progress": 50}}
    return {"command": name, "job_id": job_id, "timestamp": NOW - 60,
            **defaults.get(name, {}), **extra}  # fmt: skip


def router_kind(app: Any, directory: Path) -> Callable[[list[Any]], Awaitable[None]]:
    table = recovered("router-ledger", app.producer)
    router = Router(NAMES, default_registry())
    processor = RouterProcessor(app, Settings(), router, PARTITIONS, RouterCounters(), table)  # type: ignore[arg-type]
    return processor.process  # type: ignore[return-value]


def windows_kind(app: Any, directory: Path) -> Callable[[list[Any]], Awaitable[None]]:
    table = recovered("windows", app.producer)
    config = WindowConfig(sizes=(60,), allowed_lateness_s=0.0, retention_s=300.0)
    processor = WindowProcessor(app, Settings(), config, table, NAMES, PARTITIONS)  # type: ignore[arg-type]
    return processor.process  # type: ignore[return-value]


def training_kind(app: Any, directory: Path) -> Callable[[list[Any]], Awaitable[None]]:
    table = recovered("training-decisions", app.producer)
    processor = TrainingProcessor(app, Settings(), table, NAMES, PARTITIONS)  # type: ignore[arg-type]
    return processor.process  # type: ignore[return-value]


FAUST = faust.App("unit-crash", broker="kafka://127.0.0.1:1", autodiscover=False)


def keyed_kind(event_type: str, handle: EventHandler) -> Build:
    """A keyed-state agent kind (jobs, sessions) over its typed topic."""
    name = f"{event_type}-crash"
    state = KeyedState(FAUST, Settings(), name, NAMES.typed[event_type])

    def build(app: Any, directory: Path) -> Callable[[list[Any]], Awaitable[None]]:
        # The faust table only names the state; a recovered stub table holds its data.
        state.app = app
        state.table = recovered(name, app.producer)  # type: ignore[assignment]
        state.writer = TableWriter(app, state.table)
        state._staged.clear()
        state.attach_ledgers(NAMES.dead_letter, PARTITIONS[NAMES.dead_letter])

        async def process(messages: list[Any]) -> None:
            await apply_and_save(state, event_type, handle, messages, NAMES.dead_letter)

        return process

    return build


def session(kind: str, sid: str, seconds: int, **fields: Any) -> dict[str, Any]:
    defaults: dict[str, dict[str, Any]] = {
        "session_started": {"device_id": "d-1", "platform": "android", "sdk_version": "2.0"},
        "inference_recorded": {"model_id": "m", "version": "1", "latency_ms": 12.5},
    }
    return {"event": kind, "session_id": sid, "timestamp": int(NOW - 600 + seconds) * 1000,
            **defaults.get(kind, {}), **fields}  # fmt: skip


def sink_kind(app: Any, directory: Path) -> Callable[[list[Any]], Awaitable[None]]:
    channel = next(c for c in CHANNELS if c.name == "comparisons")
    config = ChannelConfig(channel.name, channel.filename)
    sink = ChannelSink(app, Settings(), channel, config, directory, "t.comparisons",
                       (NAMES.dead_letter, PARTITIONS[NAMES.dead_letter]))  # fmt: skip
    SINKS.append(sink)
    opened = sink._open

    async def open_counting_writes(partition: int, wait_s: float = 60.0) -> PartitionFile:
        part = await opened(partition, wait_s)
        if getattr(part, "counted", False):
            return part
        write = part.write

        def counted(*args: Any) -> int:
            app.producer.step()  # a checkpoint (with its lines) is a write too
            return write(*args)

        part.write = counted  # type: ignore[method-assign]
        part.counted = True  # type: ignore[attr-defined]
        return part

    sink._open = open_counting_writes  # type: ignore[method-assign]
    return sink.write  # type: ignore[return-value]


SINKS: list[ChannelSink] = []
EXECUTIONS = NAMES.typed["engine_execution"]
COMPARISONS = NAMES.typed["comparison_result"]
JOB_COMMANDS = NAMES.typed["ml_job_command"]
RAW_EXECUTIONS = NAMES.raw["engine_execution"]


def inputs(topic: str, values: list[list[bytes]]) -> list[Any]:
    """Messages of `topic`: values[p] are partition p's, in offset order, interleaved."""
    out = []
    for offset in range(max(len(v) for v in values)):
        for partition, found in enumerate(values):
            if offset < len(found):
                out.append(message(topic, partition, offset, found[offset]))
    return out


def dumps(doc: Any) -> bytes:
    return orjson.dumps(doc)


TABLES = {
    "windows": "windows",
    "training": "training-decisions",
    "jobs": "ml_job_command-crash",
    "sessions": "session_event-crash",
}

KINDS: dict[str, tuple[Build, list[Any]]] = {
    "router": (router_kind, inputs(RAW_EXECUTIONS, [
        [dumps([execution(i, f"e{i % 4}") for i in range(5)]), b"{not json",
         dumps(execution(9, trace_id=7)), dumps([execution(10), {"broken": 1}])],
        [dumps(execution(20, "e1")), dumps([execution(21, "e2"), execution(22, "e3")])],
    ])),
    # Each engine in its own partition, as the router puts it.
    "windows": (windows_kind, inputs(EXECUTIONS, [
        [dumps([execution(i, "engine-c") for i in range(4)]), b"\xff",
         dumps(execution(9, "engine-c")),
         dumps([execution(14, "engine-c"), 3, execution(30, "engine-c")]),
         dumps(execution(2, "engine-c"))],
        [dumps([execution(i, "h") for i in range(0, 12, 3)]),
         dumps(execution(40, "h", timestamp=NOW + 86400)), dumps(execution(60, "h"))],
    ])),
    "training": (training_kind, inputs(COMPARISONS, [
        [dumps(comparison("c-1")), b"{{", dumps([comparison("c-2"), comparison("c-3", "z")]),
         dumps(comparison("c-1"))],
        [dumps([comparison("c-4"), {"comparison_id": "c-5"}]), dumps(comparison("c-6"))],
    ])),
    "jobs": (keyed_kind("ml_job_command", apply_job_command), inputs(JOB_COMMANDS, [
        [dumps(job("submit", "job-1")), dumps(job("start", "job-1")),
         dumps(job("start", "job-1")), dumps([job("progress", "job-1"), 5]),
         dumps(job("complete", "job-1"))],
        [dumps(job("start", "job-0")), b"nope",
         dumps([job("submit", "job-0"), job("start", "job-0")])],
    ])),
    # Sessions count what they see: an event applied twice would show.
    "sessions": (keyed_kind("session_event", apply_session_event),
                 inputs(NAMES.typed["session_event"], [
        [dumps(session("session_started", "sess-2", 0)),
         dumps([session("inference_recorded", "sess-2", i) for i in range(1, 4)]),
         dumps(session("inference_recorded", "sess-2", 9, latency_ms="slow")),
         dumps(session("error_recorded", "sess-2", 10, message="oom")),
         dumps(session("session_ended", "sess-2", 11))],
        [dumps(session("inference_recorded", "sess-0", 1)), b"[[",
         dumps([session("session_started", "sess-0", 2), 7,
                session("inference_recorded", "sess-0", 3)])],
    ])),
    "sink": (sink_kind, inputs("t.comparisons", [
        [dumps(comparison("c-1")), b"\x00", dumps([comparison("c-2"), {"no_id": 1}, "x"])],
        [dumps(comparison("c-3")), dumps(comparison("c-3")), b"[1]"],
    ])),
}


def run(
    build: Build, messages: list[Any], producer: CrashingProducer, directory: Path,
    take: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    process = build(worker(producer, monkeypatch), directory)
    loop = asyncio.new_event_loop()
    try:
        for start in range(0, len(messages), take):
            loop.run_until_complete(process(messages[start:start + take]))
    finally:
        for sink in SINKS:  # the process dies: the kernel releases its file locks
            loop.run_until_complete(sink.close())
        SINKS.clear()
        loop.close()


def lines(directory: Path) -> Counter[bytes]:
    channel = next(c for c in CHANNELS if c.name == "comparisons")
    config = ChannelConfig(channel.name, channel.filename)
    found: Counter[bytes] = Counter()
    for partition in range(2):
        found.update(read_lines(directory, config, partition))
    return found


@pytest.mark.parametrize("kind", list(KINDS))
def test_killed_after_any_write_nothing_is_lost_or_repeated(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build, messages = KINDS[kind]
    reference = CrashingProducer()
    run(build, messages, reference, tmp_path / "reference", 3, monkeypatch)
    expected = outputs(reference.sent)
    assert expected and max(expected.values()) == 1
    assert any(s.topic == NAMES.dead_letter for s in reference.sent)
    writes = reference.steps
    assert writes > 5
    print(f"{kind}: {writes} writes, killed before each")
    for crash_at in range(writes + 1):
        directory = tmp_path / f"crash-{crash_at}"
        first = CrashingProducer()
        first.crash_at = crash_at
        with pytest.raises(Crashed) if crash_at < writes else _no_crash():
            run(build, messages, first, directory, 3, monkeypatch)
        second = kept(first.sent)
        run(build, messages, second, directory, 2, monkeypatch)
        assert outputs(second.sent) == expected, f"{kind}: killed before write {crash_at}"
        if kind in TABLES:  # and the state is that of the run without a crash
            assert state(TABLES[kind], second) == state(TABLES[kind], reference), crash_at
        if kind == "sink":
            assert lines(directory) == lines(tmp_path / "reference")


def state(table: str, producer: StubProducer) -> dict[bytes, bytes]:
    """The entities' state a worker recovers from the changelog (ledgers left out: they
    hold how far each destination was read, which a crash changes)."""
    data = recovered(table, producer).data
    return {k: v for k, v in data.items() if not is_bookkeeping(k)}


class _no_crash:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None
