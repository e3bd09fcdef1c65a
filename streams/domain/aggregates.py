"""Per-window aggregates of engine events: one mergeable accumulator per window and key.

Each class has one contract — construct empty, ``add`` an event, ``merge`` another
accumulator, ``result`` for the window record, ``to_state``/``from_state`` for the changelog —
and merges exactly: five 60 s windows merged give the same state (and the same result) as
the 300 s window computed directly. Counts, sums, min, max and means are exact (sums via
``ExactSum``); percentiles come from a ``QuantileSketch`` (relative error <= 0.5% by default)
and are clamped into ``[min, max]``, which can only bring them closer to the exact value.

``add`` validates the fields it uses before changing anything: a bad event raises
``ValueError`` (``KeyError``/``TypeError`` for a missing or mistyped field) and leaves the
accumulator untouched.
"""

from __future__ import annotations

import math
from typing import Any

from streams.domain.sketch import ExactSum, QuantileSketch

__all__ = ["ExecutionStats", "RequestStats"]

_INF = math.inf
_PCTS = (0.5, 0.95, 0.99)


def _min_max_state(count: int, lo: float, hi: float) -> tuple[float | None, float | None]:
    return (lo, hi) if count else (None, None)


def _add_latency_summary(
    out: dict[str, Any],
    count: int,
    total: ExactSum,
    lo: float,
    hi: float,
    sketch: QuantileSketch,
) -> None:
    """Set the ``latency_*`` fields of a result, in their order, into ``out``."""
    if not count:
        out["latency_min_ms"] = out["latency_max_ms"] = out["latency_avg_ms"] = 0.0
        out["latency_p50_ms"] = out["latency_p95_ms"] = out["latency_p99_ms"] = 0.0
        return
    flo, fhi = float(lo), float(hi)
    p50, p95, p99 = sketch.quantiles(_PCTS)
    out["latency_min_ms"] = flo
    out["latency_max_ms"] = fhi
    out["latency_avg_ms"] = total.value / count
    # Clamped into [min, max]: only ever closer to the exact percentile.
    out["latency_p50_ms"] = flo if p50 < flo else fhi if p50 > fhi else p50
    out["latency_p95_ms"] = flo if p95 < flo else fhi if p95 > fhi else p95
    out["latency_p99_ms"] = flo if p99 < flo else fhi if p99 > fhi else p99


def _bad(name: str, value: Any) -> ValueError:
    return ValueError(f"{name} out of range: {value!r}")


