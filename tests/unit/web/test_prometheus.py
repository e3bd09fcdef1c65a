"""The Prometheus text format of streams.web.prometheus: HELP/TYPE lines, escaping, values,
units and types, and the families read from the worker's state."""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from streams.domain.windows import Clock
from streams.runtime.histogram import Histogram
from streams.runtime.router_counters import RouterCounters
from streams.web.prometheus import (
    CONTENT_TYPE,
    MetricFamily,
    Sample,
    collect,
    consumer_lag_family,
    escape_help,
    escape_label_value,
    format_value,
    histogram_samples,
    render,
    router_families,
    sink_families,
    window_families,
)

# The text format's grammar, strictly enough to catch what Prometheus would reject.
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\\\|\\"|\\n)*"'
PAIR = rf"[a-zA-Z_][a-zA-Z0-9_]*={LABEL_VALUE}"
LABELS = rf"\{{{PAIR}(?:,{PAIR})*\}}"
VALUE = r"(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN)"
SAMPLE_LINE = re.compile(rf"^({NAME})({LABELS})? ({VALUE})$")
HELP_LINE = re.compile(rf"^# HELP ({NAME}) (.*)$")
TYPE_LINE = re.compile(rf"^# TYPE ({NAME}) (counter|gauge|summary|histogram|untyped)$")


def parse(text: str) -> dict[str, dict[str, Any]]:
    """Families by name: help, type and samples as (name, labels text, value text);
    asserts that every line is well formed and every sample follows its TYPE line."""
    assert text.endswith("\n")
    families: dict[str, dict[str, Any]] = {}
    current: str | None = None
    for line in text[:-1].split("\n"):
        if m := HELP_LINE.match(line):
            assert m.group(1) not in families, f"{m.group(1)} twice"
            current = m.group(1)
            families[current] = {"help": m.group(2), "type": None, "samples": []}
        elif m := TYPE_LINE.match(line):
            assert m.group(1) == current, line
            families[current]["type"] = m.group(2)
        else:
            m = SAMPLE_LINE.match(line)
            assert m, f"malformed line: {line!r}"
            assert current is not None and m.group(1).startswith(current), line
            families[current]["samples"].append((m.group(1), m.group(2) or "", m.group(3)))
    return families


def test_render_writes_help_type_and_samples() -> None:
    family = MetricFamily("demo_requests_total", "counter", "Requests served.")
    family.add(3, route="/a").add(1, route="/b")
    text = render([family])
    assert text == (
        "# HELP demo_requests_total Requests served.\n"
        "# TYPE demo_requests_total counter\n"
        'demo_requests_total{route="/a"} 3\n'
        'demo_requests_total{route="/b"} 1\n'
    )
    assert parse(text)["demo_requests_total"]["type"] == "counter"


def test_label_values_are_escaped() -> None:
    nasty = 'a\\b"c\nd'
    assert escape_label_value(nasty) == 'a\\\\b\\"c\\nd'
    family = MetricFamily("demo_gauge", "gauge", "g").add(1.5, topic=nasty)
    text = render([family])
    assert 'demo_gauge{topic="a\\\\b\\"c\\nd"} 1.5\n' in text
    assert len(text.splitlines()) == 3  # the raw newline did not split a line
    parse(text)


def test_help_is_escaped_but_keeps_quotes() -> None:
    assert escape_help('back\\slash "quoted"\nnext') == 'back\\\\slash "quoted"\\nnext'
    text = render([MetricFamily("demo_gauge", "gauge", "two\nlines").add(0)])
    assert "# HELP demo_gauge two\\nlines\n" in text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (42, "42"),
        (2.0, "2"),
        (0.25, "0.25"),
        (1e-7, "1e-07"),
        (1e20, "1e+20"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
        (True, "1"),
    ],
)
def test_values(value: float, text: str) -> None:
    assert format_value(value) == text
    assert re.fullmatch(VALUE, text)


def test_empty_render_is_empty() -> None:
    assert render([]) == ""


def test_family_without_samples_keeps_help_and_type() -> None:
    text = render([MetricFamily("demo_lag_seconds", "gauge", "lag")])
    assert text == "# HELP demo_lag_seconds lag\n# TYPE demo_lag_seconds gauge\n"


@pytest.mark.parametrize(
    "family",
    [
        MetricFamily("demo_requests", "counter", "a counter must end in _total"),
        MetricFamily("demo_open_total", "gauge", "only counters end in _total"),
        MetricFamily("9starts_with_digit", "gauge", "bad name"),
        MetricFamily("demo-dash", "gauge", "bad name"),
        MetricFamily("demo_gauge", "gauge", "bad label").add(1, **{"bad-label": "x"}),
        MetricFamily("demo_gauge", "gauge", "reserved label").add(1, __name__="x"),
        MetricFamily("demo_gauge", "gauge", "le outside histograms").add(1, le="1"),
        MetricFamily("demo_gauge", "gauge", "suffix").add(1, suffix="_sum"),
        MetricFamily("demo_total", "counter", "negative").add(-1),
        MetricFamily("demo_total", "counter", "NaN counter").add(math.nan),
    ],
)
def test_render_refuses_what_prometheus_rejects(family: MetricFamily) -> None:
    with pytest.raises(ValueError):
        render([family])


