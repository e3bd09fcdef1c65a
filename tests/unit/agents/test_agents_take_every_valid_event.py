"""Every agent takes any event its schema accepts: processed, or refused as a dead
letter of its own rules, never a `processing_error` and never an exception.

One property test per agent, on the code the agent runs per event (no broker):
documents are drawn from the schema files themselves (tests/unit/schema_strategies).
A `processing_error` is the last line of defence for what no schema foresaw; valid
input must never need it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.agents.engine_status_agent import apply_lifecycle
from streams.agents.jobs_agent import apply_job_command
from streams.agents.keyed_state import EventHandler, KeyedState, apply_batch
from streams.agents.sessions_agent import apply_session_event
from streams.agents.sink_agent import ChannelSink
from streams.agents.training_agent import TrainingProcessor
from streams.config.channels import CHANNELS, ChannelConfig
from streams.config.settings import Settings
from streams.config.topics import EVENT_ROUTES, TopicNames
from streams.domain.dead_letters import PROCESSING_ERROR, DeadLetter, Inbound
from streams.domain.router import Router
from streams.domain.validation import default_registry
from streams.domain.windows import EXECUTIONS, REQUESTS, Outcome, PartitionWindows, WindowConfig
from streams.durable.exactly_once import SourceLedger
from tests.unit.domain.schema_strategies import valid

NAMES = TopicNames()
PARTITIONS = {topic: 4 for topic in [*NAMES.typed.values(), NAMES.dead_letter]}
REGISTRY = default_registry()
AFTER_2100 = 4_102_444_800.0  # a wall clock no valid event time is ahead of
EXAMPLES = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

ANY_EVENT = st.sampled_from(list(EVENT_ROUTES)).flatmap(
    lambda event_type: st.tuples(st.just(event_type), valid(event_type))
)


@pytest.fixture(scope="module")
def app() -> Iterator[faust.App]:
    """A faust app that is never started: tables to stage into, no broker."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield faust.App("unit-agents", broker="kafka://127.0.0.1:1", autodiscover=False)
    loop.close()
    asyncio.set_event_loop(None)


def message(offset: int, value: Any, partition: int = 0) -> SimpleNamespace:
    """A consumed message as the agents read it."""
    return SimpleNamespace(
        topic="t", partition=partition, offset=offset, value=orjson.dumps(value),
        timestamp=1_700_000_000.0,
    )  # fmt: skip


# --------------------------------------------------------------------- router --


@EXAMPLES
@given(st.lists(ANY_EVENT, min_size=1, max_size=6), st.booleans())
def test_router_routes_every_valid_event(events: list[tuple[str, Any]], batched: bool) -> None:
    router = Router(NAMES, REGISTRY)
    for event_type, doc in events:
        value = orjson.dumps([doc, doc] if batched else doc)
        msg = Inbound(NAMES.raw[event_type], 0, 5, value)
        out = router.route(msg, now=AFTER_2100)
        assert out.dead_letters == [], [d.message for d in out.dead_letters]
        assert [e.doc for e in out.events] == ([doc, doc] if batched else [doc])


# -------------------------------------------------------------------- windows --


def requests_served() -> st.SearchStrategy[dict[str, Any]]:
    return valid("engine_event").filter(lambda e: e["event"] == "RequestServed")


@EXAMPLES
@given(
    st.one_of(
        st.tuples(st.just(EXECUTIONS), st.lists(valid("engine_execution"), max_size=8)),
        st.tuples(st.just(REQUESTS), st.lists(requests_served(), max_size=8)),
    ),
    st.sampled_from([(60,), (1, 60, 3600)]),
)
def test_windows_take_every_valid_event(
    kind_and_events: tuple[str, list[dict[str, Any]]], sizes: tuple[int, ...]
) -> None:
    kind, events = kind_and_events
    windows = PartitionWindows(kind, WindowConfig(sizes=sizes, retention_s=1e12))
    out = Outcome()
    for offset, event in enumerate(events):
        windows.apply((offset, 0), event, AFTER_2100, out)
    windows.advance_idle(AFTER_2100 + 10**7, out)
    assert out.too_late == [] and out.future == [] and out.failed == []
    # Every window closed once, and every record is a valid window_stats document.
    assert len([r for r in out.emitted if r["revision"] == 0]) == len(windows.windows)
    for record in out.emitted:
        assert REGISTRY.check("window_stats", record) is None, record
    assert sum(w.stats.count for w in windows.windows.values()) == len(events) * len(sizes)


# ------------------------------------------------------------------- training --


