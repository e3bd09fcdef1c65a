"""The publisher (streams.client.publisher) without a broker: pointed at a closed
port it falls back to its no-op mode at once, never blocks a caller and counts its
drops; the buffer is bounded; invalid and oversized events are counted; bad
options are refused."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from streams.client import (
    ENGINE_EVENT,
    ENGINE_EXECUTION,
    InvalidEvent,
    KafkaSink,
    Publisher,
    PublisherStats,
    events,
)
from tests.unit.client.support import CASES, balanced, request_served, timed_publishes, unreachable


def test_a_publisher_counts_invalid_events_and_can_drop_them_instead() -> None:
    strict = Publisher(**unreachable())
    with pytest.raises(InvalidEvent):
        strict.publish(ENGINE_EVENT, request_served(latency_ms=-1))
    unchecked = Publisher(**unreachable(validate=False))
    with pytest.raises(InvalidEvent, match="JSON-serialisable"):
        unchecked.publish(ENGINE_EXECUTION, {**CASES[0][2], "input": {1, 2}})
    lenient = Publisher(**unreachable(on_invalid="drop"))
    assert lenient.publish(ENGINE_EVENT, request_served(latency_ms=-1)) is False
    assert lenient.publish(ENGINE_EVENT, request_served()) is True
    for publisher in (strict, unchecked, lenient):
        assert publisher.stats.dropped["invalid"] == 1 and balanced(publisher.stats)
    assert lenient.stats.buffered == 1


def test_publisher_without_broker_falls_back_to_noop_and_never_blocks() -> None:
    async def scenario() -> tuple[float, float, float, str, PublisherStats, PublisherStats]:
        started = time.monotonic()
        publisher = await Publisher.connect(**unreachable())
        connect_s = time.monotonic() - started
        state = publisher.state
        publish_s = timed_publishes(publisher.publish, 1_000)
        sink = KafkaSink(publisher)
        await sink.emit(ENGINE_EVENT, request_served())  # an EventSink over it: no raise
        before_close = publisher.stats
        started = time.monotonic()
        final = await publisher.close(timeout=1.0)
        return connect_s, publish_s, time.monotonic() - started, state, before_close, final

    connect_s, publish_s, close_s, state, stats, final = asyncio.run(
        asyncio.wait_for(scenario(), 30)
    )
    assert connect_s < 3.0  # bounded by connect_timeout (2 s); refused at once in fact
    assert state == "unavailable"
    assert publish_s < 0.5, f"1,000 publishes took {publish_s:.3f}s"  # never blocks
    assert stats.dropped["broker_unavailable"] == 1_001 and stats.pending == 0
    assert stats.published == 0 and balanced(stats)
    assert close_s < 2.0 and final.state == "closed" and balanced(final)


def test_connect_to_a_broker_that_never_answers_is_bounded() -> None:
    # A socket that completes the TCP handshake (the kernel's backlog) but never
    # answers a Kafka request: the first connection attempt hangs until
    # connect_timeout, then the publisher is in no-op mode.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"127.0.0.1:{silent.getsockname()[1]}"

        async def scenario() -> tuple[float, str, bool]:
            started = time.monotonic()
            publisher = await Publisher.connect(bootstrap_servers=address, connect_timeout=0.5)
            elapsed = time.monotonic() - started
            state = publisher.state
            accepted = publisher.publish(ENGINE_EVENT, request_served())
            await publisher.close(timeout=0.5)
            return elapsed, state, accepted

        elapsed, state, accepted = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert 0.4 < elapsed < 3.0 and state == "unavailable" and accepted is False


def test_the_buffer_is_bounded_and_overflow_is_counted() -> None:
    # Not started: events wait in the buffer (as during start-up), up to its bound.
    publisher = Publisher(**unreachable(buffer_events=10))
    accepted = [publisher.publish(ENGINE_EVENT, request_served()) for _ in range(15)]
    assert accepted == [True] * 10 + [False] * 5
    stats = publisher.stats
    assert stats.buffered == 10 and stats.dropped["buffer_full"] == 5 and balanced(stats)
    final = asyncio.run(publisher.close())
    assert final.dropped["closed"] == 10 and final.pending == 0 and balanced(final)
    assert publisher.publish(ENGINE_EVENT, request_served()) is False
    assert publisher.stats.dropped["closed"] == 11


def test_events_buffered_before_a_failed_connect_are_dropped_at_close() -> None:
    async def scenario() -> PublisherStats:
        publisher = Publisher(**unreachable(buffer_events=100))
        for _ in range(40):
            publisher.publish(ENGINE_EVENT, request_served())
        await publisher.start()
        assert publisher.state == "unavailable" and publisher.stats.buffered == 40
        assert publisher.publish(ENGINE_EVENT, request_served()) is False
        assert await publisher.flush(timeout=0.1) is False
        return await publisher.close(timeout=0.2)

    final = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert final.dropped["broker_unavailable"] == 41 and final.published == 0
    assert balanced(final)


def test_an_event_over_the_size_bound_is_dropped_as_too_large() -> None:
    publisher = Publisher(**unreachable(max_event_bytes=1_000))
    big = events.execution("gpt-x", "x" * 2_000, "y", latency_ms=1)
    assert publisher.publish(ENGINE_EXECUTION, big) is False
    assert publisher.publish(ENGINE_EXECUTION, events.execution("gpt-x", "x", "y", latency_ms=1))
    assert publisher.stats.dropped["too_large"] == 1 and publisher.stats.buffered == 1


@pytest.mark.parametrize(
    "options",
    [
        {"buffer_events": 0},
        {"batch_events": 0},
        {"batch_bytes": -1},
        {"linger": -1},
        {"compression": "brotli"},
        {"on_invalid": "ignore"},
        {"security_protocol": "TLS"},
        {"reconnect_backoff": (5.0, 0.5)},
        {"exit_timeout": -1},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Publisher(**unreachable(**options))
