"""The collectors of streams.web.metrics_collectors: each reads the worker's state into
families with the right names, labels, types and values, exposed by prometheus_client
and read back with its parser."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from streams.domain.windows import Clock
from streams.runtime.histogram import Histogram
from streams.runtime.router_counters import RouterCounters
from streams.web.metrics_collectors import (
    ConsumerLagCollector,
    RouterCollector,
    SinkCollector,
    WindowCollector,
    consumer_lags,
    histogram_buckets,
)
from tests.unit.web import metrics_sample_state as state


def scrape(collector: Collector) -> tuple[str, dict[str, Metric]]:
    """The 0.0.4 text of `collector` and its families as the real parser reads them."""
    text = generate_latest(collector).decode()
    return text, {family.name: family for family in text_string_to_metric_families(text)}


def samples(family: Metric) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for s in family.samples]


def test_router_counters_are_exposed_as_totals_by_label() -> None:
    text, families = scrape(RouterCollector(state.router_counters()))
    assert {name: f.type for name, f in families.items()} == {
        "enginestream_messages_in": "counter",
        "enginestream_events_routed": "counter",
        "enginestream_messages_out": "counter",
        "enginestream_dead_letters": "counter",
    }
    # prometheus_client adds _total to the family named without it: the series keep
    # the names they had.
    assert "# TYPE enginestream_messages_in_total counter\n" in text
    assert samples(families["enginestream_messages_in"]) == [
        ("enginestream_messages_in_total", {"topic": "engine.executions.raw"}, 2.0),
        ("enginestream_messages_in_total", {"topic": "engine.ingest"}, 7.0),
    ]
    assert samples(families["enginestream_dead_letters"]) == [
        ("enginestream_dead_letters_total", {"reason": "malformed_json"}, 2.0),
        ("enginestream_dead_letters_total", {"reason": 'odd "reason"\\\n'}, 1.0),
    ]


def test_router_counters_are_read_at_scrape_time() -> None:
    counters = RouterCounters()
    collector = RouterCollector(counters)
    assert samples(scrape(collector)[1]["enginestream_events_routed"]) == []
    counters.events_routed["engine_execution"] += 5
    assert samples(scrape(collector)[1]["enginestream_events_routed"]) == [
        ("enginestream_events_routed_total", {"event_type": "engine_execution"}, 5.0)
    ]


def test_window_counters_and_watermark_lag_in_seconds() -> None:
    _, families = scrape(WindowCollector(state.processor(), clock=lambda: state.NOW))
    for name, value in (
        ("enginestream_window_records_emitted", 12.0),
        ("enginestream_late_events", 3.0),
        ("enginestream_too_late_events", 1.0),
        ("enginestream_window_events_in", 5000.0),
    ):
        assert families[name].type == "counter"
        assert samples(families[name]) == [(name + "_total", {}, value)]
    lag = families["enginestream_watermark_lag_seconds"]
    assert lag.type == "gauge"
    # The partition without a watermark has no sample.
    assert samples(lag) == [
        ("enginestream_watermark_lag_seconds", {"topic": "engine.executions", "partition": "0"},
         9.5),
        ("enginestream_watermark_lag_seconds", {"topic": "engine.executions", "partition": "1"},
         100.0),
    ]


def test_replayed_history_gives_a_large_but_correct_lag() -> None:
    month = 30 * 86400.0
    processor = state.FakeProcessor(
        partitions={("engine", 0): state.FakeWindows(Clock(watermark=1e9))}
    )
    _, families = scrape(WindowCollector(processor, clock=lambda: 1e9 + month))
    assert [s.value for s in families["enginestream_watermark_lag_seconds"].samples] == [month]


def test_sinks_without_flush_stats_have_lines_and_duplicates_only() -> None:
    _, families = scrape(SinkCollector([state.sink("events"), state.sink("dead_letters")]))
    assert set(families) == {"enginestream_sink_lines_written", "enginestream_sink_duplicates"}
    assert samples(families["enginestream_sink_lines_written"]) == [
        ("enginestream_sink_lines_written_total", {"channel": "dead_letters"}, 10.0),
        ("enginestream_sink_lines_written_total", {"channel": "events"}, 10.0),
    ]


def test_sink_bytes_and_flush_seconds_histogram() -> None:
    _, families = scrape(SinkCollector(state.sinks()))
    assert samples(families["enginestream_sink_written_bytes"]) == [
        ("enginestream_sink_written_bytes_total", {"channel": "dead_letters"}, 0.0),
        ("enginestream_sink_written_bytes_total", {"channel": "events"}, 4096.0),
    ]
    flush = families["enginestream_sink_flush_seconds"]
    assert flush.type == "histogram"
    events = [s for s in flush.samples if s.labels["channel"] == "events"]
    buckets = {s.labels["le"]: s.value for s in events if s.name.endswith("_bucket")}
    assert buckets["0.0005"] == 1.0
    assert buckets["0.005"] == 2.0
    assert buckets["1.0"] == buckets["+Inf"] == 3.0
    assert [(s.name, s.value) for s in events[-2:]] == [
        ("enginestream_sink_flush_seconds_count", 3.0),
        ("enginestream_sink_flush_seconds_sum", pytest.approx(0.7034)),
    ]


def test_histogram_buckets_are_cumulative_with_float_bounds() -> None:
    histogram = Histogram((0.01, 0.1, 1.0))
    for value in (0.005, 0.01, 0.05, 0.5, 3.0):
        histogram.observe(value)
    assert histogram_buckets(histogram) == [
        ("0.01", 2), ("0.1", 3), ("1.0", 4), ("+Inf", 5)
    ]


def lag_of(app: Any, timeout_s: float = 2.0) -> list[tuple[str, int, int]]:
    return asyncio.run(consumer_lags(app, timeout_s))


def test_consumer_lag_is_highwater_minus_position_of_source_partitions() -> None:
    # The partition without a position, the changelog and the leader topic are left out.
    assert lag_of(state.fake_app(state.consumer())) == [
        ("engine.ingest", 0, 10),
        ("engine.ingest", 1, 0),
    ]


def test_consumer_lag_before_the_consumer_started() -> None:
    class NotStarted:
        def assignment(self) -> set[state.TP]:
            raise RuntimeError("Consumer thread not yet started")

    assert lag_of(state.fake_app(NotStarted())) == []


def test_consumer_lag_does_not_wait_for_positions() -> None:
    class Recovering(state.FakeConsumer):
        async def position(self, tp: state.TP) -> int | None:
            await asyncio.Event().wait()  # as while partitions are recovering
            return None

    consumer = Recovering({state.TP("engine.ingest", 0): None}, {})
    assert lag_of(state.fake_app(consumer), timeout_s=0.05) == []


def test_consumer_lag_collector_exposes_the_last_measure() -> None:
    collector = ConsumerLagCollector(state.fake_app(state.consumer()))
    family = scrape(collector)[1]["enginestream_consumer_lag_messages"]
    assert family.type == "gauge"
    assert samples(family) == []  # not measured yet: the family, no samples
    asyncio.run(collector.refresh())
    family = scrape(collector)[1]["enginestream_consumer_lag_messages"]
    assert samples(family) == [
        ("enginestream_consumer_lag_messages", {"topic": "engine.ingest", "partition": "0"}, 10.0),
        ("enginestream_consumer_lag_messages", {"topic": "engine.ingest", "partition": "1"}, 0.0),
    ]
