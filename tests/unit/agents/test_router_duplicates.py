"""A message delivered twice into one batch of the router is routed once: the other
agents apply their ledgers message by message, the router's for the whole batch."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from streams.agents.router_agent import RouterProcessor
from streams.config.settings import Settings
from streams.domain.router import Router
from streams.domain.validation import default_registry
from streams.runtime.router_counters import RouterCounters
from tests.unit.agents.stub_app import message, stub_app
from tests.unit.agents.test_agents_crash_anywhere import NAMES, PARTITIONS, execution, recovered


def routed_ids(app: Any) -> list[str]:
    """The trace ids of every execution the router wrote, as many times as written."""
    ids = []
    for sent in app.producer.to(NAMES.typed["engine_execution"]):
        value = orjson.loads(sent.value)
        ids += [doc["trace_id"] for doc in (value if isinstance(value, list) else [value])]
    return ids


def test_a_message_twice_in_a_batch_is_routed_once(monkeypatch: Any) -> None:
    app = stub_app(monkeypatch)
    table = recovered("router-ledger", app.producer)
    processor = RouterProcessor(app, Settings(), Router(NAMES, default_registry()), PARTITIONS,
                                RouterCounters(), table, None)  # type: ignore[arg-type]  # fmt: skip
    values = [orjson.dumps({**execution(i), "event_type": "engine_execution"}) for i in range(4)]
    batch = [message(NAMES.ingest, 0, offset, value) for offset, value in enumerate(values)]
    batch.append(message(NAMES.ingest, 0, 3, values[3]))  # offset 3 once more
    asyncio.run(processor.process(batch))
    ids = routed_ids(app)
    assert len(ids) == 4 and len(set(ids)) == 4

    # And in the next batch: at or below what the ledger says is routed.
    asyncio.run(processor.process([message(NAMES.ingest, 0, 2, values[2])]))
    assert len(routed_ids(app)) == 4
