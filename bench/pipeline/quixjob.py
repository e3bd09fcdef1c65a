"""Quix Streams doing the pipeline's job, in a child process (`pip install -e '.[bench]'`).

`full`: every event validated (bench.pipeline.job.Checker: the worker's own validator
over its schema files), the valid executions written as JSON lines by a Quix sink
(written and fsynced at each Quix checkpoint), and 60 s tumbling windows of count, sum,
min and max of latency per engine, grace 5 s, `.final()` closing by partition (the
partition's highest event time; the default closes a key's windows only when that key
has a newer event), to an output topic. `windows`: the windows alone (no validation, no
file). Batches (JSON arrays): `apply(expand=True)`, `set_timestamp` from each event's
time, `group_by("engine_id")` with string keys (Quix windows by message key: a
repartition topic, each engine on the partition Kafka's partitioner gives its id).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common.baseline import mark
from bench.common.quix import application, latency_windows
from bench.pipeline.job import EXECUTION, WINDOW_S, Checker, JsonlFile, event_type_of

GRACE_MS = 5_000
COMMIT_INTERVAL_S = 1.0  # the worker's sinks flush every second at most, too


def quix_sink(path: Path) -> Any:
    """A Quix sink writing each record as a JSON line, fsynced at every checkpoint."""
    import orjson
    from quixstreams.sinks import BaseSink

    class JsonlSink(BaseSink):
        def __init__(self) -> None:
            super().__init__()
            self.file = JsonlFile(path)

        def add(self, value: Any, *args: Any, **kwargs: Any) -> None:
            self.file.add(orjson.dumps(value))

        def flush(self) -> None:
            self.file.flush()

    return JsonlSink()


def quix_main(
    bootstrap: str, topic_name: str, out_name: str, group: str, state_dir: str,
    batched: bool, full: bool, path: Path,
) -> None:  # fmt: skip
    """Run the Quix application until the parent stops it."""
    app = application(bootstrap, group, state_dir, commit_interval=COMMIT_INTERVAL_S)

    def event_time(value: Any, headers: Any, timestamp: int, timestamp_type: Any) -> int:
        if isinstance(value, dict) and "timestamp" in value:
            return int(value["timestamp"] * 1000)
        return timestamp  # a batch: each event gets its own time below

    topic = app.topic(
        topic_name, value_deserializer="json", key_deserializer="bytes",
        timestamp_extractor=event_time,
    )  # fmt: skip
    out = app.topic(out_name, value_serializer="json", key_serializer="str")
    sdf = app.dataframe(topic)
    first = [False]

    def started(value: Any) -> Any:
        if not first[0]:
            first[0] = True
            mark("FIRST")
        return value if isinstance(value, list) else [value]

    sdf = sdf.apply(started, expand=True)
    if full:
        checker = Checker()
        sdf = sdf.filter(
            lambda v, k, ts, h: checker.valid_type(v, h) == EXECUTION, metadata=True
        )
        sdf.sink(quix_sink(path))
    else:
        sdf = sdf.filter(lambda v, k, ts, h: event_type_of(v, h) == EXECUTION, metadata=True)
    if batched:
        sdf = sdf.set_timestamp(lambda value, key, ts, headers: int(value["timestamp"] * 1000))
        # Keys as plain strings: the same murmur2 partition as the engine's ingest
        # partition (JSON keys, Quix's default, would be quoted and land elsewhere).
        sdf = sdf.group_by("engine_id", key_serializer="str", key_deserializer="str")
    sdf = sdf.apply(lambda event: {"latency_ms": event["metrics"]["latency_ms"]})
    sdf = latency_windows(sdf, WINDOW_S * 1000, GRACE_MS).final(closing_strategy="partition")

    def record(window: dict[str, Any], key: Any, ts: int, headers: Any) -> dict[str, Any]:
        engine = key.decode() if isinstance(key, bytes) else str(key)
        start = window["start"] // 1000
        return {
            "engine_id": engine, "kind": "engine", "window_start": start,
            "window_end": window["end"] // 1000, "window_size_s": WINDOW_S, "revision": 0,
            "count": window["count"], "latency_sum": window["latency_sum"],
            "latency_min": window["latency_min"], "latency_max": window["latency_max"],
        }  # fmt: skip

    sdf = sdf.apply(record, metadata=True)
    sdf.to_topic(out, key=lambda value: value["engine_id"])
    app.run()
