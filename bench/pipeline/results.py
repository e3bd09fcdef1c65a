"""The pipeline benchmark's figures: one run's result, the tables, medians and the
issue's goals as ratios of the same run's medians."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from bench.common.results import ShapeRun, cpu_text


@dataclass
class RunResult(ShapeRun):
    """One system on one input of one scenario (`elapsed_s`: first produce -> done)."""

    scenario: str = ""
    engines: int = 0
    executions: int = 0
    ok: bool = False
    error: str | None = None
    elapsed_s: float = 0.0
    events_per_s: float = 0.0
    produce_s: float | None = None  # first produce -> every message acknowledged
    start_to_ready_s: float | None = None  # process start -> ready (worker: /health)
    start_to_first_s: float | None = None  # process start -> first event processed
    windows_done_s: float | None = None  # first produce -> windows all readable
    lines_done_s: float | None = None  # first produce -> lines all durable
    cpu_s: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float | None = None
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    detail: dict[str, Any] = field(default_factory=dict)
    repeat: int = 0


def group_key(r: RunResult) -> str:
    """The scenario, shape, engines and system of a run: what medians are taken over."""
    return f"{r.scenario}/{r.shape}/e{r.engines}/{r.system}"


def medians(results: list[RunResult]) -> dict[str, float]:
    """Median events/s per group over the repetitions that finished."""
    rates: dict[str, list[float]] = {}
    for r in results:
        if r.ok:
            rates.setdefault(group_key(r), []).append(r.events_per_s)
    return {k: round(statistics.median(v), 1) for k, v in rates.items()}


def _opt(value: float | None, fmt: str = ".2f") -> str:
    return "" if value is None else format(value, fmt)


TABLE_HEAD = (
    f"{'scenario':<10} {'shape':<6} {'eng':>5} {'system':<12} {'rep':>3} {'events/s':>9} "
    f"{'elapsed':>7} {'produce':>7} {'>ready':>6} {'>first':>6} {'rss MB':>7}  cpu s / note"
)


def table_row(r: RunResult) -> str:
    """One run as a line of the table."""
    note = cpu_text(r.cpu_s, ("window_s", "all")) if r.ok else f"FAILED: {r.error}"
    return (
        f"{r.scenario:<10} {r.shape:<6} {r.engines:>5} {r.system:<12} {r.repeat:>3} "
        f"{r.events_per_s:>9.0f} {r.elapsed_s:>7.2f} {_opt(r.produce_s):>7} "
        f"{_opt(r.start_to_ready_s):>6} {_opt(r.start_to_first_s):>6} "
        f"{_opt(r.peak_rss_mb, '.0f'):>7}  {note}"
    )


def median_rows(results: list[RunResult]) -> list[str]:
    """One line per group: the median and every run's figure."""
    rows = []
    rate = medians(results)
    for key, value in rate.items():
        runs = [r for r in results if group_key(r) == key]
        figures = " / ".join(f"{r.events_per_s / 1000:.1f}k" for r in runs if r.ok)
        cpu = statistics.median(sum(v for k, v in r.cpu_s.items() if k in (
            runs[0].system, "worker")) for r in runs if r.ok)  # fmt: skip
        rows.append(f"{key:<36} {value:>10.0f}  ({figures}; system cpu s {cpu:.1f})")
    return rows


def _ratio(rate: dict[str, float], mine: str, other: str) -> float | None:
    if mine in rate and rate.get(other):
        return round(rate[mine] / rate[other], 2)
    return None


def goals(results: list[RunResult], engines: int, big: int) -> dict[str, Any]:
    """The issue's goals at `engines` engines from the medians (`big`: the largest
    engine count of the throughput runs; None where a run is missing)."""
    rate = medians(results)

    def key(shape: str, system: str, eng: int = engines) -> str:
        return f"throughput/{shape}/e{eng}/{system}"

    batch = rate.get(key("batch", "worker"))
    return {
        "single_worker_over_quix_windows (>=1.5)": _ratio(
            rate, key("single", "worker"), key("single", "quix-windows")),
        "batch_worker_events_per_s (>=100000)": batch,
        "batch_worker_over_quix_full_single (>=5)": _ratio(
            rate, key("batch", "worker"), key("single", "quix-full")),
        "batch_worker_over_quix_full_batch (>=2)": _ratio(
            rate, key("batch", "worker"), key("batch", "quix-full")),
        "batch_worker_over_quix_windows_single (>=5)": _ratio(
            rate, key("batch", "worker"), key("single", "quix-windows")),
        "batch_worker_over_quix_windows_batch (>=2)": _ratio(
            rate, key("batch", "worker"), key("batch", "quix-windows")),
        "batch_worker_over_plain_batch (>=0.3)": _ratio(
            rate, key("batch", "worker"), key("batch", "plain")),
        f"batch_worker_{big}_engines_events_per_s (>=50000)": rate.get(
            key("batch", "worker", big)),
    }  # fmt: skip
