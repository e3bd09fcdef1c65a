"""State a worker of an earlier version left in the changelogs is read, not choked on:
its bookkeeping keys were plain text then (`clock|`, `ledger|`, `\\x00offset|`) and
keyed records carried no position."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from streams.agents.keyed_state import NEVER, decode_record, encode_record
from streams.agents.training_agent import TrainingProcessor
from streams.agents.window_agent import WindowProcessor
from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.windows import WindowConfig
from tests.unit.agents.stub_app import StubTable, stub_app

NAMES = TopicNames()
PARTITIONS = {t: 4 for t in [*NAMES.typed.values(), NAMES.dead_letter, NAMES.metrics_windows]}


def test_a_bare_record_has_applied_no_known_position() -> None:
    record = {"job_id": "j", "status": "queued"}
    assert decode_record(orjson.dumps(record)) == (NEVER, record)
    assert decode_record(encode_record((4, 2), record)) == ((4, 2), record)


def test_windows_skip_an_old_clock_key(monkeypatch: pytest.MonkeyPatch) -> None:
    app = stub_app(monkeypatch)
    table = StubTable("windows", app.producer)
    table.data[b"clock|engine|0"] = orjson.dumps({"m": 1.0, "w": 1.0, "t": 0.0, "o": 0})
    processor = WindowProcessor(app, Settings(), WindowConfig(), table, NAMES, PARTITIONS)  # type: ignore[arg-type]
    windows = asyncio.new_event_loop().run_until_complete(processor.ensure("engine", 0))
    assert windows.windows == {}


def test_training_counts_skip_an_old_ledger(monkeypatch: pytest.MonkeyPatch) -> None:
    app: Any = stub_app(monkeypatch)
    table = StubTable("training-decisions", app.producer)
    processor = TrainingProcessor(app, Settings(), table, NAMES, PARTITIONS)  # type: ignore[arg-type]
    table.data[b"ledger|0"] = orjson.dumps({"last": 3, "out": {}})
    table.data[b"c-1"] = b"gold"
    app.consumer.assignment = lambda: {
        type("TP", (), {"topic": processor.source, "partition": p})() for p in range(4)
    }
    assert dict(processor.counts()) == {"gold": 1}