@EXAMPLES
@given(st.lists(valid("comparison_result"), min_size=1, max_size=6))
def test_training_decides_every_valid_comparison(
    app: faust.App, comparisons: list[dict[str, Any]]
) -> None:
    table = SimpleNamespace(data={})
    processor = TrainingProcessor(app, Settings(), table, NAMES, PARTITIONS)  # type: ignore[arg-type]
    decided: dict[tuple[int, bytes], bytes] = {}
    samples: list[dict[str, Any]] = []
    letters: list[DeadLetter] = []
    where = Inbound(processor.source, 0, 1, None)
    for index, comparison in enumerate(comparisons):
        sample = processor._decide(comparison, where, index, 1.7e9, decided, letters)
        if sample is not None:
            samples.append(sample)
    assert {d.reason for d in letters} <= {"winner_not_candidate"}
    distinct = {c["comparison_id"] for c in comparisons}
    assert len(decided) == len(distinct)
    for sample in samples:
        assert REGISTRY.check("training_sample", sample) is None, sample


# ----------------------------------------------- jobs, sessions, engine status --


def keyed_events(event_type: str, key_field: str, keys: list[str]) -> st.SearchStrategy[Any]:
    """Events of a few entities, so that later events find the earlier ones' records."""
    return st.lists(
        st.tuples(valid(event_type), st.sampled_from(keys)).map(
            lambda pair: {**pair[0], key_field: pair[1]}
        ),
        min_size=1,
        max_size=12,
    )


def apply_keyed(
    app: faust.App, table: str, event_type: str, handle: EventHandler, events: list[Any]
) -> list[DeadLetter]:
    state = STATES.get(table)
    if state is None:
        state = STATES[table] = KeyedState(app, Settings(), table, f"t.{table}")
        state.attach_ledgers(NAMES.dead_letter, 4)
    state.table.data.clear()
    state._staged.clear()
    state.ledgers.by_source = {(state.source, 0): SourceLedger()}
    messages = [message(offset, event) for offset, event in enumerate(events)]
    letters, sources = apply_batch(state, event_type, handle, messages, state.ledgers)
    assert sources == {(state.source, 0)}
    assert state.ledgers[(state.source, 0)].last == len(events) - 1
    return letters.letters


STATES: dict[str, KeyedState] = {}  # one per table: faust keeps a table's name for good
JOB_IDS = ["0" * 32, "a" * 32]
SESSION_IDS = ["s-1", "s/2"]
ENGINE_IDS = ["engine-1", "engine@2"]


@EXAMPLES
@given(keyed_events("ml_job_command", "job_id", JOB_IDS))
def test_jobs_take_every_valid_command(app: faust.App, commands: list[Any]) -> None:
    letters = apply_keyed(app, "jobs-p", "ml_job_command", apply_job_command, commands)
    assert {d.reason for d in letters} <= {"invalid_transition"}


@EXAMPLES
@given(keyed_events("session_event", "session_id", SESSION_IDS))
def test_sessions_take_every_valid_event(app: faust.App, events: list[Any]) -> None:
    letters = apply_keyed(app, "sessions-p", "session_event", apply_session_event, events)
    assert [d.reason for d in letters if d.reason == PROCESSING_ERROR] == []


@EXAMPLES
@given(keyed_events("engine_event", "engine_id", ENGINE_IDS))
def test_engine_status_takes_every_valid_event(app: faust.App, events: list[Any]) -> None:
    letters = apply_keyed(app, "engine-status-p", "engine_event", apply_lifecycle, events)
    assert [d.reason for d in letters if d.reason == PROCESSING_ERROR] == []


# ---------------------------------------------------------------------- sinks --

CHANNEL_RECORDS = {
    "events": "engine_execution",
    "comparisons": "comparison_result",
    "training_samples": "training_sample",
    "aggregated_stats": "window_stats",
    "dead_letters": "dead_letter",
}


@EXAMPLES
@given(
    st.sampled_from(CHANNELS).flatmap(
        lambda c: st.tuples(st.just(c), st.lists(valid(CHANNEL_RECORDS[c.name]), max_size=5))
    )
)
def test_sinks_write_every_valid_record(channel_records: tuple[Any, list[Any]]) -> None:
    channel, records = channel_records
    config = ChannelConfig(channel.name, channel.filename)
    sink = ChannelSink(None, Settings(), channel, config, Path("unused"), "t", ("dl", 1))
    lines: list[tuple[int, bytes]] = []
    letters: list[DeadLetter] = []
    fresh: set[Any] = set()
    sink._lines(Inbound("t", 0, 3, None), orjson.dumps(records), set(), fresh, lines, letters)
    assert letters == []
    assert len(lines) == len(fresh) == len({channel.record_id(r) for r in records})
    assert [orjson.loads(line) for _, line in lines] == _first_of_each(channel, records)


def _first_of_each(channel: Any, records: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    kept = []
    for record in records:
        rid = channel.record_id(record)
        if rid not in seen:
            seen.add(rid)
            kept.append(record)
    return kept
