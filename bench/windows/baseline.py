"""The window benchmark's plain loops, each in a child process: aiokafka consumer ->
orjson.loads -> an aggregate per (engine, 60 s window), either a plain dict of
[count, latency sum, min, max] or streams.domain.aggregates.ExecutionStats."""

from __future__ import annotations

import math
import sys
from functools import partial
from typing import Any

import orjson

from bench.common.baseline import InputReader, mark
from bench.windows.workload import WINDOW_S


async def baseline_main(
    bootstrap: str, topic: str, partitions: int, total: int, stats: bool
) -> None:
    """The plain loop: read `topic` from the beginning to its current end, aggregate
    every event into its (engine, 60 s window)."""
    from streams.domain.aggregates import ExecutionStats

    windows: dict[tuple[str, int], Any] = {}
    loads = orjson.loads
    floor = math.floor
    done = 0
    async with InputReader(bootstrap, topic, partitions) as reader:
        mark("READY")
        async for records in reader.batches(first=partial(mark, "FIRST")):
            for rec in records:
                value = loads(rec.value)
                docs = value if isinstance(value, list) else (value,)
                for doc in docs:
                    key = (doc["engine_id"], floor(doc["timestamp"] / WINDOW_S) * WINDOW_S)
                    if stats:
                        acc = windows.get(key)
                        if acc is None:
                            acc = windows[key] = ExecutionStats()
                        acc.add(doc)
                    else:
                        lat = doc["metrics"]["latency_ms"]
                        w = windows.get(key)
                        if w is None:
                            windows[key] = [1, lat, lat, lat]
                        else:
                            w[0] += 1
                            w[1] += lat
                            if lat < w[2]:
                                w[2] = lat
                            if lat > w[3]:
                                w[3] = lat
                done += len(docs)
        mark("DONE", done, len(windows))
    if done != total:
        print(f"expected {total} events, read {done}", file=sys.stderr)
