"""The sinks (streams.client.sinks): they satisfy the protocols, the in-memory sink
keeps copies in order from many threads, the no-op sink checks and discards."""

from __future__ import annotations

import asyncio
import threading

import pytest

from streams.client import (
    ENGINE_EVENT,
    SESSION_EVENT,
    EventPublisher,
    EventSink,
    InMemorySink,
    InvalidEvent,
    KafkaSink,
    NoopSink,
    Publisher,
    events,
)
from tests.unit.client.support import request_served, unreachable


def test_sinks_satisfy_the_protocols() -> None:
    publisher = Publisher(**unreachable())
    for sink in (InMemorySink(), NoopSink(), KafkaSink(publisher), publisher):
        assert isinstance(sink, EventSink) and isinstance(sink, EventPublisher)


def test_in_memory_sink_keeps_copies_in_order_and_is_thread_safe() -> None:
    sink = InMemorySink()
    assert sink.snapshot() == [] and len(sink) == 0
    doc = events.model_loaded("gpt-x", "qwen3-4b", timestamp=1)
    asyncio.run(sink.emit(ENGINE_EVENT, doc))
    doc["model"] = "changed later"
    served = events.request_served("gpt-x", "/v1", "qwen3-4b", "local", 42, 200, timestamp=2)
    assert sink.publish(ENGINE_EVENT, served)
    got = sink.snapshot()
    assert [d["event"] for _, d in got] == ["ModelLoaded", "RequestServed"]
    assert got[0][1]["model"] == "qwen3-4b"
    got[0][1]["model"] = "changed by the test"
    assert sink.events(ENGINE_EVENT)[0]["model"] == "qwen3-4b"

    sink.clear()
    threads = [
        threading.Thread(
            target=lambda n=n: [
                sink.publish(SESSION_EVENT, events.inference_recorded(f"s-{n}", "m", "1", i))
                for i in range(500)
            ]
        )
        for n in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    kept = sink.events(SESSION_EVENT)
    assert len(kept) == 4000 and sink.events(ENGINE_EVENT) == []
    for n in range(8):  # each thread's events in its own order
        assert [d["latency_ms"] for d in kept if d["session_id"] == f"s-{n}"] == list(range(500))


def test_noop_sink_discards_after_checking() -> None:
    sink = NoopSink()
    asyncio.run(sink.emit(ENGINE_EVENT, request_served()))
    assert sink.publish(ENGINE_EVENT, request_served()) is False
    assert sink.discarded == 2
    with pytest.raises(InvalidEvent):
        sink.publish(ENGINE_EVENT, request_served(status_code=42))
