"""JSONL sink throughput: exactly-once `PartitionFile.write` against plain appends.

    .venv/bin/python -m bench.sinks.run [--lines 200000] [--dir DIR] [--repeats 3]
                                        [--out bench/sinks/results/latest.json]

The same pre-generated lines (engine_execution events of ~350 bytes from
``streams.kafka.fleet.Fleet(rng=random.Random(1)).execution()``, encoded with orjson) are
written by:

(a) ``PartitionFile.write`` with the defaults (streams.durable.filesink.ChannelConfig): batches
    of ``buffer_size`` = 500 lines, each ONE os.write + fsync + atomically replaced
    checkpoint (temp file, fsync, rename, fsync of the directory), rotation at 64 MiB;
(b) the same with batches of 50 and of 5000 lines;
(c) plain buffered appends: ``open(path, "ab")``, ``f.write(line + b"\\n")`` per line, one
    close at the end, no fsync;
(d) the same plain appends with one fsync before the close.

Plus, not a throughput figure: the anatomy of one default flush (500 lines), the steps
of ``PartitionFile.write`` re-enacted here with a clock around each (join, os.write,
fsync of the data, checkpoint temp file + fsync, rename, fsync of the directory).

Every measurement runs in a fresh directory on the file system of the project's data
(default: a temp dir under .local/bench-sinks, removed afterwards); the files are
deleted and ``os.sync()`` called between measurements, outside the clock, so that no
measurement pays for the write-back of another. The repetitions are interleaved (each
round runs every case once), and the median, min and max over them are reported. The
durable cases are checked afterwards: ``read_lines`` must give back exactly the lines.
Elapsed time is from the first write to the last one returning (open and close, which
only take the lock and close descriptors, are outside it); for (c) and (d) from the
``open`` to the end of the ``close``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from streams.durable.atomic import fsync_dir
from streams.durable.filesink import ChannelConfig, Checkpoint, PartitionFile, read_lines
from streams.kafka.fleet import Fleet

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BASE = ROOT / ".local" / "bench-sinks"
DEFAULT_OUT = ROOT / "bench" / "sinks" / "results" / "latest.json"
DEFAULTS = ChannelConfig(name="bench", filename="executions.jsonl")
MB = 1_000_000  # MB/s figures are 10^6 bytes per second
Batch = list[tuple[int, bytes]]


# --------------------------------------------------------------------------- machine


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _command(*args: str) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def cpu_model() -> str:
    """The first ``model name`` of /proc/cpuinfo."""
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def mount_of(directory: Path) -> dict[str, str]:
    """The /proc/mounts entry holding `directory` (longest mount point that prefixes it)."""
    target = os.path.realpath(directory)
    best: dict[str, str] = {}
    for line in _read("/proc/mounts").splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        device, point, fstype, options = parts[:4]
        point = point.replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best.get("mount_point", "")):
            best = {"device": device, "mount_point": point, "type": fstype, "options": options}
    return best


def block_queue(device: str) -> dict[str, str]:
    """Write-cache mode and rotational flag of the block device behind `device`."""
    if not device.startswith("/dev/"):
        return {}
    node = Path("/sys/class/block") / Path(device).name
    queue = node / "queue"
    if not queue.exists():  # a partition: the queue is its disk's
        queue = node.resolve().parent / "queue"
    found = {
        "write_cache": _read(queue / "write_cache").strip(),
        "rotational": _read(queue / "rotational").strip(),
    }
    return {k: v for k, v in found.items() if v}


def machine(directory: Path) -> dict[str, Any]:
    """What the figures were measured on."""
    mount = mount_of(directory)
    return {
        "host": platform.node(),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "fs_type_stat": _command("stat", "-f", "-c", "%T", str(directory)),
        "fs_mount": mount,
        "block_device": block_queue(mount.get("device", "")),
        "mem_total": next(
            (
                ln.split(":", 1)[1].strip()
                for ln in _read("/proc/meminfo").splitlines()
                if ln.startswith("MemTotal")
            ),
            "",
        ),
    }


def load_snapshot() -> dict[str, Any]:
    """`uptime` and the load averages now."""
    return {
        "uptime": _command("uptime"),
        "loadavg": [round(v, 2) for v in os.getloadavg()],
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def machine_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine so far, all cores (/proc/stat: every
    column but idle and iowait)."""
    first = _read("/proc/stat").splitlines()[:1]
    if not first:
        return 0.0
    values = [int(v) for v in first[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


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


# --------------------------------------------------------------------------- stats


def spread(values: Sequence[float], digits: int = 1) -> dict[str, float]:
    """Median, min and max."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def percentiles(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    """p50, p90, p99 and max of `values` (nearest rank), and their mean."""
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p * len(ordered)) - 1))]

    return {
        "p50": round(rank(0.50), digits),
        "p90": round(rank(0.90), digits),
        "p99": round(rank(0.99), digits),
        "max": round(ordered[-1], digits),
        "mean": round(statistics.fmean(ordered), digits),
        "count": len(ordered),
    }


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


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sinks.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--lines", type=int, default=200_000, help="lines per measurement")
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_BASE,
        help="where the temp dir of the run is made (same file system as the data)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="measurements per case")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results")
    args = parser.parse_args(argv)
    if args.lines < 1 or args.repeats < 1:
        parser.error("--lines and --repeats must be >= 1")
    return args


def load_verdict(before: dict[str, Any], after: dict[str, Any], nproc: int) -> str:
    """Whether the shared machine was busy around the run."""
    peak = max(before["loadavg"][0], after["loadavg"][0])
    if peak >= nproc:
        return f"high: 1-min load reached {peak} on {nproc} CPUs; figures may be depressed"
    if peak >= nproc / 2:
        return f"moderate: 1-min load reached {peak} on {nproc} CPUs"
    return f"low: 1-min load at most {peak} on {nproc} CPUs"


def report(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    """Run every case `args.repeats` times in `directory`; answer the JSON document."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    host = machine(directory)
    load_before = load_snapshot()
    print(f"generating {args.lines} lines ...", flush=True)
    work = make_workload(args.lines)
    for case in CASES:
        if case.batch is not None:
            work.batched(case.batch)
    print(
        f"{work.count} lines, {work.bytes} bytes ({work.bytes / work.count:.1f} B/line incl. "
        f"newline) in {directory} ({host['fs_mount'].get('type', '?')})",
        flush=True,
    )
    runs: dict[str, list[Run]] = {case.key: [] for case in CASES}
    anatomy: dict[str, list[float]] = {step: [] for step in ANATOMY_STEPS}
    clean(directory)
    for round_no in range(1, args.repeats + 1):
        for case in CASES:
            result = case.run(work, directory)
            clean(directory)
            runs[case.key].append(result)
            print(
                f"  round {round_no} {case.label:<32} {result.seconds:8.3f} s "
                f"{result.lines_per_s:>12,.0f} lines/s {result.mb_per_s:8.1f} MB/s",
                flush=True,
            )
        for step, values in run_anatomy(work, directory).items():
            anatomy[step].extend(values)
        clean(directory)
    load_after = load_snapshot()

    cases: dict[str, Any] = {}
    for case in CASES:
        done = runs[case.key]
        entry: dict[str, Any] = {
            "label": case.label,
            "batch": case.batch,
            "lines_per_s": spread([r.lines_per_s for r in done], 0),
            "mb_per_s": spread([r.mb_per_s for r in done], 2),
            "seconds": spread([r.seconds for r in done], 4),
            "cpu_seconds": spread([r.cpu_seconds for r in done], 4),
            "others_cpu_seconds": spread([r.others_cpu_seconds for r in done], 3),
            "runs": [r.summary() for r in done],
        }
        if case.batch is not None:
            entry["flushes_per_run"] = done[0].flushes
            entry["rotations_per_run"] = done[0].rotations
            entry["flush_ms"] = percentiles([ms for r in done for ms in r.flush_ms])
        cases[case.key] = entry

    def median_rate(key: str) -> float:
        return float(statistics.median(r.lines_per_s for r in runs[key]))

    ratios = {
        f"{case.key}/{base}": round(median_rate(case.key) / median_rate(base), 3)
        for case in CASES
        if case.batch is not None
        for base in ("plain", "plain_fsync")
    }
    nproc = int(host["nproc"])
    return {
        "benchmark": "bench.sinks",
        "started_at": started,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": [Path(sys.executable).name, "-m", "bench.sinks.run", *sys.argv[1:]],
        "machine": host,
        "load": {
            "before": load_before,
            "after": load_after,
            "verdict": load_verdict(load_before, load_after, nproc),
            "note": "shared machine: other engineers' test runs may run concurrently; "
            "others_cpu_seconds per run is the machine's busy CPU time in the run's "
            "window minus this process's",
        },
        "workload": {
            "generator": "orjson.dumps(Fleet(rng=random.Random(1)).execution())",
            "lines": work.count,
            "bytes": work.bytes,
            "mean_line_bytes": round(work.bytes / work.count - 1, 1),
        },
        "settings": {
            "repeats": args.repeats,
            "rotate_bytes": DEFAULTS.rotate_bytes,
            "default_buffer_size": DEFAULTS.buffer_size,
            "mb": "10^6 bytes",
            "directory": str(directory),
        },
        "cases": cases,
        "ratios_lines_per_s": ratios,
        "flush_anatomy_ms": {
            "batch": DEFAULTS.buffer_size,
            "steps": {step: percentiles(values) for step, values in anatomy.items()},
        },
    }


def print_table(doc: dict[str, Any]) -> None:
    """The results as a plain-text table."""
    plain = doc["cases"]["plain"]["lines_per_s"]["median"]
    head = (
        f"{'case':<32} {'flushes':>7} {'lines/s median (min-max)':>32} "
        f"{'MB/s med (min-max)':>22} {'flush p50/p99 ms':>17} {'vs (c)':>7}"
    )
    print()
    print(head)
    print("-" * len(head))
    for key, entry in doc["cases"].items():
        rate, mbps = entry["lines_per_s"], entry["mb_per_s"]
        flushes = entry.get("flushes_per_run", 1 if key == "plain_fsync" else 0)
        latency = entry.get("flush_ms")
        lat = f"{latency['p50']:.2f}/{latency['p99']:.2f}" if latency else "-"
        print(
            f"{entry['label']:<32} {flushes:>7} "
            f"{rate['median']:>10,.0f} ({rate['min']:>9,.0f}-{rate['max']:>9,.0f}) "
            f"{mbps['median']:>7.1f} ({mbps['min']:>5.1f}-{mbps['max']:>5.1f}) "
            f"{lat:>17} {rate['median'] / plain:>7.3f}"
        )
    steps = doc["flush_anatomy_ms"]["steps"]
    print()
    print(f"one flush of {doc['flush_anatomy_ms']['batch']} lines, ms (p50 / p99):")
    print("  " + "  ".join(f"{step} {v['p50']:.3f}/{v['p99']:.3f}" for step, v in steps.items()))
    mach = doc["machine"]
    print()
    print(
        f"machine: {mach['nproc']} x {mach['cpu_model']}, kernel {mach['kernel']}, "
        f"{mach['fs_mount'].get('type', mach['fs_type_stat'])} on "
        f"{mach['fs_mount'].get('device', '?')} (write cache: "
        f"{mach['block_device'].get('write_cache', '?')})"
    )
    print(f"load before: {doc['load']['before']['uptime']}")
    print(f"load after:  {doc['load']['after']['uptime']}")
    print(f"load: {doc['load']['verdict']}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    base: Path = args.dir
    made_base = not base.exists()
    base.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="run-", dir=base))
    try:
        doc = report(args, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if made_base:
            with contextlib.suppress(OSError):
                base.rmdir()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    print_table(doc)
    print(f"\nresults: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
