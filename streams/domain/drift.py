"""Drift per engine: the last N final windows against the N before them.

Pure: takes window records (schemas/v1/window_stats.json), answers the job metrics.
"""

from __future__ import annotations

import math
from typing import Any

from streams.domain.windows import latest_revisions


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def drift(records: list[dict[str, Any]], windows: int, size: int) -> dict[str, Any]:
    """Per engine, the mean latency p95 and the success rate (events weighted) of the
    last `windows` windows of `size` seconds against the `windows` before them."""
    rows = [r for r in latest_revisions(records, size=size) if r["kind"] == "engine"]
    by_engine: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_engine.setdefault(row["engine_id"], []).append(row)
    engines: dict[str, Any] = {}
    for engine, found in sorted(by_engine.items()):
        found.sort(key=lambda r: r["window_start"])
        recent = found[-windows:]
        before = found[-2 * windows : -windows] if len(found) > windows else []

        def p95(rows: list[dict[str, Any]]) -> float | None:
            return _mean([r["latency_p95_ms"] for r in rows])

        def success(rows: list[dict[str, Any]]) -> float | None:
            total = sum(r["count"] for r in rows)
            return sum(r["success_count"] for r in rows) / total if total else None

        entry: dict[str, Any] = {
            "windows_recent": len(recent),
            "windows_before": len(before),
            "latency_p95_recent_ms": p95(recent),
            "latency_p95_before_ms": p95(before),
            "success_rate_recent": success(recent),
            "success_rate_before": success(before),
        }
        a, b = entry["latency_p95_recent_ms"], entry["latency_p95_before_ms"]
        entry["latency_p95_change"] = (a - b) / b if a is not None and b else None
        c, d = entry["success_rate_recent"], entry["success_rate_before"]
        entry["success_rate_change"] = c - d if c is not None and d is not None else None
        engines[engine] = entry
    return {"window_size_s": size, "windows": windows, "engines": engines}
