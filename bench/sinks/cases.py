"""The sink benchmark's workload and what it measures: the cases (durable writes in
batches, plain appends) and the re-enacted anatomy of one flush, each timed with the
wall clock, this process's CPU and the machine's busy CPU."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.common.cpu import machine_busy_seconds
from streams.config.channels import ChannelConfig
from streams.durable.atomic import fsync_dir
from streams.durable.filesink import Checkpoint, PartitionFile, read_lines
from streams.kafka.fleet import Fleet

DEFAULTS = ChannelConfig(name="bench", filename="executions.jsonl")
MB = 1_000_000  # MB/s figures are 10^6 bytes per second
Batch = list[tuple[int, bytes]]


# --------------------------------------------------------------------------- workload


@dataclass
class Workload:
    """The lines every case writes, and their batches for the durable cases."""

    lines: list[bytes]
    batches: dict[int, list[Batch]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """Number of lines."""
        return len(self.lines)

    @property
    def bytes(self) -> int:
        """Bytes on disk once written: every line plus its newline."""
        return sum(len(line) for line in self.lines) + len(self.lines)

    def batched(self, size: int) -> list[Batch]:
        """(offset, line) pairs in batches of `size`; offset = index (one record per
        source message). Made once per size, outside any clock."""
        if size not in self.batches:
            pairs = list(enumerate(self.lines))
            self.batches[size] = [pairs[i : i + size] for i in range(0, len(pairs), size)]
        return self.batches[size]


def make_workload(n: int, seed: int = 1) -> Workload:
    """`n` engine_execution events, orjson-encoded (timestamps are wall clock)."""
    fleet = Fleet(rng=random.Random(seed))
    return Workload([orjson.dumps(fleet.execution()) for _ in range(n)])


# --------------------------------------------------------------------------- cases


@dataclass
class Run:
    """One measurement of one case."""

    seconds: float
    cpu_seconds: float
    others_cpu_seconds: float  # busy CPU of the machine in the window minus ours
    lines: int
    bytes: int
    flushes: int = 0
    rotations: int = 0
    flush_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / MB

    def summary(self) -> dict[str, Any]:
        """The JSON form (without the per-flush latencies)."""
        out = {k: v for k, v in asdict(self).items() if k != "flush_ms"}
        out["lines_per_s"] = round(self.lines_per_s, 1)
        out["mb_per_s"] = round(self.mb_per_s, 3)
        for key in ("seconds", "cpu_seconds", "others_cpu_seconds"):
            out[key] = round(out[key], 4)
        return out


class Clock:
    """Wall, own-CPU and machine-busy time around one measurement."""

    def __enter__(self) -> Clock:
        self.busy0 = machine_busy_seconds()
        self.cpu0 = time.process_time()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.cpu0
        self.others = max(0.0, machine_busy_seconds() - self.busy0 - self.cpu)


def run_durable(work: Workload, directory: Path, batch: int) -> Run:
    """(a)/(b): `PartitionFile.write` of every line in batches of `batch`."""
    config = ChannelConfig(name=DEFAULTS.name, filename=DEFAULTS.filename, buffer_size=batch)
    batches = work.batched(batch)
    latencies: list[float] = []
    part = PartitionFile(directory, config, 0)
    part.open()
    try:
        with Clock() as clock:
            for chunk in batches:
                started = time.perf_counter()
                part.write(chunk)
                latencies.append((time.perf_counter() - started) * 1000)
        state = part.checkpoint
    finally:
        part.close()
    if state.offset != work.count - 1:
        raise AssertionError(f"checkpoint offset {state.offset}, expected {work.count - 1}")
    if read_lines(directory, config, 0) != work.lines:
        raise AssertionError("read_lines does not give back the lines written")
    return Run(
        clock.seconds,
        clock.cpu,
        clock.others,
        work.count,
        work.bytes,
        flushes=len(batches),
        rotations=state.segment,
        flush_ms=latencies,
    )


def run_plain(work: Workload, directory: Path, fsync: bool) -> Run:
    """(c)/(d): buffered appends, one line per f.write, one close (and one fsync)."""
    path = directory / "plain.jsonl"
    with Clock() as clock:
        f = open(path, "ab")  # noqa: SIM115 - the close is part of what is measured
        try:
            for line in work.lines:
                f.write(line + b"\n")
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        finally:
            f.close()
    size = path.stat().st_size
    if size != work.bytes:
        raise AssertionError(f"{path} holds {size} bytes, expected {work.bytes}")
    return Run(clock.seconds, clock.cpu, clock.others, work.count, work.bytes)


ANATOMY_STEPS = (
    "join",
    "os_write",
    "fsync_data",
    "checkpoint_temp",
    "rename",
    "fsync_dir",
    "total",
)


def run_anatomy(work: Workload, directory: Path) -> dict[str, list[float]]:
    """The steps of one default flush, re-enacted as `PartitionFile.write` does them
    (without its input checks and without rotation), each timed, in ms."""
    live = directory / "anatomy.jsonl"
    checkpoint = directory / "anatomy.checkpoint.json"
    times: dict[str, list[float]] = {step: [] for step in ANATOMY_STEPS}
    fd = os.open(live, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    fsync_dir(directory)
    length = 0
    try:
        for chunk in work.batched(DEFAULTS.buffer_size):
            t0 = time.perf_counter()
            data = b"\n".join(line for _, line in chunk) + b"\n"
            t1 = time.perf_counter()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            t2 = time.perf_counter()
            os.fsync(fd)
            t3 = time.perf_counter()
            length += len(data)
            doc = Checkpoint(chunk[-1][0], length, 0).to_bytes()
            tmp_fd, tmp_name = tempfile.mkstemp(
                prefix=f".{checkpoint.name}.", suffix=".tmp", dir=directory
            )
            with os.fdopen(tmp_fd, "wb") as tmp:
                tmp.write(doc)
                tmp.flush()
                os.fsync(tmp.fileno())
            t4 = time.perf_counter()
            os.replace(tmp_name, checkpoint)
            t5 = time.perf_counter()
            fsync_dir(directory)
            t6 = time.perf_counter()
            marks = (t0, t1, t2, t3, t4, t5, t6)
            for i, step in enumerate(ANATOMY_STEPS[:-1]):
                times[step].append((marks[i + 1] - marks[i]) * 1000)
            times["total"].append((t6 - t0) * 1000)
    finally:
        os.close(fd)
    return times


@dataclass(frozen=True)
class Case:
    """One thing measured."""

    key: str
    label: str
    run: Callable[[Workload, Path], Run]
    batch: int | None = None


CASES = (
    Case("plain", "(c) plain appends, no fsync", lambda w, d: run_plain(w, d, fsync=False)),
    Case("plain_fsync", "(d) plain appends + 1 fsync", lambda w, d: run_plain(w, d, fsync=True)),
    Case("durable_500", "(a) PartitionFile, batch 500", lambda w, d: run_durable(w, d, 500), 500),
    Case("durable_50", "(b) PartitionFile, batch 50", lambda w, d: run_durable(w, d, 50), 50),
    Case(
        "durable_5000", "(b) PartitionFile, batch 5000", lambda w, d: run_durable(w, d, 5000), 5000
    ),
)


def clean(directory: Path) -> None:
    """Empty `directory` and flush whatever the file system still holds dirty, so the
    next measurement starts with no write-back pending."""
    for entry in os.scandir(directory):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
    os.sync()
