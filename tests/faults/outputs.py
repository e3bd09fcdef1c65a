"""What workers must have written for a known set of executions and comparisons, and
the check that the files and the topics hold exactly that, once.

For fault tests whose input is only known afterwards (what an engine's SDK actually
delivered) or is made up on the spot: the JSONL files (events, comparisons,
training samples) and the typed topics must hold every id once, and every window's
latest revision must have the counts of an offline recomputation from the
executions. Latest revisions, not the records themselves: which window a fault
closes by the wall clock and revises later depends on timing, but the latest
revision of a window always sums all of its events.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streams.config.channels import CHANNELS, content_id
from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.tiering import sample_id_for
from streams.domain.windows import EXECUTIONS, emission_id
from streams.durable.filesink import read_lines
from tests.faults.test_files_survive_sigkill import expected_tier, file_ids, wait_for
from tests.integration.kafka_io import read_until

WindowKey = tuple[str, int, int]  # engine, size, start
# count, success_count, latency_min_ms, latency_max_ms
Figures = tuple[int, int, float, float]


@dataclass
class Expected:
    """The executions and comparisons that reached the workers' input."""

    executions: list[dict[str, Any]] = field(default_factory=list)
    comparisons: list[dict[str, Any]] = field(default_factory=list)

    def add(self, event_type: str, doc: dict[str, Any]) -> None:
        """One event read from the input; other types than these two are not followed."""
        if event_type == "engine_execution":
            self.executions.append(doc)
        elif event_type == "comparison_result":
            self.comparisons.append(doc)

    def ids(self) -> dict[str, set[Hashable]]:
        """The ids every JSONL channel of an event must hold, each once."""
        qualifying = [
            c["comparison_id"] for c in self.comparisons
            if expected_tier(c) in ("gold", "silver", "bronze")
        ]
        return {
            "events": {content_id(e) for e in self.executions},
            "comparisons": {c["comparison_id"] for c in self.comparisons},
            "training_samples": {sample_id_for(c) for c in qualifying},
        }

    def windows(self, sizes: Iterable[int]) -> dict[WindowKey, Figures]:
        """Each execution window's figures, from its executions (none is too late here:
        the tests keep event times within the retention)."""
        events: dict[WindowKey, list[dict[str, Any]]] = {}
        for doc in self.executions:
            for size in sizes:
                start = math.floor(doc["timestamp"] / size) * size
                events.setdefault((doc["engine_id"], size, start), []).append(doc)
        return {key: figures(docs) for key, docs in events.items()}


def figures(executions: list[dict[str, Any]]) -> Figures:
    """A window's figures computed directly from its executions."""
    latencies = [e["metrics"]["latency_ms"] for e in executions]
    ok = sum(1 for e in executions if e["metrics"]["success"])
    return len(executions), ok, min(latencies), max(latencies)


def decode(value: bytes) -> list[dict[str, Any]]:
    """The documents of one message: a JSON object, or an array of them."""
    doc = orjson.loads(value)
    return doc if isinstance(doc, list) else [doc]


def latest_windows(records: list[dict[str, Any]]) -> dict[WindowKey, Figures]:
    """Each execution window's latest revision, as figures."""
    latest: dict[WindowKey, dict[str, Any]] = {}
    for record in records:
        if record.get("kind", EXECUTIONS) != EXECUTIONS:
            continue
        key = (record["engine_id"], record["window_size_s"], record["window_start"])
        if key not in latest or latest[key]["revision"] < record["revision"]:
            latest[key] = record
    return {
        key: (r["count"], r["success_count"], r["latency_min_ms"], r["latency_max_ms"])
        for key, r in latest.items()
    }


def lines_written(settings: Settings, channels: Iterable[str]) -> int:
    """Committed lines in the files of `channels`: a cheap measure of progress (no
    line is decoded)."""
    configs = {c.name: c for c in settings.sinks}
    return sum(
        len(read_lines(settings.data_dir / "jsonl", configs[name], partition))
        for name in channels for partition in range(settings.partitions)
    )


def missing_in_files(data_dir: Path, settings: Settings, want: dict[str, set[Hashable]]) -> dict:
    """How many expected ids each channel's files do not hold yet."""
    ids = file_ids(data_dir, settings)
    return {name: len(w - set(ids[name])) for name, w in want.items()}


def assert_files_and_topics_exactly_once(
    settings: Settings, expected: Expected, timeout: float
) -> dict[str, int]:
    """Wait (up to `timeout` s) until the files and the window topic hold everything
    `expected` says, then check that the files and the typed topics hold each id once
    and nothing else, and that the window topic's latest revisions equal the offline
    recomputation; and that the windows' file holds each window record once. Answers
    how many of each were checked."""
    data_dir = settings.data_dir
    names = TopicNames(settings.topic_prefix)
    want = expected.ids()
    wait_for(lambda: not any(missing_in_files(data_dir, settings, want).values()), timeout,
             lambda: f"all ids in the files (missing {missing_in_files(data_dir, settings, want)})")
    ids = file_ids(data_dir, settings)
    for name, wanted in want.items():
        got = Counter(ids[name])
        assert not [i for i, n in got.items() if n > 1], f"{name} file: duplicates"
        assert set(got) == wanted, f"{name} file: {len(set(got) ^ wanted)} ids differ"

    by_channel = {c.name: c for c in CHANNELS}
    typed = {name: by_channel[name].topic(names) for name in want}
    records = asyncio.run(
        read_until(settings.bootstrap_servers, list(typed.values()), lambda rs: True, 60)
    )
    for name, topic in typed.items():
        got = Counter(
            by_channel[name].record_id(doc)
            for r in records if r.topic == topic for doc in decode(r.value)
        )
        assert not [i for i, n in got.items() if n > 1], f"{topic}: duplicates"
        assert set(got) == want[name], f"{topic}: {len(set(got) ^ want[name])} ids differ"

    windows = expected.windows(settings.window_sizes)

    def window_docs(rs: list[Any]) -> list[dict[str, Any]]:
        return [doc for r in rs for doc in decode(r.value)]

    emitted = window_docs(asyncio.run(read_until(
        settings.bootstrap_servers, [names.metrics_windows],
        lambda rs: latest_windows(window_docs(rs)) == windows, timeout,
    )))
    emitted_ids = Counter(emission_id(doc) for doc in emitted)
    assert not [i for i, n in emitted_ids.items() if n > 1], "window records emitted twice"
    got_windows = latest_windows(emitted)
    assert set(got_windows) == set(windows)
    wrong = {k: (got_windows[k], w) for k, w in windows.items() if got_windows[k] != w}
    assert not wrong, f"windows differ from the recomputation (got, want): {wrong}"

    # The windows' file holds each record of the topic once (the worker may still be
    # emitting: every record read above reaches the file, none twice).
    window_channel = by_channel["aggregated_stats"]
    on_topic = {window_channel.record_id(doc) for doc in emitted}
    wait_for(lambda: set(file_ids(data_dir, settings)["aggregated_stats"]) >= on_topic, 60,
             "the window records in the file")
    in_file = Counter(file_ids(data_dir, settings)["aggregated_stats"])
    assert not [i for i, n in in_file.items() if n > 1], "aggregated_stats file: duplicates"
    return {
        "executions": len(expected.executions),
        "comparisons": len(expected.comparisons),
        "samples": len(want["training_samples"]),
        "windows": len(windows),
        "window records": len(emitted),
    }
