"""The publisher's buffer and accounting (streams.client.buffer), without a sender.

Every offer ends in exactly one place (published, dropped by reason, or pending), at
every step; the bound holds, and a thread off the loop waits for room only within
its budget; the sender is woken only when there is something new to look at; groups
are due when full, lingered, flushed or closing, and come out packed; events that
never reached the producer go back first in line; the connection state decides
what a new event meets.
"""

from __future__ import annotations

import threading
import time

import pytest

from streams.client.batching import Item
from streams.client.buffer import DROP_REASONS, Buffer, PublisherStats
from streams.kafka.partitioner import partition_for

E, S = "engine_execution", "session_event"


def buffer(capacity: int = 100, batch_events: int = 10, batch_bytes: int = 10_000) -> Buffer:
    return Buffer(capacity, batch_events, batch_bytes, linger_s=60.0)


def item(n: int, key: bytes | None = b"gpt-x") -> Item:
    return (key, b'{"n":%d}' % n)


def offer(buf: Buffer, event_type: str, n: int, wait_s: float = 0.0) -> tuple[bool, bool]:
    key, body = item(n)
    return buf.offer(event_type, key, body, wait_s)


def balanced(stats: PublisherStats) -> bool:
    return stats.attempts == stats.published + stats.dropped_total + stats.pending


def test_a_new_buffer_is_empty_and_counts_nothing() -> None:
    stats = buffer().stats()
    assert stats == PublisherStats("new", 0, 0, 0, 0, 0, dict.fromkeys(DROP_REASONS, 0), 0, 0)
    assert stats.dropped_total == stats.pending == 0


def test_offers_are_bounded_and_every_attempt_is_counted() -> None:
    buf = buffer(capacity=3)
    assert [offer(buf, E, n)[0] for n in range(5)] == [True, True, True, False, False]
    buf.count_drop("invalid")
    stats = buf.stats()
    assert stats.attempts == 6 and stats.buffered == 3 and buf.pending() == 3
    assert stats.dropped["buffer_full"] == 2 and stats.dropped["invalid"] == 1
    assert balanced(stats)


def test_the_sender_is_woken_for_a_first_event_or_a_full_batch_once() -> None:
    buf = buffer(batch_events=3)
    assert offer(buf, E, 0) == (True, True)  # the buffer was empty
    assert offer(buf, E, 1) == (True, False)  # already asked
    assert buf.due_in(scan=False) is None  # the sender goes to sleep
    assert offer(buf, E, 2) == (True, True)  # the batch is full now
    assert offer(buf, E, 3) == (True, False)


def test_a_batch_full_in_bytes_wakes_the_sender() -> None:
    body = b"x" * 40
    buf = buffer(batch_bytes=100)
    assert buf.offer(E, b"k", body, 0) == (True, True)
    buf.due_in(scan=False)
    assert buf.offer(E, b"k", body, 0) == (True, False)  # 1 + 41 + 41 = 83 bytes
    assert buf.offer(E, b"k", body, 0) == (True, True)  # 124: over the bound


def test_groups_are_due_when_full_lingered_flushed_or_closing() -> None:
    buf = Buffer(100, 2, 10_000, linger_s=0.05)
    assert buf.due_in(scan=True) is None  # nothing buffered
    offer(buf, E, 0)
    due = buf.due_in(scan=True)
    assert due is not None and 0 < due <= 0.05
    assert buf.take(4) == []  # not due yet
    with buf.flushing():
        assert buf.due_in(scan=True) == 0.0
        [batch] = buf.take(4)
    assert (batch.event_type, batch.items) == (E, [item(0)])
    offer(buf, E, 1)
    offer(buf, E, 2)  # full: two events
    assert buf.due_in(scan=True) == 0.0
    assert [b.count for b in buf.take(4)] == [2]
    offer(buf, S, 3)
    time.sleep(0.06)
    assert buf.due_in(scan=True) == 0.0
    [lingered] = buf.take(None)
    assert (lingered.event_type, lingered.partition, lingered.key) == (S, None, None)
    offer(buf, E, 4)
    buf.close()
    assert buf.due_in(scan=True) == 0.0 and len(buf.take(4)) == 1


def test_taken_events_are_packed_per_type_and_partition_and_stay_pending() -> None:
    buf = buffer(batch_events=2)
    for n in range(3):
        offer(buf, E, n)
    buf.offer(S, b"sess-42", b"{}", 0)
    with buf.flushing():
        batches = buf.take(4)
    assert [(b.event_type, b.count) for b in batches] == [(E, 2), (E, 1), (S, 1)]
    assert all(b.partition == partition_for(b.key or b"", 4) for b in batches)
    assert batches[0].headers == [("event-type", E.encode())]
    stats = buf.stats()
    assert stats.buffered == 4 and stats.in_flight == 0 and balanced(stats)  # being sent


