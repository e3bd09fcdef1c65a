"""GET /metrics: the worker's counters in the Prometheus text exposition format (0.0.4).

Written by hand, no client library: :func:`render` turns :class:`MetricFamily` values
into the text format (HELP and TYPE lines, escaped label values, ``+Inf``/``NaN``), and
the ``*_families`` functions read the worker's running state into families. Each worker
answers for itself (Prometheus scrapes every worker; sum across them in queries), and
the view answers even while partitions move: a scrape never waits for recovery.

Units follow the Prometheus conventions: counters end in ``_total``, times are seconds,
sizes bytes. ``enginestream_watermark_lag_seconds`` is the wall clock minus a source
partition's watermark: small for live traffic, and as large as the age of the data
while history is replayed (correct, and the point: it shows how far behind event time
the windows are). ``enginestream_consumer_lag_messages`` is the partition's high
watermark minus the consumer's fetch position, for the source partitions this worker
is assigned (the tables' changelog partitions are left out: the worker writes them
itself and does not read them back after recovery; so is Faust's leader topic).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import faust
from faust.web import Request, Response, View

from streams.runtime.histogram import Histogram
from streams.runtime.router_counters import RouterCounters

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "enginestream_"
# Faust's own topic for electing the assignment leader: not data, left out of the lag.
LEADER_TOPIC_SUFFIX = "-__assignor-__leader"

MetricType = Literal["counter", "gauge", "summary", "histogram", "untyped"]

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Suffixes a sample may add to its family's name, by family type.
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("",),
    "gauge": ("",),
    "untyped": ("",),
    "summary": ("", "_sum", "_count"),
    "histogram": ("_bucket", "_sum", "_count"),
}


@dataclass(frozen=True)
class Sample:
    """One line of a family: `suffix` is added to the family name (e.g. ``_sum``)."""

    labels: Mapping[str, str]
    value: float
    suffix: str = ""


@dataclass
class MetricFamily:
    """A metric: its name, type, help text and samples."""

    name: str
    type: MetricType
    help: str
    samples: list[Sample] = field(default_factory=list)

    def add(self, value: float, suffix: str = "", **labels: str) -> MetricFamily:
        """Append a sample; answer self."""
        self.samples.append(Sample(labels, value, suffix))
        return self


def histogram_samples(histogram: Histogram, **labels: str) -> list[Sample]:
    """The ``_bucket`` (cumulative, with ``le``), ``_sum`` and ``_count`` samples."""
    samples = []
    running = 0
    for bound, count in zip([*histogram.bounds, math.inf], histogram.counts, strict=True):
        running += count
        samples.append(Sample({**labels, "le": format_bound(bound)}, running, "_bucket"))
    samples.append(Sample(labels, histogram.sum, "_sum"))
    samples.append(Sample(labels, histogram.count, "_count"))
    return samples


# --- the text format -----------------------------------------------------------------


def escape_label_value(value: str) -> str:
    """Label values escape backslash, double quote and line feed."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text escapes backslash and line feed (quotes stay as they are)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value as Prometheus parses it: integers without a point, ``+Inf``,
    ``-Inf``, ``NaN``, other floats in Python's shortest round-trip form."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def format_bound(bound: float) -> str:
    """A bucket's ``le`` label: always a float (``1.0``, not ``1``), ``+Inf`` last, as
    the client libraries write it, so the series keep one name across exporters."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _check_family(family: MetricFamily) -> None:
    if not _METRIC_NAME.match(family.name):
        raise ValueError(f"invalid metric name {family.name!r}")
    if family.type not in _SUFFIXES:
        raise ValueError(f"{family.name}: unknown metric type {family.type!r}")
    if family.type == "counter" and not family.name.endswith("_total"):
        raise ValueError(f"{family.name}: a counter's name must end in _total")
    if family.type != "counter" and family.name.endswith("_total"):
        raise ValueError(f"{family.name}: only counters end in _total")
    allowed = _SUFFIXES[family.type]
    for sample in family.samples:
        if sample.suffix not in allowed:
            raise ValueError(f"{family.name}: suffix {sample.suffix!r} for a {family.type}")
        for name in sample.labels:
            if not _LABEL_NAME.match(name) or name.startswith("__"):
                raise ValueError(f"{family.name}: invalid label name {name!r}")
        if "le" in sample.labels and family.type != "histogram":
            raise ValueError(f"{family.name}: label 'le' is reserved for histograms")
        if family.type == "counter" and not sample.value >= 0:
            raise ValueError(f"{family.name}: a counter cannot be {sample.value}")


def _sample_line(name: str, sample: Sample) -> str:
    if sample.labels:
        labels = ",".join(
            f'{key}="{escape_label_value(str(value))}"' for key, value in sample.labels.items()
        )
        return f"{name}{sample.suffix}{{{labels}}} {format_value(sample.value)}"
    return f"{name}{sample.suffix} {format_value(sample.value)}"


def render(families: Iterable[MetricFamily]) -> str:
    """The text exposition format (version 0.0.4) of `families`, in the order given;
    each family's samples sorted by labels (histogram buckets kept in order).

    Raises ValueError for what Prometheus would reject or misread: invalid metric or
    label names, a family named twice, a counter not named ``*_total`` or negative,
    a suffix its type does not have."""
    lines: list[str] = []
    seen: set[str] = set()
    for family in families:
        _check_family(family)
        if family.name in seen:
            raise ValueError(f"metric family {family.name} appears twice")
        seen.add(family.name)
        lines.append(f"# HELP {family.name} {escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        order = {suffix: i for i, suffix in enumerate(_SUFFIXES[family.type])}
        keyed = [
            (tuple((k, v) for k, v in s.labels.items() if k != "le"), order[s.suffix], i, s)
            for i, s in enumerate(family.samples)
        ]
        for *_, sample in sorted(keyed, key=lambda item: item[:3]):
            lines.append(_sample_line(family.name, sample))
    return "\n".join(lines) + "\n" if lines else ""


# --- the worker's state as families -----------------------------------------------------


def router_families(counters: RouterCounters) -> list[MetricFamily]:
    """Counters of the router agent (GET /stats)."""

    def counter(name: str, label: str, help: str, counts: Mapping[str, int]) -> MetricFamily:
        family = MetricFamily(PREFIX + name, "counter", help)
        for key, value in counts.items():
            family.add(value, **{label: key})
        return family

    return [
        counter(
            "messages_in_total",
            "topic",
            "Messages the router read, by source topic.",
            counters.messages_in,
        ),
        counter(
            "events_routed_total",
            "event_type",
            "Valid events the router sent to their typed topic, by event type.",
            counters.events_routed,
        ),
        counter(
            "messages_out_total",
            "topic",
            "Messages the router wrote, by destination topic.",
            counters.messages_out,
        ),
        counter(
            "dead_letters_total",
            "reason",
            "Dead letters the router wrote, by reason.",
            counters.dead_letters,
        ),
    ]


def window_families(processor: Any, now: float) -> list[MetricFamily]:
    """Counters of the window agent and the event-time lag of each source partition.

    `processor` is a streams.agents.window_agent.WindowProcessor (anything with
    ``emitted``, ``late_events``, ``too_late``, ``events_in``, ``partitions`` and
    ``topic_of_kind``)."""
    # (name, help, count): one unlabelled sample each.
    totals: list[tuple[str, str, Any]] = [
        (
            "window_records_emitted_total",
            "Window records (finals and late revisions) emitted to engine.metrics.windows.",
            processor.emitted,
        ),
        (
            "late_events_total",
            "Late revisions emitted: events that arrived for a window already final.",
            processor.late_events,
        ),
        (
            "too_late_events_total",
            "Events older than the window retention, dead-lettered as too_late.",
            processor.too_late,
        ),
        (
            "window_events_in_total",
            "Events the window agent applied (executions and served requests).",
            getattr(processor, "events_in", 0),
        ),
    ]
    families = [
        MetricFamily(PREFIX + name, "counter", help).add(int(value))
        for name, help, value in totals
    ]
    lag = MetricFamily(
        PREFIX + "watermark_lag_seconds",
        "gauge",
        "Wall clock minus the watermark (event time) of each source partition this "
        "worker owns; as large as the data's age while history is replayed.",
    )
    topic_of_kind: Mapping[str, str] = processor.topic_of_kind
    for (kind, partition), windows in sorted(processor.partitions.items()):
        watermark = windows.clock.watermark
        if math.isfinite(watermark):  # -inf: no event yet, no watermark to lag behind
            lag.add(now - watermark, topic=topic_of_kind.get(kind, kind), partition=str(partition))
    return [*families, lag]


def sink_families(sinks: Iterable[Any]) -> list[MetricFamily]:
    """Counters of the JSONL sinks, per channel. Flush time and bytes are included when
    the sinks keep them (``flush_seconds``: a :class:`Histogram`; ``bytes_written``)."""
    lines = MetricFamily(
        PREFIX + "sink_lines_written_total",
        "counter",
        "JSONL lines the sinks wrote (committed with an fsync), by channel.",
    )
    duplicates = MetricFamily(
        PREFIX + "sink_duplicates_total",
        "counter",
        "Records the sinks skipped because their id was already written, by channel.",
    )
    written = MetricFamily(
        PREFIX + "sink_written_bytes_total",
        "counter",
        "Bytes the sinks appended to their JSONL files, by channel.",
    )
    flushes = MetricFamily(
        PREFIX + "sink_flush_seconds",
        "histogram",
        "Time a sink flush took (one append, fsync and checkpoint replace), by channel.",
    )
    for sink in sinks:
        channel = sink.channel.name
        lines.add(int(sink.lines_written), channel=channel)
        duplicates.add(int(sink.duplicates), channel=channel)
        nbytes = getattr(sink, "bytes_written", None)
        if isinstance(nbytes, int):
            written.add(nbytes, channel=channel)
        histogram = getattr(sink, "flush_seconds", None)
        if isinstance(histogram, Histogram):
            flushes.samples.extend(histogram_samples(histogram, channel=channel))
    answer = [lines, duplicates]
    answer += [family for family in (written, flushes) if family.samples]
    return answer


async def consumer_lag_family(app: faust.App, timeout_s: float = 2.0) -> MetricFamily:
    """High watermark minus fetch position of every assigned source partition."""
    family = MetricFamily(
        PREFIX + "consumer_lag_messages",
        "gauge",
        "Messages in an assigned source partition not yet fetched by this worker "
        "(high watermark minus position).",
    )
    try:
        assignment = app.consumer.assignment()
    except Exception:  # the consumer is not started yet: nothing assigned
        return family
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
        return family
    try:
        positions = await asyncio.wait_for(
            asyncio.gather(
                *(app.consumer.position(tp) for tp in partitions), return_exceptions=True
            ),
            timeout_s,
        )
    except TimeoutError:
        log.warning("consumer positions not known within %ss; lag left out", timeout_s)
        return family
    for tp, position in zip(partitions, positions, strict=True):
        if not isinstance(position, int):
            continue  # unknown yet (or the partition was revoked meanwhile)
        try:
            highwater = app.consumer.highwater(tp)
        except Exception:
            continue
        if highwater is None:
            continue
        family.add(max(0, int(highwater) - position), topic=tp.topic, partition=str(tp.partition))
    return family


async def collect(
    app: faust.App,
    counters: RouterCounters,
    processor: Any,
    sinks: Iterable[Any],
    now: float | None = None,
) -> list[MetricFamily]:
    """Every family of this worker, read now."""
    now = time.time() if now is None else now
    families = router_families(counters)
    families += window_families(processor, now)
    families += sink_families(sinks)
    families.append(await consumer_lag_family(app))
    return families


def register_prometheus(
    app: faust.App,
    router_counters: RouterCounters,
    window_processor: Any,
    sinks: Sequence[Any],
) -> None:
    """Add GET /metrics (Prometheus text format) to `app`.

    `window_processor` is the WindowProcessor from register_windows and `sinks` the
    ChannelSinks from register_sinks."""

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            families = await collect(app, router_counters, window_processor, sinks)
            body = render(families).encode()
            return self.bytes(body, headers={"Content-Type": CONTENT_TYPE})