def test_render_refuses_a_family_twice() -> None:
    with pytest.raises(ValueError, match="twice"):
        render([MetricFamily("demo_gauge", "gauge", "a"), MetricFamily("demo_gauge", "gauge", "b")])


def test_samples_are_sorted_by_labels() -> None:
    family = MetricFamily("demo_gauge", "gauge", "g")
    for partition in ("2", "0", "1"):
        family.add(1, partition=partition)
    lines = render([family]).splitlines()[2:]
    assert [line.split('"')[1] for line in lines] == ["0", "1", "2"]


def test_histogram_buckets_are_cumulative_and_end_with_inf() -> None:
    histogram = Histogram((0.01, 0.1, 1.0))
    for value in (0.005, 0.01, 0.05, 0.5, 3.0):
        histogram.observe(value)
    family = MetricFamily("demo_flush_seconds", "histogram", "flushes")
    family.samples.extend(histogram_samples(histogram, channel="events"))
    text = render([family])
    assert text.splitlines()[2:] == [
        'demo_flush_seconds_bucket{channel="events",le="0.01"} 2',
        'demo_flush_seconds_bucket{channel="events",le="0.1"} 3',
        'demo_flush_seconds_bucket{channel="events",le="1.0"} 4',
        'demo_flush_seconds_bucket{channel="events",le="+Inf"} 5',
        'demo_flush_seconds_sum{channel="events"} 3.565',
        'demo_flush_seconds_count{channel="events"} 5',
    ]
    parse(text)


def test_histogram_bounds_must_increase() -> None:
    with pytest.raises(ValueError):
        Histogram((1.0, 0.5))


def test_router_families_are_counters_with_their_labels() -> None:
    counters = RouterCounters()
    counters.messages_in["engine.ingest"] += 7
    counters.events_routed["engine_execution"] += 100
    counters.messages_out["engine.executions"] += 3
    counters.dead_letters["malformed_json"] += 2
    counters.dead_letters['odd "reason"'] += 1
    families = parse(render(router_families(counters)))
    assert {name: f["type"] for name, f in families.items()} == {
        "enginestream_messages_in_total": "counter",
        "enginestream_events_routed_total": "counter",
        "enginestream_messages_out_total": "counter",
        "enginestream_dead_letters_total": "counter",
    }
    assert families["enginestream_messages_in_total"]["samples"] == [
        ("enginestream_messages_in_total", '{topic="engine.ingest"}', "7")
    ]
    assert families["enginestream_events_routed_total"]["samples"] == [
        ("enginestream_events_routed_total", '{event_type="engine_execution"}', "100")
    ]
    assert families["enginestream_dead_letters_total"]["samples"] == [
        ("enginestream_dead_letters_total", '{reason="malformed_json"}', "2"),
        ("enginestream_dead_letters_total", '{reason="odd \\"reason\\""}', "1"),
    ]


@dataclass
class FakeWindows:
    clock: Clock


@dataclass
class FakeProcessor:
    emitted: int = 12
    late_events: int = 3
    too_late: int = 1
    events_in: int = 5000
    topic_of_kind: dict[str, str] = field(
        default_factory=lambda: {"engine": "engine.executions", "route": "engine.events"}
    )
    partitions: dict[tuple[str, int], FakeWindows] = field(default_factory=dict)


def test_window_families_and_watermark_lag_in_seconds() -> None:
    processor = FakeProcessor(
        partitions={
            ("engine", 1): FakeWindows(Clock(watermark=1_700_000_000.0)),
            ("engine", 0): FakeWindows(Clock(watermark=1_700_000_090.5)),
            ("route", 0): FakeWindows(Clock()),  # no event yet: no watermark, no sample
        }
    )
    families = parse(render(window_families(processor, now=1_700_000_100.0)))
    assert families["enginestream_window_records_emitted_total"]["samples"] == [
        ("enginestream_window_records_emitted_total", "", "12")
    ]
    assert families["enginestream_late_events_total"]["samples"][0][2] == "3"
    assert families["enginestream_too_late_events_total"]["samples"][0][2] == "1"
    lag = families["enginestream_watermark_lag_seconds"]
    assert lag["type"] == "gauge"
    assert lag["samples"] == [
        ("enginestream_watermark_lag_seconds", '{topic="engine.executions",partition="0"}', "9.5"),
        ("enginestream_watermark_lag_seconds", '{topic="engine.executions",partition="1"}', "100"),
    ]


