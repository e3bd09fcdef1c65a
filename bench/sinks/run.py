"""JSONL sink throughput: exactly-once `PartitionFile.write` against plain appends.

    .venv/bin/python -m bench.sinks.run [--lines 200000] [--dir DIR] [--repeats 3]
                                        [--out bench/sinks/results/latest.json]

The same pre-generated lines (engine_execution events of ~350 bytes from
``streams.kafka.fleet.Fleet(rng=random.Random(1)).execution()``, encoded with orjson) are
written by:

(a) ``PartitionFile.write`` with the defaults (streams.config.channels.ChannelConfig): batches
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

The code: cases.py (the lines, the cases, the flush anatomy); this module runs them and
reports; the machine facts are bench/common's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import ROOT
from bench.common.machine import block_queue, command, cpu_model, mem_total, mount_of, uptime
from bench.common.results import write_json
from bench.sinks.cases import ANATOMY_STEPS, CASES, DEFAULTS, Run, clean, make_workload, run_anatomy

DEFAULT_BASE = ROOT / ".local" / "bench-sinks"
DEFAULT_OUT = ROOT / "bench" / "sinks" / "results" / "latest.json"


# --------------------------------------------------------------------------- machine


def machine(directory: Path) -> dict[str, Any]:
    """What the figures were measured on: the CPU and, above all, the disk."""
    mount = mount_of(directory)
    return {
        "host": platform.node(),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model() or platform.processor() or "unknown",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "fs_type_stat": command("stat", "-f", "-c", "%T", str(directory)),
        "fs_mount": mount,
        "block_device": block_queue(mount.get("device", "")),
        "mem_total": mem_total(),
    }


def load_snapshot() -> dict[str, Any]:
    """`uptime` and the load averages now."""
    return {
        "uptime": uptime(),
        "loadavg": [round(v, 2) for v in os.getloadavg()],
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


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
    write_json(args.out, doc)
    print_table(doc)
    print(f"\nresults: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
