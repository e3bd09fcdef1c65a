"""The worker's running state as Prometheus metric families, read at scrape time.

Each collector is a ``prometheus_client`` custom collector: it keeps no metrics of its
own, and ``collect()`` reads the counters the agents already keep (RouterCounters, the
WindowProcessor, the ChannelSinks), so nothing is counted twice and a scrape costs one
pass over them. Counters are named without ``_total`` here: the library adds it.

Units follow the Prometheus conventions: times are seconds, sizes bytes.
``enginestream_watermark_lag_seconds`` is the wall clock minus a source partition's
watermark: small for live traffic, and as large as the age of the data while history
is replayed (correct, and the point: it shows how far behind event time the windows
are). ``enginestream_consumer_lag_messages`` is the partition's high watermark minus
the consumer's fetch position, for the source partitions this worker is assigned (the
tables' changelog partitions are left out: the worker writes them itself and does not
read them back after recovery; so is Faust's leader topic).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from streams.runtime.histogram import Histogram
from streams.runtime.router_counters import RouterCounters

log = logging.getLogger(__name__)

PREFIX = "enginestream_"
# Faust's own topic for electing the assignment leader: not data, left out of the lag.
LEADER_TOPIC_SUFFIX = "-__assignor-__leader"


class RouterCollector(Collector):
    """The router agent's counters (the ones GET /stats answers), by label."""

    def __init__(self, counters: RouterCounters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        """One counter family per RouterCounters field."""
        counters = self.counters
        families: list[tuple[str, str, str, Mapping[str, int]]] = [
            ("messages_in", "topic", "Messages the router read, by source topic.",
             counters.messages_in),
            ("events_routed", "event_type",
             "Valid events the router sent to their typed topic, by event type.",
             counters.events_routed),
            ("messages_out", "topic", "Messages the router wrote, by destination topic.",
             counters.messages_out),
            ("dead_letters", "reason", "Dead letters the router wrote, by reason.",
             counters.dead_letters),
        ]
        for name, label, help, counts in families:
            family = CounterMetricFamily(PREFIX + name, help, labels=[label])
            for key, value in sorted(counts.items()):
                family.add_metric([key], value)
            yield family


class WindowCollector(Collector):
    """The window agent's counters and the event-time lag of each source partition.

    `processor` is a streams.agents.window_agent.WindowProcessor (anything with
    ``emitted``, ``late_events``, ``too_late``, ``events_in``, ``partitions`` and
    ``topic_of_kind``); `clock` gives the wall clock in seconds."""

    def __init__(self, processor: Any, clock: Callable[[], float] = time.time) -> None:
        self.processor = processor
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        """Four unlabelled counters, then the watermark lag gauge."""
        processor = self.processor
        totals: list[tuple[str, str, Any]] = [
            ("window_records_emitted",
             "Window records (finals and late revisions) emitted to engine.metrics.windows.",
             processor.emitted),
            ("late_events",
             "Late revisions emitted: events that arrived for a window already final.",
             processor.late_events),
            ("too_late_events",
             "Events older than the window retention, dead-lettered as too_late.",
             processor.too_late),
            ("window_events_in",
             "Events the window agent applied (executions and served requests).",
             getattr(processor, "events_in", 0)),
        ]
        for name, help, value in totals:
            yield CounterMetricFamily(PREFIX + name, help, value=int(value))
        lag = GaugeMetricFamily(
            PREFIX + "watermark_lag_seconds",
            "Wall clock minus the watermark (event time) of each source partition this "
            "worker owns; as large as the data's age while history is replayed.",
            labels=["topic", "partition"],
            unit="seconds",
        )
        now = self.clock()
        topic_of_kind: Mapping[str, str] = processor.topic_of_kind
        for (kind, partition), windows in sorted(processor.owned().items()):
            watermark = windows.clock.watermark
            if math.isfinite(watermark):  # -inf: no event yet, no watermark to lag behind
                lag.add_metric([topic_of_kind.get(kind, kind), str(partition)], now - watermark)
        yield lag


class SinkCollector(Collector):
    """The JSONL sinks' counters and flush times, by channel. Written bytes and flush
    times are left out for sinks that do not keep them (``bytes_written``, an int;
    ``flush_seconds``, a :class:`Histogram`), and the family when none does."""

    def __init__(self, sinks: Iterable[Any]) -> None:
        self.sinks = list(sinks)

    def collect(self) -> Iterator[Metric]:
        """Lines, duplicates, bytes written and the flush time histogram."""
        labels = ["channel"]
        lines = CounterMetricFamily(
            PREFIX + "sink_lines_written",
            "JSONL lines the sinks wrote (committed with an fsync), by channel.",
            labels=labels,
        )
        duplicates = CounterMetricFamily(
            PREFIX + "sink_duplicates",
            "Records the sinks skipped because their id was already written, by channel.",
            labels=labels,
        )
        written = CounterMetricFamily(
            PREFIX + "sink_written_bytes",
            "Bytes the sinks appended to their JSONL files, by channel.",
            labels=labels,
            unit="bytes",
        )
        flushes = HistogramMetricFamily(
            PREFIX + "sink_flush_seconds",
            "Time a sink flush took (one append, fsync and checkpoint replace), by channel.",
            labels=labels,
            unit="seconds",
        )
        for sink in sorted(self.sinks, key=lambda s: str(s.channel.name)):
            channel = [sink.channel.name]
            lines.add_metric(channel, int(sink.lines_written))
            duplicates.add_metric(channel, int(sink.duplicates))
            nbytes = getattr(sink, "bytes_written", None)
            if isinstance(nbytes, int):
                written.add_metric(channel, nbytes)
            histogram = getattr(sink, "flush_seconds", None)
            if isinstance(histogram, Histogram):
                flushes.add_metric(channel, histogram_buckets(histogram), histogram.sum)
        yield lines
        yield duplicates
        yield from (family for family in (written, flushes) if family.samples)


def histogram_buckets(histogram: Histogram) -> list[tuple[str, float]]:
    """The ``(le, cumulative count)`` pairs of `histogram`, ``+Inf`` last, the bounds
    written as the client library writes its own (``1.0``, not ``1``)."""
    return [(floatToGoString(bound), count) for bound, count in histogram.cumulative()]


async def consumer_lags(
    app: Any, timeout_s: float = 2.0
) -> list[tuple[str, int, int]]:
    """(topic, partition, high watermark minus fetch position) of every source
    partition assigned to `app`'s consumer whose position is known within `timeout_s`.

    Empty before the consumer started and when the positions take longer (a scrape
    does not wait for a rebalance or recovery)."""
    try:
        assignment = app.consumer.assignment()
    except Exception:  # the consumer is not started yet: nothing assigned
        return []
    changelogs = set(getattr(app.tables, "changelog_topics", ()) or ())
    partitions = sorted(
        (
            tp
            for tp in assignment
            if tp.topic not in changelogs and not tp.topic.endswith(LEADER_TOPIC_SUFFIX)
        ),
        key=lambda tp: (tp.topic, tp.partition),
    )
    if not partitions:
        return []
    try:
        positions = await asyncio.wait_for(
            asyncio.gather(
                *(app.consumer.position(tp) for tp in partitions), return_exceptions=True
            ),
            timeout_s,
        )
    except TimeoutError:
        log.warning("consumer positions not known within %ss; lag left out", timeout_s)
        return []
    lags = []
    for tp, position in zip(partitions, positions, strict=True):
        if not isinstance(position, int):
            continue  # unknown yet (or the partition was revoked meanwhile)
        try:
            highwater = app.consumer.highwater(tp)
        except Exception:
            continue
        if highwater is None:
            continue
        lags.append((tp.topic, tp.partition, max(0, int(highwater) - position)))
    return lags


class ConsumerLagCollector(Collector):
    """The consumer lag of each assigned source partition, as last measured.

    Positions are asked of the consumer asynchronously, which ``collect()`` (called
    synchronously by the exposition) cannot do: :meth:`refresh` measures them, and the
    view awaits it before rendering."""

    def __init__(self, app: Any, timeout_s: float = 2.0) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.lags: list[tuple[str, int, int]] = []

    async def refresh(self) -> None:
        """Measure the lags now (see :func:`consumer_lags`)."""
        self.lags = await consumer_lags(self.app, self.timeout_s)

    def collect(self) -> Iterator[Metric]:
        """The gauge family, one sample per measured partition."""
        family = GaugeMetricFamily(
            PREFIX + "consumer_lag_messages",
            "Messages in an assigned source partition not yet fetched by this worker "
            "(high watermark minus position).",
            labels=["topic", "partition"],
        )
        for topic, partition, lag in self.lags:
            family.add_metric([topic, str(partition)], lag)
        yield family
