"""The synchronous facade (streams.client.sync) without a broker: it never blocks
and counts every drop, also after close."""

from __future__ import annotations

import time

from streams.client import ENGINE_EVENT, SyncPublisher
from tests.unit.client.support import balanced, request_served, timed_publishes, unreachable


def test_sync_publisher_without_broker_never_blocks() -> None:
    started = time.monotonic()
    with SyncPublisher(**unreachable(block_budget=0.005)) as publisher:
        connect_s = time.monotonic() - started
        assert publisher.state == "unavailable"
        publish_s = timed_publishes(publisher.publish, 1_000)
        stats = publisher.stats
        assert publisher.flush(timeout=0.2) is True  # nothing pending: all dropped
    assert connect_s < 3.0
    assert publish_s < 0.5, f"1,000 publishes took {publish_s:.3f}s"
    assert stats.dropped["broker_unavailable"] == 1_000 and balanced(stats)
    final = publisher.close()  # twice is fine
    assert final.state == "closed" and balanced(final)
    assert publisher.publish(ENGINE_EVENT, request_served()) is False
    assert publisher.stats.dropped["closed"] == 1
