"""What the benchmarks report: a line per run while they go, their results tables,
the run's uptime before and after, and the JSON results document and file."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from bench.common.machine import kafka_machine, uptime


@dataclass
class ShapeRun:
    """Which run a result is of: a system on one input shape, and that input's size.
    A benchmark's result extends it with its own figures (these fields come first in
    the results file)."""

    shape: str
    system: str
    events: int
    input_messages: int


class Measured(Protocol):
    """The figures of one run that every benchmark prints."""

    events_per_s: float
    elapsed_s: float
    cpu_s: dict[str, float]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]


def print_run(system: str, width: int, result: Measured) -> None:
    """One line for a finished run, so that a long benchmark shows its progress."""
    print(
        f"  {system:<{width}} {result.events_per_s:>10.0f} events/s "
        f"({result.elapsed_s:.2f}s, cpu {result.cpu_s}, "
        f"load {result.load_before[0]:.2f}->{result.load_after[0]:.2f})",
        flush=True,
    )


def render_table(head: str, rows: list[str]) -> str:
    """A plain-text table: the header, a rule under it, then the rows."""
    return "\n".join([head, "-" * len(head), *rows])


def cpu_text(cpu_s: dict[str, float], leave_out: tuple[str, ...] = ()) -> str:
    """CPU seconds per process, short, for a results table."""
    return " ".join(f"{k}={v:.1f}" for k, v in cpu_s.items() if k not in leave_out)


@dataclass
class Session:
    """When a benchmark started and the machine's `uptime` before and after it: the
    machine is shared, so every results file says how busy it was."""

    started: float = field(default_factory=time.time)
    uptime_before: str = field(default_factory=uptime)
    uptime_after: str = ""

    def end(self) -> None:
        """Record `uptime` at the end."""
        self.uptime_after = uptime()

    @property
    def started_text(self) -> str:
        """The start as local time with its offset."""
        return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started))

    def print_uptime(self) -> None:
        """Both `uptime` lines."""
        print(f"uptime before: {self.uptime_before}\nuptime after:  {self.uptime_after}")

    def document(
        self,
        run_id: str,
        events: int,
        setup: dict[str, Any],
        inputs: dict[str, dict[str, float]],
        results: Sequence[ShapeRun],
        figures: dict[str, Any],
    ) -> dict[str, Any]:
        """The results document of a Kafka benchmark, in this order: when and what
        (`setup`: the benchmark's own options), the inputs, where it ran and how busy
        the machine was, every run, then the `figures` drawn from the runs."""
        return {
            "started": self.started_text,
            "run_id": run_id,
            "events": events,
            **setup,
            "inputs": inputs,
            "machine": kafka_machine(),
            "uptime_before": self.uptime_before,
            "uptime_after": self.uptime_after,
            "results": [asdict(r) for r in results],
            **figures,
        }


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Write the results document (indented, one trailing newline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")


def write_results(path: Path, doc: dict[str, Any]) -> None:
    """Write the results document and say where, as the last line of a run."""
    write_json(path, doc)
    print(f"wrote {path}")
