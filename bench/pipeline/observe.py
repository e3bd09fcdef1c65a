"""What the bench process watches to decide that a system is done: the final windows
readable on its output topic (read back by a consumer of its own, as any reader would)
and the lines durable in its JSONL file of executions."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition

from bench.common.kafka import plain_consumer
from bench.pipeline.workload import SENTINEL_PREFIX
from streams.config.settings import Settings

WindowId = tuple[str, int]  # (engine, window start)


class WindowWatcher:
    """Reads a window topic from given offsets (default: the beginning) in a task and
    keeps, per real engine window (kind "engine", sentinels left out), the count of
    its latest revision and when its first record was read."""

    def __init__(self, settings: Settings, topic: str, since: dict[int, int] | None = None):
        self.consumer = plain_consumer(settings)
        self.tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        self.since = since
        self.latest: dict[WindowId, tuple[int, int]] = {}  # (revision, count)
        self.readable_at: dict[WindowId, float] = {}
        self.total = 0  # sum of the latest revisions' counts
        self.records = 0
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> WindowWatcher:
        """Connect, position and start reading."""
        await self.consumer.start()
        self.consumer.assign(self.tps)
        if self.since is None:
            await self.consumer.seek_to_beginning(*self.tps)
        else:
            for tp in self.tps:
                self.consumer.seek(tp, self.since.get(tp.partition, 0))
        self.task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batch.values():
                for rec in records:
                    self.take(orjson.loads(rec.value), now)

    def take(self, record: dict[str, Any], now: float) -> None:
        """Account for one window record read at `now`."""
        self.records += 1
        engine = record.get("engine_id", "")
        if record.get("kind", "engine") != "engine" or engine.startswith(SENTINEL_PREFIX):
            return
        ident = (engine, int(record["window_start"]))
        held = self.latest.get(ident)
        revision, count = int(record["revision"]), int(record["count"])
        if held is None:
            self.readable_at[ident] = now
        elif held[0] >= revision:
            return
        self.latest[ident] = (revision, count)
        self.total += count - (0 if held is None else held[1])

    async def stop(self) -> None:
        """Stop reading."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()


def count_lines(path: Path, start: int, end: int) -> int:
    """Newlines in bytes [start, end) of `path`."""
    lines = 0
    with open(path, "rb") as f:
        f.seek(start)
        left = end - start
        while left > 0:
            chunk = f.read(min(left, 1 << 22))
            if not chunk:
                break
            lines += chunk.count(b"\n")
            left -= len(chunk)
    return lines


class PlainLines:
    """Lines of one JSONL file, counted incrementally (the file is append-only and
    each batch is written and fsynced whole)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen = 0
        self.lines = 0

    def count(self) -> int:
        """Lines in the file now."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return 0
        if size > self.seen:
            self.lines += count_lines(self.path, self.seen, size)
            self.seen = size
        return self.lines


class SinkLines:
    """Committed lines of one channel of the worker's exactly-once file sink
    (streams/durable/filesink.py): per partition, every completed segment
    `<stem>.p<p>.<NNNNNN>.jsonl` and the live `<stem>.p<p>.jsonl` up to the length
    its checkpoint names; counted incrementally."""

    def __init__(self, directory: Path, stem: str, partitions: int) -> None:
        self.directory, self.stem, self.partitions = directory, stem, partitions
        self.completed: dict[str, int] = {}
        self.live: dict[int, tuple[int, int, int]] = {}  # p -> (segment, bytes, lines)

    def count(self) -> int:
        """Committed lines now."""
        total = 0
        for p in range(self.partitions):
            base = f"{self.stem}.p{p}"
            try:
                checkpoint = orjson.loads((self.directory / f"{base}.checkpoint.json").read_bytes())
            except (FileNotFoundError, orjson.JSONDecodeError):
                continue
            segment, length = int(checkpoint["segment"]), int(checkpoint["length"])
            for done in self.directory.glob(f"{base}.[0-9]*.jsonl"):
                if done.name not in self.completed:
                    self.completed[done.name] = count_lines(done, 0, done.stat().st_size)
                total += self.completed[done.name]
            held_segment, held_bytes, held_lines = self.live.get(p, (segment, 0, 0))
            if held_segment != segment or length < held_bytes:
                held_bytes = held_lines = 0
            if length > held_bytes:
                held_lines += count_lines(self.directory / f"{base}.jsonl", held_bytes, length)
                held_bytes = length
            self.live[p] = (segment, held_bytes, held_lines)
            total += held_lines
        return total
