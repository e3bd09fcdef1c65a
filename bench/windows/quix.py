"""The window benchmark's Quix Streams run (a child process; `pip install -e '.[bench]'`):
60 s tumbling windows per engine over the event time, reporting its marks as the
plain loops do."""

from __future__ import annotations

from typing import Any

from bench.common.baseline import mark
from bench.common.quix import application, latency_windows
from bench.windows.workload import WINDOW_S


def quix_main(
    bootstrap: str, topic_name: str, group: str, state_dir: str, total: int, shape: str
) -> None:
    """Quix Streams: 60 s tumbling windows per engine over the event time."""
    app = application(bootstrap, group, state_dir)

    def event_time(value: Any, headers: Any, timestamp: int, timestamp_type: Any) -> int:
        if isinstance(value, dict):
            return int(value["timestamp"] * 1000)
        return timestamp  # a batch: each event gets its own time below

    topic = app.topic(
        topic_name,
        value_deserializer="json",
        key_deserializer="bytes",
        timestamp_extractor=event_time,
    )
    sdf = app.dataframe(topic)
    if shape == "batch":
        sdf = sdf.apply(lambda batch: batch, expand=True)
        sdf = sdf.set_timestamp(lambda value, key, ts, headers: int(value["timestamp"] * 1000))
        sdf = sdf.group_by("engine_id")
    count = [0]

    def counted(event: dict[str, Any]) -> dict[str, Any]:
        if count[0] == 0:
            mark("FIRST")
        count[0] += 1
        if count[0] == total:
            mark("DONE", total)
        return {"latency_ms": event["metrics"]["latency_ms"]}

    sdf = sdf.apply(counted)
    sdf = latency_windows(sdf, WINDOW_S * 1000, 5_000).final()
    app.run()
