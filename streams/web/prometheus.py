"""GET /metrics: the worker's metrics for Prometheus, exposed with ``prometheus_client``.

Each worker has its own registry (not the library's global one, so several apps in
one process do not clash) holding the collectors of streams.web.metrics_collectors
and the library's process and platform collectors. The view answers the text format
0.0.4, or OpenMetrics when the scraper's Accept header asks for it. Each worker
answers for itself (Prometheus scrapes every worker; sum across them in queries), and
the view answers even while partitions move: a scrape never waits for recovery.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder

from streams.runtime.router_counters import RouterCounters
from streams.web.metrics_collectors import (
    ConsumerLagCollector,
    RouterCollector,
    SinkCollector,
    WindowCollector,
)


def metrics_registry(
    app: Any,
    router_counters: RouterCounters,
    window_processor: Any,
    sinks: Sequence[Any],
    clock: Callable[[], float] = time.time,
) -> tuple[CollectorRegistry, ConsumerLagCollector]:
    """A registry with every collector of this worker, and the consumer lag collector
    in it (to :meth:`~ConsumerLagCollector.refresh` before each exposition); `clock`
    is the wall clock the watermark lag is measured against.

    Raises prometheus_client's DuplicateTimeseries if two collectors name one family."""
    # auto_describe: families are named at registration, so a clash fails at startup.
    registry = CollectorRegistry(auto_describe=True)
    lag = ConsumerLagCollector(app)
    for collector in (
        RouterCollector(router_counters),
        WindowCollector(window_processor, clock),
        SinkCollector(sinks),
        lag,
    ):
        registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry, lag


def exposition(registry: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """(body, content type) of `registry` in the format the Accept header `accept`
    asks for: OpenMetrics if it names it, else the text format 0.0.4."""
    encode, content_type = choose_encoder(accept)
    return encode(registry), content_type


def register_prometheus(
    app: faust.App,
    router_counters: RouterCounters,
    window_processor: Any,
    sinks: Sequence[Any],
) -> None:
    """Add GET /metrics to `app`.

    `window_processor` is the WindowProcessor from register_windows and `sinks` the
    ChannelSinks from register_sinks."""
    registry, lag = metrics_registry(app, router_counters, window_processor, sinks)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            await lag.refresh()
            # Rendered on the event loop, not in a thread: the collectors read state
            # the agents change on the loop.
            body, content_type = exposition(registry, request.headers.get("Accept", ""))
            return self.bytes(body, headers={"Content-Type": content_type})