def test_requeued_events_go_back_first_in_line_and_due_now() -> None:
    buf = buffer()
    offer(buf, E, 0)
    with buf.flushing():
        taken = buf.take(4)
    offer(buf, E, 1)
    buf.requeue(taken)
    assert buf.due_in(scan=True) == 0.0
    [batch] = buf.take(4)
    assert batch.items == [item(0), item(1)]
    assert buf.stats().buffered == 2 and balanced(buf.stats())


def test_handed_over_events_settle_as_published_or_dropped() -> None:
    buf = buffer()
    for n in range(6):
        offer(buf, E, n)
    with buf.flushing():
        [batch] = buf.take(4)
    buf.handed_over(4)
    assert (buf.stats().buffered, buf.stats().in_flight) == (2, 4)
    buf.settle(3, None)
    buf.settle(1, "broker_unavailable")
    buf.settle(2, "too_large", sending=True)  # refused before the hand-over
    stats = buf.stats()
    assert (stats.published, stats.batches_sent, stats.send_errors) == (3, 1, 2)
    assert stats.dropped["broker_unavailable"] == 1 and stats.dropped["too_large"] == 2
    assert stats.pending == 0 and balanced(stats) and batch.count == 6


def test_the_connection_state_decides_what_a_new_event_meets() -> None:
    buf = buffer()
    assert buf.set_unavailable() is None and buf.state == "new"  # not connecting yet
    buf.set_connecting()
    assert buf.set_unavailable() == "connecting"
    assert offer(buf, E, 0) == (False, False)
    assert buf.stats().dropped["broker_unavailable"] == 1
    assert buf.set_connected() is True  # the end of an outage
    assert buf.set_connected() is False and buf.stats().reconnects == 1
    assert offer(buf, E, 1)[0] is True
    assert buf.set_unavailable() == "connected"
    buf.set_closed()
    assert buf.set_connected() is False and buf.state == "closed"
    assert offer(buf, E, 2) == (False, False)
    assert buf.stats().dropped["closed"] == 1


def test_closing_refuses_new_events_and_drops_what_is_left() -> None:
    buf = buffer()
    for n in range(5):
        offer(buf, E, n)
    with buf.flushing():
        buf.take(4)
    buf.handed_over(2)
    offer(buf, E, 5)
    buf.close()
    assert offer(buf, E, 6) == (False, False)
    # 3 taken and not handed over, 1 buffered, 2 with the producer in one message
    assert buf.drop_remaining("broker_unavailable", 1, 2) == 6
    stats = buf.stats()
    assert stats.dropped["broker_unavailable"] == 6 and stats.dropped["closed"] == 1
    assert stats.send_errors == 1 and stats.pending == 0 and balanced(stats)


def test_a_thread_waits_for_room_within_its_budget() -> None:
    buf = buffer(capacity=1)
    offer(buf, E, 0)
    with buf.flushing():
        buf.take(4)
    buf.handed_over(1)
    started = time.monotonic()
    assert offer(buf, E, 1, wait_s=0.05) == (False, False)  # nobody makes room
    assert 0.04 < time.monotonic() - started < 1.0
    assert offer(buf, E, 2, wait_s=0.0)[0] is False  # on the loop: no wait at all

    def acknowledge_soon() -> None:
        time.sleep(0.05)
        buf.settle(1, None)

    threading.Thread(target=acknowledge_soon).start()
    assert offer(buf, E, 3, wait_s=5.0)[0] is True  # room came within the budget
    stats = buf.stats()
    assert stats.dropped["buffer_full"] == 2 and balanced(stats)


@pytest.mark.parametrize("end", ["unavailable", "close"])
def test_a_waiting_thread_gives_up_at_once_when_publishing_stops(end: str) -> None:
    buf = buffer(capacity=1)
    buf.set_connecting()
    offer(buf, E, 0)
    result: list[tuple[bool, bool]] = []
    waiter = threading.Thread(target=lambda: result.append(offer(buf, E, 1, wait_s=10.0)))
    started = time.monotonic()
    waiter.start()
    time.sleep(0.05)
    if end == "unavailable":
        buf.set_unavailable()
    else:
        buf.close()
    waiter.join(5)
    assert result == [(False, False)] and time.monotonic() - started < 5
    reason = "broker_unavailable" if end == "unavailable" else "closed"
    assert buf.stats().dropped[reason] == 1
