"""GET /metrics as streams.web.prometheus exposes it: every family the hand-written
exposition had (metrics_sample_state.prom, what it answered for the sample state) with
the same name, type, help, labels and values; the process and platform families; the
text format by default and OpenMetrics on request; one registry per worker."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families

from streams.runtime.router_counters import RouterCounters
from streams.web.prometheus import exposition, metrics_registry
from tests.unit.web import metrics_sample_state as state

BEFORE = Path(__file__).with_name("metrics_sample_state.prom").read_text()
TEXT_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def sample_registry() -> CollectorRegistry:
    """The sample state's registry, consumer lag measured."""
    registry, lag = metrics_registry(
        state.fake_app(state.consumer()),
        state.router_counters(),
        state.processor(),
        state.sinks(),
        clock=lambda: state.NOW,
    )
    asyncio.run(lag.refresh())
    return registry


def by_name(text: str) -> dict[str, Metric]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def comparable(family: Metric) -> tuple[str, str, list[tuple[str, list[tuple[str, str]], float]]]:
    """Type, help and samples, sorted (sample and label order do not matter)."""
    return (
        family.type,
        family.documentation,
        sorted((s.name, sorted(s.labels.items()), s.value) for s in family.samples),
    )


def test_every_family_keeps_its_name_type_help_labels_and_values() -> None:
    body, _ = exposition(sample_registry(), "")
    text = body.decode()
    before, now = by_name(BEFORE), by_name(text)
    ours = {name: family for name, family in now.items() if name.startswith("enginestream_")}
    assert sorted(ours) == sorted(before)
    for name, family in before.items():
        assert comparable(ours[name]) == comparable(family), name
    # The exposed names (counters with _total) and help lines, as scrapers see them.
    for line in BEFORE.splitlines():
        if line.startswith("#"):
            assert line + "\n" in text


def test_process_and_platform_families_are_exposed() -> None:
    body, _ = exposition(sample_registry(), "")
    families = by_name(body.decode())
    assert families["process_cpu_seconds"].type == "counter"
    assert families["process_resident_memory_bytes"].samples[0].value > 0
    assert families["python_info"].samples[0].labels["implementation"]


def test_text_format_unless_openmetrics_is_asked_for() -> None:
    registry = sample_registry()
    for accept in ("", "*/*", "text/plain", "text/plain; version=0.0.4"):
        body, content_type = exposition(registry, accept)
        assert content_type == TEXT_0_0_4, accept
        assert not body.endswith(b"# EOF\n")


def test_openmetrics_when_the_scraper_asks_for_it() -> None:
    accept = (
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
        "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    )
    body, content_type = exposition(sample_registry(), accept)
    assert content_type.startswith(OPENMETRICS)
    families = {
        f.name: f for f in openmetrics_parser.text_string_to_metric_families(body.decode())
    }
    assert set(by_name(BEFORE)) <= set(families)
    assert families["enginestream_sink_flush_seconds"].unit == "seconds"
    assert families["enginestream_sink_written_bytes"].unit == "bytes"
    assert families["enginestream_watermark_lag_seconds"].unit == "seconds"
    lines = [s for s in families["enginestream_sink_lines_written"].samples]
    assert {(s.name, s.labels["channel"], s.value) for s in lines} == {
        ("enginestream_sink_lines_written_total", "events", 10.0),
        ("enginestream_sink_lines_written_total", "dead_letters", 10.0),
    }


def test_each_worker_has_its_own_registry() -> None:
    first, second = RouterCounters(), RouterCounters()
    first.messages_in["engine.ingest"] += 1
    second.messages_in["engine.ingest"] += 2
    app = state.fake_app(state.consumer())
    values = []
    for counters in (first, second):
        registry, _ = metrics_registry(app, counters, state.processor(), [])
        family = by_name(exposition(registry, "")[0].decode())["enginestream_messages_in"]
        values.append([s.value for s in family.samples])
    assert values == [[1.0], [2.0]]