def test_replayed_history_gives_a_large_but_correct_lag() -> None:
    month = 30 * 86400.0
    processor = FakeProcessor(partitions={("engine", 0): FakeWindows(Clock(watermark=1e9))})
    family = window_families(processor, now=1e9 + month)[-1]
    assert family.samples == [Sample({"topic": "engine.executions", "partition": "0"}, month)]


def sink(name: str, **extra: Any) -> Any:
    return SimpleNamespace(
        channel=SimpleNamespace(name=name), lines_written=10, duplicates=2, **extra
    )


def test_sink_families_without_flush_stats() -> None:
    families = parse(render(sink_families([sink("events"), sink("dead_letters")])))
    assert set(families) == {
        "enginestream_sink_lines_written_total",
        "enginestream_sink_duplicates_total",
    }
    assert families["enginestream_sink_lines_written_total"]["samples"] == [
        ("enginestream_sink_lines_written_total", '{channel="dead_letters"}', "10"),
        ("enginestream_sink_lines_written_total", '{channel="events"}', "10"),
    ]


def test_sink_families_with_flush_seconds_and_bytes() -> None:
    histogram = Histogram()
    histogram.observe(0.003)
    families = parse(
        render(sink_families([sink("events", bytes_written=4096, flush_seconds=histogram)]))
    )
    assert families["enginestream_sink_written_bytes_total"]["type"] == "counter"
    assert families["enginestream_sink_written_bytes_total"]["samples"] == [
        ("enginestream_sink_written_bytes_total", '{channel="events"}', "4096")
    ]
    flush = families["enginestream_sink_flush_seconds"]
    assert flush["type"] == "histogram"
    assert flush["samples"][-2:] == [
        ("enginestream_sink_flush_seconds_sum", '{channel="events"}', "0.003"),
        ("enginestream_sink_flush_seconds_count", '{channel="events"}', "1"),
    ]


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


class FakeConsumer:
    def __init__(self, positions: dict[TP, int | None], highs: dict[TP, int | None]) -> None:
        self.positions = positions
        self.highs = highs

    def assignment(self) -> set[TP]:
        return set(self.positions)

    async def position(self, tp: TP) -> int | None:
        return self.positions[tp]

    def highwater(self, tp: TP) -> int | None:
        return self.highs[tp]


def fake_app(consumer: Any) -> Any:
    return SimpleNamespace(consumer=consumer, tables=SimpleNamespace(changelog_topics={"cl"}))


def test_consumer_lag_is_highwater_minus_position() -> None:
    ingest0, ingest1, execs, changelog = (
        TP("engine.ingest", 0), TP("engine.ingest", 1), TP("engine.executions", 2), TP("cl", 0)
    )
    leader = TP("es-1-__assignor-__leader", 0)
    consumer = FakeConsumer(
        {ingest0: 90, ingest1: 10, execs: None, changelog: 0, leader: 0},
        {ingest0: 100, ingest1: 10, execs: 5, changelog: 999, leader: 3},
    )
    family = asyncio.run(consumer_lag_family(fake_app(consumer)))
    assert family.name == "enginestream_consumer_lag_messages"
    assert family.type == "gauge"
    assert family.samples == [
        Sample({"topic": "engine.ingest", "partition": "0"}, 10),
        Sample({"topic": "engine.ingest", "partition": "1"}, 0),
    ]


def test_consumer_lag_before_the_consumer_started() -> None:
    class NotStarted:
        def assignment(self) -> set[TP]:
            raise RuntimeError("Consumer thread not yet started")

    assert asyncio.run(consumer_lag_family(fake_app(NotStarted()))).samples == []


def test_collect_renders_every_metric_of_the_brief() -> None:
    counters = RouterCounters()
    counters.messages_in["engine.ingest"] += 1
    consumer = FakeConsumer({TP("engine.ingest", 0): 1}, {TP("engine.ingest", 0): 1})
    families = asyncio.run(
        collect(fake_app(consumer), counters, FakeProcessor(), [sink("events")], now=0.0)
    )
    parsed = parse(render(families))
    expected = {
        "enginestream_messages_in_total": "counter",
        "enginestream_events_routed_total": "counter",
        "enginestream_messages_out_total": "counter",
        "enginestream_dead_letters_total": "counter",
        "enginestream_window_records_emitted_total": "counter",
        "enginestream_late_events_total": "counter",
        "enginestream_too_late_events_total": "counter",
        "enginestream_window_events_in_total": "counter",
        "enginestream_watermark_lag_seconds": "gauge",
        "enginestream_sink_lines_written_total": "counter",
        "enginestream_sink_duplicates_total": "counter",
        "enginestream_consumer_lag_messages": "gauge",
    }
    assert {name: f["type"] for name, f in parsed.items()} == expected
    for name, family in parsed.items():
        assert family["help"], name
        if family["type"] == "counter":
            assert name.endswith("_total")


def test_content_type_is_the_text_format() -> None:
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")
