"""Window metrics as tables for ML pipelines: read them from engine.metrics.windows,
keep the latest revision of each window, write CSV or Parquet."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.kafka.admin import client_options, describe_topics

COLUMNS = (
    "engine_id", "kind", "model", "route", "window_start", "window_end", "window_start_iso",
    "window_end_iso", "window_size_s", "revision", "late_events", "count", "success_count",
    "success_rate", "latency_min_ms", "latency_max_ms", "latency_avg_ms", "latency_p50_ms",
    "latency_p95_ms", "latency_p99_ms", "quality_score_mean", "memory_mb_mean",
    "cpu_percent_mean", "status_2xx", "status_4xx", "status_5xx",
)  # fmt: skip
FORMATS = ("csv", "parquet")


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write rows with the COLUMNS header (missing values empty)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in COLUMNS})
    return path


def write_parquet(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write rows as a Parquet file with one typed column per COLUMNS entry."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({k: [row.get(k) for row in rows] for k in COLUMNS})
    pq.write_table(table, path)
    return path


WRITERS: dict[str, Callable[[list[dict[str, Any]], Path], Path]] = {
    "csv": write_csv,
    "parquet": write_parquet,
}


async def read_window_records(
    settings: Settings, on_progress: Callable[[int], None] | None = None
) -> list[dict[str, Any]]:
    """Every record of engine.metrics.windows, read from the beginning to the current end."""
    topic = TopicNames(settings.topic_prefix).metrics_windows
    records: list[dict[str, Any]] = []
    described = await describe_topics(settings, [topic])
    if not described:
        return records
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(described[0].partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = [tp for tp in tps if ends[tp] > 0]
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp_records in batch.values():
                records.extend(orjson.loads(r.value) for r in tp_records if r.value)
            remaining = [tp for tp in remaining if await consumer.position(tp) < ends[tp]]
            if on_progress is not None:
                on_progress(len(records))
    finally:
        await consumer.stop()
    return records
