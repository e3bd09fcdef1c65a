"""Web views of the window metrics, answered by the worker that owns the engine.

`GET /engines` — every engine with its latest final window and its current open one
(each worker answers for its own partitions; the one asked gathers the others').
`GET /engines/{engine_id}/windows?from=&to=&size=` — the engine's windows in
[from, to); a size that is a multiple of a configured size is merged from the
sketch state, exactly as if it had been computed directly. Every answer says how
fresh it is: the partition's watermark, and per window whether it is final.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import faust
from faust.web import Request, Response, View

from streams.domain.aggregates import ExecutionStats
from streams.domain.windows import EXECUTIONS, PartitionWindows, Window, iso, window_start
from streams.kafka.partitioner import partition_for
from streams.web.health import recovering, unavailable
from streams.web.peers import PeerUnavailable, ask_owner, ask_peers


class BadQuery(ValueError):
    """A query parameter the view cannot use; answered with 400."""


def _number(params: Any, name: str, default: float | None) -> float | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise BadQuery(f"{name}={raw!r} is not a number (epoch seconds)") from None


def base_size_for(size: int, sizes: Iterable[int]) -> int:
    """The largest configured size that divides `size` (BadQuery if none does)."""
    fitting = [s for s in sizes if size % s == 0]
    if not fitting:
        raise BadQuery(f"size {size} is not a multiple of a configured size {sorted(sizes)}")
    return max(fitting)


def engine_windows(
    windows: PartitionWindows,
    engine_id: str,
    size: int,
    start: float,
    end: float,
) -> list[dict[str, Any]]:
    """The engine's `size` windows starting in [start, end), merged from the largest
    configured size that divides `size`; each with `final` (no event can change it any
    more except as a late revision)."""
    base = base_size_for(size, windows.config.sizes)
    grace = windows.config.grace_s
    watermark = windows.clock.watermark
    buckets: dict[int, list[Window]] = {}
    for key, window in windows.windows.items():
        if key[0] != EXECUTIONS or key[1] != engine_id or key[4] != base:
            continue
        bucket = window_start(key[5], size)
        if start <= bucket < end:
            buckets.setdefault(bucket, []).append(window)
    answer = []
    for bucket in sorted(buckets):
        merged = ExecutionStats()
        revision = 0
        late = 0
        for window in buckets[bucket]:
            stats = window.stats
            assert isinstance(stats, ExecutionStats)
            merged.merge(stats)
            revision = max(revision, window.revision)
            late += window.late_events
        answer.append(
            {
                "engine_id": engine_id,
                "window_start": bucket,
                "window_end": bucket + size,
                "window_start_iso": iso(bucket),
                "window_end_iso": iso(bucket + size),
                "window_size_s": size,
                "final": bucket + size + grace <= watermark,
                "revision": revision,
                "late_events": late,
                **merged.result(),
            }
        )
    return answer


def engine_summaries(windows: PartitionWindows) -> dict[str, dict[str, Any]]:
    """Per engine of this partition: latest final and current open window (smallest size)."""
    size = min(windows.config.sizes)
    latest: dict[str, dict[str, Any]] = {}
    for key, window in windows.windows.items():
        if key[0] != EXECUTIONS or key[4] != size:
            continue
        entry = latest.setdefault(key[1], {"latest_final": None, "current": None})
        slot = "latest_final" if window.revision >= 0 else "current"
        held = entry[slot]
        if held is None or held["window_start"] < key[5]:
            entry[slot] = {
                **window.record(),
                "final": slot == "latest_final",
            }
    for entry in latest.values():
        entry["watermark"] = _finite(windows.clock.watermark)
    return latest


def _finite(value: float) -> float | None:
    return value if value not in (float("inf"), float("-inf")) else None


def register_window_views(app: faust.App, processor: Any) -> None:
    """Add /engines and /engines/{engine_id}/windows to `app`."""
    table_name = processor.table.name

    async def local_summaries() -> dict[str, Any]:
        engines: dict[str, Any] = {}
        for (kind, _), windows in processor.owned().items():
            if kind == EXECUTIONS:
                engines.update(engine_summaries(windows))
        return engines

    @app.page("/engines")
    class Engines(View):
        async def get(self, request: Request) -> Response:
            if recovering(app):
                return unavailable(self)
            await processor.ensure_assigned()
            engines = await local_summaries()
            if request.query.get("local") != "1":
                try:
                    for answer in await ask_peers(app, "/engines?local=1", request):
                        engines.update(answer["engines"])
                except PeerUnavailable as exc:
                    return unavailable(self, str(exc))
            return self.json({"as_of": time.time(), "engines": dict(sorted(engines.items()))})

    @app.page("/engines/{engine_id}/windows")
    class EngineWindows(View):
        async def get(self, request: Request, engine_id: str) -> Response:
            if recovering(app):
                return unavailable(self)
            try:
                forwarded = await ask_owner(app, table_name, engine_id, self, request)
            except PeerUnavailable as exc:
                return unavailable(self, str(exc))
            if forwarded is not None:
                return forwarded
            try:
                sizes = processor.config.sizes
                size = int(_number(request.query, "size", min(sizes)) or 0)
                if size <= 0:
                    raise BadQuery("size must be a positive number of seconds")
                start = _number(request.query, "from", float("-inf"))
                end = _number(request.query, "to", float("inf"))
                assert start is not None and end is not None
                partition = partition_for(engine_id.encode(), processor.settings.partitions)
                windows = await processor.ensure(EXECUTIONS, partition)
                found = engine_windows(windows, engine_id, size, start, end)
            except BadQuery as exc:
                return self.json({"error": str(exc)}, status=400)
            if not found and not any(
                k[1] == engine_id for k in windows.windows if k[0] == EXECUTIONS
            ):
                return self.json({"error": f"no windows for engine {engine_id!r}"}, status=404)
            return self.json(
                {
                    "engine_id": engine_id,
                    "window_size_s": size,
                    "watermark": _finite(windows.clock.watermark),
                    "as_of": time.time(),
                    "windows": found,
                }
            )