class ExecutionStats:
    """Window metrics of ``engine_execution`` events (schemas/v1/engine_execution.json).

    Reads ``metrics.latency_ms`` (required, >= 0), ``metrics.success`` (required bool) and the
    optional ``metrics.quality_score`` (0..1), ``metrics.memory_mb`` and ``metrics.cpu_percent``
    (>= 0). Counts, sums, min, max and means are exact and merge exactly; latency percentiles
    are within the sketch's relative accuracy (0.5% by default).
    """

    __slots__ = (
        "count",
        "cpu",
        "cpu_count",
        "latency",
        "latency_max",
        "latency_min",
        "latency_sketch",
        "memory",
        "memory_count",
        "quality",
        "quality_count",
        "success_count",
    )

    def __init__(self, relative_accuracy: float = 0.005) -> None:
        """An empty accumulator; ``relative_accuracy`` is the latency sketch's."""
        self.count = 0
        self.success_count = 0
        self.latency = ExactSum()
        self.latency_min: float = _INF
        self.latency_max: float = -_INF
        self.latency_sketch = QuantileSketch(relative_accuracy)
        self.quality = ExactSum()
        self.quality_count = 0
        self.memory = ExactSum()
        self.memory_count = 0
        self.cpu = ExactSum()
        self.cpu_count = 0

    def add(self, event: dict[str, Any]) -> None:
        """Count one ``engine_execution`` event (hot path)."""
        m = event["metrics"]
        lat = m["latency_ms"]
        ok = m["success"]
        q = m.get("quality_score")
        mem = m.get("memory_mb")
        cpu = m.get("cpu_percent")
        # Validate everything before the first change; the sketch checks the latency.
        if q is not None and not 0.0 <= q <= 1.0:
            raise _bad("metrics.quality_score", q)
        if mem is not None and not 0.0 <= mem < _INF:
            raise _bad("metrics.memory_mb", mem)
        if cpu is not None and not 0.0 <= cpu < _INF:
            raise _bad("metrics.cpu_percent", cpu)
        self.latency_sketch.add(lat)
        self.count += 1
        if ok:
            self.success_count += 1
        self.latency.add(lat)
        if lat < self.latency_min:
            self.latency_min = lat
        if lat > self.latency_max:
            self.latency_max = lat
        if q is not None:
            self.quality.add(q)
            self.quality_count += 1
        if mem is not None:
            self.memory.add(mem)
            self.memory_count += 1
        if cpu is not None:
            self.cpu.add(cpu)
            self.cpu_count += 1

    def merge(self, other: ExecutionStats) -> None:
        """Add ``other``'s events to this accumulator (in place)."""
        self.latency_sketch.merge(other.latency_sketch)  # checks accuracies first
        self.count += other.count
        self.success_count += other.success_count
        self.latency.merge(other.latency)
        if other.latency_min < self.latency_min:
            self.latency_min = other.latency_min
        if other.latency_max > self.latency_max:
            self.latency_max = other.latency_max
        self.quality.merge(other.quality)
        self.quality_count += other.quality_count
        self.memory.merge(other.memory)
        self.memory_count += other.memory_count
        self.cpu.merge(other.cpu)
        self.cpu_count += other.cpu_count

    def result(self) -> dict[str, Any]:
        """The window's metrics (the counting fields of schemas/v1/window_stats.json).

        Latency fields and ``success_rate`` are 0.0 for an empty window; a mean is ``None``
        when no event carried the field.
        """
        n = self.count
        out: dict[str, Any] = {
            "count": n,
            "success_count": self.success_count,
            "success_rate": self.success_count / n if n else 0.0,
        }
        _add_latency_summary(
            out, n, self.latency, self.latency_min, self.latency_max, self.latency_sketch
        )
        qn, mn, cn = self.quality_count, self.memory_count, self.cpu_count
        out["quality_score_mean"] = self.quality.value / qn if qn else None
        out["memory_mb_mean"] = self.memory.value / mn if mn else None
        out["cpu_percent_mean"] = self.cpu.value / cn if cn else None
        return out

    def copy(self) -> ExecutionStats:
        """An independent copy."""
        return ExecutionStats.from_state(self.to_state())

    def to_state(self) -> dict[str, Any]:
        """Compact, canonical, JSON-able state; ``from_state`` restores it exactly.

        Keys: ``n`` count, ``ok`` success count, ``lat`` latency sum (ExactSum state), ``lo``/
        ``hi`` latency min/max (``None`` when empty), ``sk`` sketch state, and — only when
        some event carried them — ``q``/``qn``, ``mem``/``memn``, ``cpu``/``cpun`` (sum and
        count of quality_score, memory_mb, cpu_percent).
        """
        lo, hi = _min_max_state(self.count, self.latency_min, self.latency_max)
        state: dict[str, Any] = {
            "n": self.count,
            "ok": self.success_count,
            "lat": self.latency.to_state(),
            "lo": lo,
            "hi": hi,
            "sk": self.latency_sketch.to_state(),
        }
        if self.quality_count:
            state["q"] = self.quality.to_state()
            state["qn"] = self.quality_count
        if self.memory_count:
            state["mem"] = self.memory.to_state()
            state["memn"] = self.memory_count
        if self.cpu_count:
            state["cpu"] = self.cpu.to_state()
            state["cpun"] = self.cpu_count
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ExecutionStats:
        """The accumulator that ``to_state`` described."""
        new = cls.__new__(cls)
        new.count = state["n"]
        new.success_count = state["ok"]
        new.latency = ExactSum.from_state(state["lat"])
        lo, hi = state.get("lo"), state.get("hi")
        new.latency_min = _INF if lo is None else lo
        new.latency_max = -_INF if hi is None else hi
        new.latency_sketch = QuantileSketch.from_state(state["sk"])
        new.quality = ExactSum.from_state(state.get("q", ()))
        new.quality_count = state.get("qn", 0)
        new.memory = ExactSum.from_state(state.get("mem", ()))
        new.memory_count = state.get("memn", 0)
        new.cpu = ExactSum.from_state(state.get("cpu", ()))
        new.cpu_count = state.get("cpun", 0)
        return new

    def __eq__(self, other: object) -> bool:
        """Same events counted: equal counts, exact sums, min, max and sketch buckets."""
        if not isinstance(other, ExecutionStats):
            return NotImplemented
        return self.to_state() == other.to_state()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ExecutionStats(count={self.count}, success_count={self.success_count})"


