"""The window benchmark's Quix Streams run (a child process; `pip install -e '.[bench]'`):
60 s tumbling windows per engine over the event time, reporting its marks as the
plain loops do."""

from __future__ import annotations

from typing import Any

from bench.common.baseline import mark
from bench.common.kafka import MAX_BYTES
from bench.windows.workload import WINDOW_S


def quix_main(
    bootstrap: str, topic_name: str, group: str, state_dir: str, total: int, shape: str
) -> None:
    """Quix Streams: 60 s tumbling windows per engine over the event time."""
    from quixstreams import Application
    from quixstreams.dataframe.windows import Count, Max, Min, Sum

    def on_assign(*_: Any) -> None:
        if not ready[0]:
            ready[0] = True
            mark("READY")

    ready = [False]
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=state_dir,
        loglevel="WARNING",
        consumer_extra_config={"max.partition.fetch.bytes": MAX_BYTES},
    )

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
    sdf = (
        sdf.tumbling_window(WINDOW_S * 1000, grace_ms=5_000)
        .agg(
            count=Count(),
            latency_sum=Sum("latency_ms"),
            latency_min=Min("latency_ms"),
            latency_max=Max("latency_ms"),
        )
        .final()
    )
    consumer_assign = app._on_assign  # what Quix subscribes with (in run): wrap it

    def assigned(*args: Any, **kwargs: Any) -> Any:
        on_assign()
        return consumer_assign(*args, **kwargs)

    app._on_assign = assigned  # type: ignore[method-assign]
    app.run()
