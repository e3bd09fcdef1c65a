"""What the window processor answers as its own follows the consumer's assignment: a
batch read before a rebalance and applied after the revoke rebuilds the revoked
partition's windows, a copy that no longer receives events. Gathered views and the
watermark gauges must not show it beside the new owner's answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, NamedTuple

import orjson
import pytest

from streams.agents.window_agent import WindowProcessor
from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.windows import WindowConfig
from tests.unit.agents.stub_app import StubTable, message, stub_app

NAMES = TopicNames()
EXECUTIONS = NAMES.typed["engine_execution"]
PARTITIONS = {topic: 4 for topic in [*NAMES.typed.values(), NAMES.dead_letter,
                                     NAMES.metrics_windows]}


class TP(NamedTuple):
    topic: str
    partition: int


def execution(i: int, engine: str) -> bytes:
    return orjson.dumps({
        "schema_version": 1, "trace_id": f"t-{i}", "task_id": "x", "engine_id": engine,
        "timestamp": time.time() - 3600 + i, "input": "", "output": "",
        "metrics": {"latency_ms": 5.0, "success": True},
    })  # fmt: skip


@dataclass
class Owner:
    """A window processor on a stub app, and the partitions its consumer is assigned."""

    processor: WindowProcessor
    assigned: set[TP]

    def lose(self, partition: int) -> None:
        """The rebalance: the assignment changes, then faust runs the revoke hook."""
        tp = TP(EXECUTIONS, partition)
        self.assigned.discard(tp)
        self.processor.revoke({tp})


@pytest.fixture
def owner(monkeypatch: pytest.MonkeyPatch) -> Owner:
    app = stub_app(monkeypatch)
    assigned = {TP(EXECUTIONS, 0), TP(EXECUTIONS, 1)}
    app.consumer = SimpleNamespace(assignment=lambda: set(assigned))
    table = StubTable("windows", app.producer)
    processor = WindowProcessor(app, Settings(), WindowConfig(), table, NAMES, PARTITIONS)  # type: ignore[arg-type]
    return Owner(processor, assigned)


@pytest.fixture
def run() -> Iterator[Callable[[Awaitable[Any]], Any]]:
    loop = asyncio.new_event_loop()
    yield loop.run_until_complete
    loop.close()


def first_batch() -> list[Any]:
    """An execution on each of the two partitions."""
    return [message(EXECUTIONS, 0, 0, execution(1, "e0")),
            message(EXECUTIONS, 1, 0, execution(2, "e1"))]


def test_a_partition_revoked_under_a_batch_is_not_owned(owner: Owner, run: Any) -> None:
    processor = owner.processor
    run(processor.process(first_batch()))
    assert set(processor.owned()) == {("engine", 0), ("engine", 1)}

    # The assignment changes before faust runs the revoke hooks.
    owner.assigned.discard(TP(EXECUTIONS, 1))
    assert set(processor.owned()) == {("engine", 0)}
    assert set(processor.partitions) == {("engine", 0), ("engine", 1)}
    owner.lose(1)
    assert set(processor.partitions) == {("engine", 0)}


def test_windows_built_for_a_view_under_a_revoke_are_not_kept(
    owner: Owner, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/engines builds the windows of every assigned partition; a revoke during that
    takeover must not leave a copy behind either."""
    ensure = owner.processor.ledgers.ensure

    async def revoked_meanwhile(sources: Any) -> Any:
        sources = list(sources)
        owner.lose(1)
        return await ensure(sources)

    monkeypatch.setattr(owner.processor.ledgers, "ensure", revoked_meanwhile)
    run(owner.processor.ensure_assigned())
    assert set(owner.processor.partitions) == {("engine", 0)}


def test_windows_rebuilt_for_a_batch_under_a_revoke_are_forgotten_after_it(
    owner: Owner, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kept, the copy would be taken as it is if the partition came back, without what
    its next owner applied meanwhile."""
    processor = owner.processor
    run(processor.process(first_batch()))
    take_over = processor._take_over

    async def revoked_meanwhile(wanted: Any) -> Any:
        owner.lose(1)  # while the batch waits for its takeover
        return await take_over(wanted)

    monkeypatch.setattr(processor, "_take_over", revoked_meanwhile)
    run(processor.process([message(EXECUTIONS, 0, 1, execution(3, "e0")),
                           message(EXECUTIONS, 1, 1, execution(4, "e1"))]))
    assert set(processor.partitions) == {("engine", 0)}
    assert sum(w.stats.count for w in processor.partitions[("engine", 0)].windows.values()) == 2
    assert processor.ledgers.get((EXECUTIONS, 1)) is None
