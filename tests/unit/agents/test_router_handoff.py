"""The router leaves what it wrote, decoded, in the handoff of its worker: each message it
produced to a topic read in the same worker is there under its offset, and its events
are exactly what the message's bytes decode to."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from streams.agents.router_agent import RouterProcessor
from streams.config.settings import Settings
from streams.domain.router import Router
from streams.domain.validation import default_registry
from streams.runtime.handoff import Handoff
from streams.runtime.router_counters import RouterCounters
from tests.unit.agents.stub_app import message, stub_app
from tests.unit.agents.test_agents_crash_anywhere import NAMES, PARTITIONS, execution, recovered


def test_every_message_the_router_writes_for_a_reader_is_in_the_handoff(monkeypatch: Any) -> None:
    app = stub_app(monkeypatch)
    handoff = Handoff()
    executions = NAMES.typed["engine_execution"]
    handoff.reads(executions)
    table = recovered("router-ledger", app.producer)
    router = Router(NAMES, default_registry())
    processor = RouterProcessor(app, Settings(), router, PARTITIONS, RouterCounters(), table,
                                handoff)  # type: ignore[arg-type]  # fmt: skip
    docs = [{**execution(i, engine=f"e{i % 5}"), "event_type": "engine_execution"}
            for i in range(20)]  # fmt: skip
    asyncio.run(processor.process([message(NAMES.ingest, 0, 0, orjson.dumps(docs))]))
    written = app.producer.to(executions)
    assert written  # the batch was routed
    for sent in written:
        handed = handoff.take(sent.topic, sent.partition, sent.offset, sent.value)
        decoded = orjson.loads(sent.value)
        assert handed == (decoded if isinstance(decoded, list) else [decoded])
    assert sum(len(handoff.take(s.topic, s.partition, s.offset, s.value) or [])
               for s in written) == 0  # one reader: taken once  # fmt: skip
    assert handoff.stats()["held_events"] == 0
    # Nothing is left for a topic nobody in the worker reads (the dead letters here).
    assert not handoff.wants(NAMES.dead_letter)