class RequestStats:
    """Window metrics of ``RequestServed`` lifecycle events (``latency_ms``, ``status_code``).

    Status codes 200..299, 400..499 and 500..599 are counted in their class; any other code
    only in ``count``. Latency count, sum, min, max and mean are exact and merge exactly;
    percentiles are within the sketch's relative accuracy (0.5% by default).
    """

    __slots__ = (
        "count",
        "latency",
        "latency_max",
        "latency_min",
        "latency_sketch",
        "status_2xx",
        "status_4xx",
        "status_5xx",
    )

    def __init__(self, relative_accuracy: float = 0.005) -> None:
        """An empty accumulator; ``relative_accuracy`` is the latency sketch's."""
        self.count = 0
        self.status_2xx = 0
        self.status_4xx = 0
        self.status_5xx = 0
        self.latency = ExactSum()
        self.latency_min: float = _INF
        self.latency_max: float = -_INF
        self.latency_sketch = QuantileSketch(relative_accuracy)

    def add(self, event: dict[str, Any]) -> None:
        """Count one ``RequestServed`` event (hot path)."""
        lat = event["latency_ms"]
        code = event["status_code"]
        if not isinstance(code, int):
            raise TypeError(f"status_code must be an integer, got {code!r}")
        self.latency_sketch.add(lat)  # validates the latency before any change
        self.count += 1
        if 200 <= code < 300:
            self.status_2xx += 1
        elif 400 <= code < 500:
            self.status_4xx += 1
        elif 500 <= code < 600:
            self.status_5xx += 1
        self.latency.add(lat)
        if lat < self.latency_min:
            self.latency_min = lat
        if lat > self.latency_max:
            self.latency_max = lat

    def merge(self, other: RequestStats) -> None:
        """Add ``other``'s events to this accumulator (in place)."""
        self.latency_sketch.merge(other.latency_sketch)  # checks accuracies first
        self.count += other.count
        self.status_2xx += other.status_2xx
        self.status_4xx += other.status_4xx
        self.status_5xx += other.status_5xx
        self.latency.merge(other.latency)
        if other.latency_min < self.latency_min:
            self.latency_min = other.latency_min
        if other.latency_max > self.latency_max:
            self.latency_max = other.latency_max

    def result(self) -> dict[str, Any]:
        """The window's metrics; latency fields are 0.0 for an empty window."""
        out: dict[str, Any] = {
            "count": self.count,
            "status_2xx": self.status_2xx,
            "status_4xx": self.status_4xx,
            "status_5xx": self.status_5xx,
        }
        _add_latency_summary(
            out, self.count, self.latency, self.latency_min, self.latency_max, self.latency_sketch
        )
        return out

    def copy(self) -> RequestStats:
        """An independent copy."""
        return RequestStats.from_state(self.to_state())

    def to_state(self) -> dict[str, Any]:
        """Compact, canonical, JSON-able state; ``from_state`` restores it exactly.

        Keys: ``n`` count, ``s2``/``s4``/``s5`` status classes, ``lat`` latency sum (ExactSum
        state), ``lo``/``hi`` latency min/max (``None`` when empty), ``sk`` sketch state.
        """
        lo, hi = _min_max_state(self.count, self.latency_min, self.latency_max)
        return {
            "n": self.count,
            "s2": self.status_2xx,
            "s4": self.status_4xx,
            "s5": self.status_5xx,
            "lat": self.latency.to_state(),
            "lo": lo,
            "hi": hi,
            "sk": self.latency_sketch.to_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RequestStats:
        """The accumulator that ``to_state`` described."""
        new = cls.__new__(cls)
        new.count = state["n"]
        new.status_2xx = state["s2"]
        new.status_4xx = state["s4"]
        new.status_5xx = state["s5"]
        new.latency = ExactSum.from_state(state["lat"])
        lo, hi = state.get("lo"), state.get("hi")
        new.latency_min = _INF if lo is None else lo
        new.latency_max = -_INF if hi is None else hi
        new.latency_sketch = QuantileSketch.from_state(state["sk"])
        return new

    def __eq__(self, other: object) -> bool:
        """Same events counted: equal counts, exact sums, min, max and sketch buckets."""
        if not isinstance(other, RequestStats):
            return NotImplemented
        return self.to_state() == other.to_state()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RequestStats(count={self.count}, 2xx={self.status_2xx})"
