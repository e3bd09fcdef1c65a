"""The window benchmark's figures: one run's result, the table, medians and ratios."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field
from typing import Any

from bench.common.cpu import CpuMeter
from bench.common.results import ShapeRun, cpu_text
from bench.windows.workload import Stage


@dataclass
class RunResult(ShapeRun):
    """One system on one input shape."""

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


def make_result(
    stage: Stage,
    system: str,
    done_events: int,
    ready_at: float | None,
    first_at: float,
    done_at: float,
    committed_at: float | None,
    meter: CpuMeter,
    load_before: tuple[float, float, float],
    **extra: Any,
) -> RunResult:
    """The result of a run from its marks (epoch seconds) and its CPU meter."""
    elapsed = done_at - first_at
    return RunResult(
        shape=stage.shape,
        system=system,
        events=stage.work.total,
        input_messages=stage.n_messages,
        events_done=done_events,
        elapsed_s=round(elapsed, 3),
        events_per_s=round(stage.work.total / elapsed, 1),
        ready_to_first_s=None if ready_at is None else round(first_at - ready_at, 3),
        done_to_committed_s=None if committed_at is None else round(committed_at - done_at, 3),
        cpu_s=meter.used(),
        load_before=load_before,
        load_after=os.getloadavg(),
        **extra,
    )


TABLE_HEAD = (
    f"{'shape':<7} {'system':<19} {'msgs':>7} {'elapsed s':>9} {'events/s':>10} "
    f"{'rdy>1st':>7} {'>commit':>7}  cpu s"
)


def table_row(r: RunResult) -> str:
    """One run as a line of the results table (under TABLE_HEAD)."""
    rdy = "" if r.ready_to_first_s is None else f"{r.ready_to_first_s:.2f}"
    com = "" if r.done_to_committed_s is None else f"{r.done_to_committed_s:.2f}"
    return (
        f"{r.shape:<7} {r.system:<19} {r.input_messages:>7} {r.elapsed_s:>9.2f} "
        f"{r.events_per_s:>10.0f} {rdy:>7} {com:>7}  {cpu_text(r.cpu_s, ('window_s',))}"
    )


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
