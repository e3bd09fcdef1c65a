"""Window-logic micro-benchmark: the window agent's batch path in-process, no broker.

    .venv/bin/python -m bench.windows.logic [--events 200000] [--engines 20,1000]
        [--batch 500] [--take 100] [--span-s 2000] [--repeat 5] [--profile]

Input: the same engine_execution events as bench/windows/run.py's batch shape (the
same generator and seed): `--events` events of each `--engines` count over `--span-s`
seconds of event time, as JSON arrays of up to `--batch` events of one of 4 partitions.

Path: streams.agents.window_agent.WindowProcessor.process, the agent's own code, given
lists of `--take` messages (100 by default: the live worker took the 402 messages of a
200,000-event run in 4 batches) with a stub producer and table, so everything the agent
does per event and per window is timed — orjson.loads, PartitionWindows.apply, the
ExecutionStats updates, rendering each final record and serialising it, and writing
each changed window's state to the changelog (orjson.dumps of Window.to_state) — and
nothing of Kafka. Each repeat starts from empty state; the median is reported.

`digest` is a hash of every emitted record (in order) and every window's changelog
write (per batch, sorted by key; ledgers left out, as their clocks hold the wall time): two
versions of the logic that behave the same print the same digest. The stub producer's
futures are timed too (a few percent of the 1,000-engine figure).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import pstats
import statistics
import time
import types
from dataclasses import dataclass
from typing import Any

import orjson

from bench.common.kafka import json_array
from bench.windows.workload import make_workload
from streams.agents.window_agent import WindowProcessor
from streams.config.settings import Settings
from streams.domain.windows import EXECUTIONS, PartitionWindows, WindowConfig
from streams.durable.exactly_once import SourceLedger, is_bookkeeping

TOPIC = "engine.executions"
PARTITIONS = 4


@dataclass(frozen=True, slots=True)
class Message:
    """The fields of a faust Message that the window agent reads."""

    topic: str
    partition: int
    offset: int
    value: bytes


def make_messages(n: int, engines: int, span_s: float, batch: int, seed: int = 1) -> list[Message]:
    """`n` events of `engines` engines as JSON arrays of up to `batch` events of one
    partition: bench.windows.run's documents (bench/windows/workload.py, same seed)."""
    by_partition: dict[int, list[bytes]] = {}
    for partition, _key, body in make_workload(n, engines, span_s, PARTITIONS, seed).events:
        by_partition.setdefault(partition, []).append(body)
    out: list[Message] = []
    for p, bodies in sorted(by_partition.items()):
        for offset, start in enumerate(range(0, len(bodies), batch)):
            value = json_array(bodies[start : start + batch])
            out.append(Message(TOPIC, p, offset, value))
    return out


class StubProducer:
    """Accepts sends like faust's producer: each answers a future with an offset."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.offsets: dict[tuple[str, int], int] = {}
        self.loop = asyncio.get_running_loop()

    async def send(
        self, topic: str, key: Any, value: Any, partition: int, timestamp: Any, headers: Any
    ) -> asyncio.Future[Any]:
        """Record the value; the future is done at once."""
        where = (topic, partition)
        offset = self.offsets.get(where, 0)
        self.offsets[where] = offset + 1
        self.sink(topic, key, value)
        future = self.loop.create_future()
        future.set_result(types.SimpleNamespace(offset=offset))
        return future


def new_processor(config: WindowConfig, sink: Any) -> WindowProcessor:
    """A WindowProcessor with stubs for its app, table and names, and its partitions
    built empty (what _ensure gives on a fresh table)."""
    app = types.SimpleNamespace(producer=StubProducer(sink))
    partitions = {topic: PARTITIONS for topic in ("engine.metrics.windows", "engine.dead_letter")}
    table = types.SimpleNamespace(
        data={},
        changelog_topic=types.SimpleNamespace(get_topic_name=lambda: "windows-changelog"),
    )
    names = types.SimpleNamespace(
        typed={"engine_execution": TOPIC, "engine_event": "engine.events"},
        metrics_windows="engine.metrics.windows",
        dead_letter="engine.dead_letter",
    )
    processor = WindowProcessor(
        app,  # type: ignore[arg-type]
        Settings(),
        config,
        table,  # type: ignore[arg-type]
        names,  # type: ignore[arg-type]
        partitions,
    )
    for p in range(PARTITIONS):
        processor.partitions[(EXECUTIONS, p)] = PartitionWindows(EXECUTIONS, config)
        processor.ledgers.by_source[(TOPIC, p)] = SourceLedger()
    return processor


def _canonical(written: list[tuple[str, bytes, bytes]]) -> list[tuple[str, bytes, bytes]]:
    """A batch's writes with the changelog's sorted: the agent writes changed windows
    in set order, which varies with the hash seed; records keep their order."""
    records = [w for w in written if w[0] == "engine.metrics.windows"]
    return records + sorted(w for w in written if w[0] != "engine.metrics.windows")


async def run_once(messages: list[Message], take: int, digest: bool) -> tuple[float, str, int]:
    """Process `messages` in lists of `take`; answer (seconds, digest, records emitted)."""
    h = hashlib.sha256()
    emitted = 0
    written: list[tuple[str, bytes, bytes]] = []

    def sink(topic: str, key: bytes, value: bytes | None) -> None:
        nonlocal emitted
        if topic == "engine.metrics.windows":
            emitted += 1
        # Ledgers hold the clocks, and so the wall time: not a function of the events.
        if digest and not is_bookkeeping(key):
            written.append((topic, key, b"-" if value is None else value))

    processor = new_processor(WindowConfig(), sink)
    batches = [messages[i : i + take] for i in range(0, len(messages), take)]
    process = processor.process
    start = time.perf_counter()
    for batch in batches:
        await process(batch)  # type: ignore[arg-type]
        if written:
            for topic, key, value in _canonical(written):
                h.update(topic.encode() + b"\0" + key + b"\0" + value)
            written.clear()
    elapsed = time.perf_counter() - start
    assert processor.events_in == sum(len(orjson.loads(m.value)) for m in messages)
    return elapsed, h.hexdigest()[:16], emitted


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--engines", default="20,1000", help="comma-separated engine counts")
    parser.add_argument("--batch", type=int, default=500, help="events per message")
    parser.add_argument("--take", type=int, default=100, help="messages per process() call")
    parser.add_argument("--span-s", type=float, default=2000.0, help="seconds of event time")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile one more run each")
    return parser.parse_args(argv)


async def bench(args: argparse.Namespace) -> None:
    """Run and print the benchmark."""
    for engines in (int(e) for e in args.engines.split(",")):
        messages = make_messages(args.events, engines, args.span_s, args.batch)
        _, digest, emitted = await run_once(messages, args.take, True)
        times = [(await run_once(messages, args.take, False))[0] for _ in range(args.repeat)]
        best, median = min(times), statistics.median(times)
        print(
            f"engines={engines:<5} events={args.events} messages={len(messages)} "
            f"emitted={emitted} digest={digest}  median {args.events / median:>9.0f} ev/s "
            f"({median:.3f}s)  best {args.events / best:>9.0f} ev/s"
        )
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            await run_once(messages, args.take, False)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(20)


def main(argv: list[str] | None = None) -> None:
    """Entry point: `python -m bench.windows.logic`."""
    asyncio.run(bench(parse_args(argv)))


if __name__ == "__main__":
    main()
