"""Each agent, on a stub app (no broker): a poison event becomes one dead letter of that
agent, the events around it are applied, and a redelivered batch changes nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.agents.sink_agent import ChannelSink
from streams.agents.training_agent import TrainingProcessor
from streams.agents.window_agent import WindowProcessor
from streams.config.channels import CHANNELS, ChannelConfig
from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.windows import WindowConfig
from streams.durable.exactly_once import SourceLedger, ledger_key
from streams.durable.filesink import read_lines
from tests.unit.agents.stub_app import StubTable, message, stub_app

NAMES = TopicNames()
EXECUTIONS = NAMES.typed["engine_execution"]
NOW = time.time()


PARTITIONS = {topic: 4 for topic in [*NAMES.typed.values(), NAMES.dead_letter,
                                     NAMES.metrics_windows]}


def execution(i: int, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema_version": 1, "trace_id": f"t-{i}", "task_id": "x", "engine_id": "e",
        "timestamp": NOW - 3600 + i, "input": "", "output": "",
        "metrics": {"latency_ms": 5.0 + i, "success": True},
    }  # fmt: skip
    doc.update(changes)
    return doc


def dead_letters(app: Any) -> list[dict[str, Any]]:
    return [s.doc() for s in app.producer.to(NAMES.dead_letter)]


@pytest.fixture
def loop() -> Any:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_window_agent_refuses_poison_alone_and_applies_the_rest(
    loop: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = stub_app(monkeypatch)
    table = StubTable("windows", app.producer)
    processor = WindowProcessor(app, Settings(), WindowConfig(), table, NAMES, PARTITIONS)  # type: ignore[arg-type]
    batch = [
        message(EXECUTIONS, 0, 0, orjson.dumps([execution(1), execution(2)])),
        message(EXECUTIONS, 0, 1, b"\xff not json"),
        message(EXECUTIONS, 0, 2, orjson.dumps([execution(3), 7, execution(4, engine_id=None)])),
        message(EXECUTIONS, 0, 3, orjson.dumps(execution(5, timestamp=NOW + 86400))),
        message(EXECUTIONS, 0, 4, orjson.dumps(execution(6))),
    ]
    loop.run_until_complete(processor.process(batch))
    letters = dead_letters(app)
    assert sorted((d["reason"], d["id"]) for d in letters) == [
        ("future_timestamp", f"windows@{EXECUTIONS}/0/3/0"),
        ("processing_error", f"windows@{EXECUTIONS}/0/1/-"),
        ("processing_error", f"windows@{EXECUTIONS}/0/2/1"),
        ("processing_error", f"windows@{EXECUTIONS}/0/2/2"),
    ]
    assert {d["error"]["agent"] for d in letters} == {"windows"}
    windows = processor.partitions[("engine", 0)]
    assert sum(w.stats.count for w in windows.windows.values()) == 4  # events 1, 2, 3, 6
    assert processor.ledgers[(EXECUTIONS, 0)].last == 4
    # The ledger, with the clock in it, is the last changelog write of the batch.
    assert app.producer.sent[-1].key == ledger_key((EXECUTIONS, 0))
    saved = SourceLedger.from_bytes(app.producer.sent[-1].value or b"")
    assert saved.last == 4 and saved.extra == windows.clock.to_state()

    sent = len(app.producer.sent)
    loop.run_until_complete(processor.process(batch))  # delivered again
    assert len(app.producer.sent) == sent
    assert sum(w.stats.count for w in windows.windows.values()) == 4


def comparison(cid: str, winner: str = "a") -> dict[str, Any]:
    return {"comparison_id": cid, "query": "q", "winner": {"engine_id": winner, "score": 0.95},
            "candidates": [{"engine_id": "a", "output": "x"}, {"engine_id": "b", "output": "y"}]}


def test_training_agent_refuses_poison_alone_and_decides_the_rest(
    loop: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = stub_app(monkeypatch)
    table = StubTable("training-decisions", app.producer)
    processor = TrainingProcessor(app, Settings(), table, NAMES, PARTITIONS)  # type: ignore[arg-type]
    source = processor.source
    batch = [m for m in (
        message(source, 1, 0, orjson.dumps(comparison("c-1"))),
        message(source, 1, 1, b"{{"),
        message(source, 1, 2, orjson.dumps([{"comparison_id": "c-2"}, comparison("c-3"),
                                            comparison("c-4", winner="z")])),
    )]  # fmt: skip
    loop.run_until_complete(processor.process(batch))
    letters = dead_letters(app)
    assert sorted((d["reason"], d["id"]) for d in letters) == [
        ("processing_error", f"training@{source}/1/1/-"),
        ("processing_error", f"training@{source}/1/2/0"),
        ("winner_not_candidate", f"training@{source}/1/2/2"),
    ]
    samples = [s.doc() for s in app.producer.to(NAMES.typed["training_sample"])]
    assert sorted(s["source_comparison_id"] for s in samples) == ["c-1", "c-3"]

    sent = len(app.producer.sent)
    loop.run_until_complete(processor.process(batch))  # delivered again
    assert len(app.producer.sent) == sent


def test_sink_writes_the_good_records_after_its_dead_letters_are_acknowledged(
    loop: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = next(c for c in CHANNELS if c.name == "comparisons")
    config = ChannelConfig(channel.name, channel.filename)
    app = stub_app(monkeypatch)
    send = app.producer.send
    lines_at_send: list[int] = []

    async def send_and_look(*args: Any) -> Any:
        lines_at_send.append(len(read_lines(tmp_path, config, 0)))
        return await send(*args)

    app.producer.send = send_and_look
    sink = ChannelSink(
        app, Settings(), channel, config, tmp_path, "t.comparisons", (NAMES.dead_letter, 4)
    )
    batch = [
        message("t.comparisons", 0, 0, orjson.dumps(comparison("c-1"))),
        message("t.comparisons", 0, 1, b"\x00"),
        message("t.comparisons", 0, 2, orjson.dumps([comparison("c-2"), {"no_id": 1}, "x"])),
    ]
    loop.run_until_complete(sink.write(batch))
    assert sorted(d["id"] for d in dead_letters(app)) == [
        "sink.comparisons@t.comparisons/0/1/-",
        "sink.comparisons@t.comparisons/0/2/1",
        "sink.comparisons@t.comparisons/0/2/2",
    ]
    assert lines_at_send == [0, 0, 0]  # every dead letter before any line
    lines = [orjson.loads(line) for line in read_lines(tmp_path, config, 0)]
    assert [line["comparison_id"] for line in lines] == ["c-1", "c-2"]
    loop.run_until_complete(sink.write(batch))  # delivered again: skipped by the checkpoint
    assert len(dead_letters(app)) == 3
    assert len(read_lines(tmp_path, config, 0)) == 2
    loop.run_until_complete(sink.close())
