"""What the benchmarks' Quix Streams runs share (a child process; `pip install -e
'.[bench]'`): the application as every run configures it, the READY mark on its first
partition assignment, and the windows' aggregation (count, sum, min and max of latency)."""

from __future__ import annotations

from typing import Any

from bench.common.baseline import mark
from bench.common.kafka import MAX_BYTES


def application(bootstrap: str, group: str, state_dir: str, **options: Any) -> Any:
    """A Quix Application reading from the beginning, whole batch messages included,
    that marks READY when it first gets partitions (call before `run`)."""
    from quixstreams import Application

    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=state_dir,
        loglevel="WARNING",
        consumer_extra_config={"max.partition.fetch.bytes": MAX_BYTES},
        **options,
    )
    assign = app._on_assign  # what Quix subscribes with (in run): wrap it
    ready = [False]

    def assigned(*args: Any, **kwargs: Any) -> Any:
        if not ready[0]:
            ready[0] = True
            mark("READY")
        return assign(*args, **kwargs)

    app._on_assign = assigned  # type: ignore[method-assign]
    return app


def latency_windows(sdf: Any, size_ms: int, grace_ms: int) -> Any:
    """Tumbling windows of `sdf` (events with `latency_ms`): count, sum, min and max;
    the caller chooses how they close (`.final(...)`)."""
    from quixstreams.dataframe.windows import Count, Max, Min, Sum

    return sdf.tumbling_window(size_ms, grace_ms=grace_ms).agg(
        count=Count(),
        latency_sum=Sum("latency_ms"),
        latency_min=Min("latency_ms"),
        latency_max=Max("latency_ms"),
    )
