"""streams.runtime.bulk without a broker: the bulk buffer, the bulk topic's delivery, the
acks (only after the handler returned, none when it raised), the stale-message
filter, and messages dropped at a rebalance no longer waited for."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from typing import Any

import faust
from faust.types import TP

from streams.runtime.app import keep_root_log_level
from streams.runtime.bulk import BulkBuffer, BulkTopic
from tests.unit.runtime.faust_app import TOPIC, bulk_consumer, message


def test_buffer_takes_batches_in_order_and_reports_full() -> None:
    buffer = BulkBuffer(batch=2, batch_bytes=10_000)
    assert buffer.empty() and not buffer.full()
    for i in range(8):
        buffer.put_nowait_enhanced(message(i))
    assert buffer.full() and len(buffer) == 8  # four batches
    assert [m.offset for m in buffer.take()] == [0, 1]
    assert not buffer.full()
    assert [m.offset for m in buffer.take()] == [2, 3]
    assert len(buffer) == 4 and buffer.bytes == 4 * len(b"{}")


def test_buffer_batches_are_bounded_in_bytes_too() -> None:
    buffer = BulkBuffer(batch=100, batch_bytes=10)
    for i in range(5):
        buffer.put_nowait_enhanced(message(i, value=b"x" * 4))
    assert [m.offset for m in buffer.take()] == [0, 1]  # 8 bytes; a third would be 12
    assert buffer.bytes == 12
    big = BulkBuffer(batch=100, batch_bytes=10)
    big.put_nowait_enhanced(message(0, value=b"x" * 50))
    big.put_nowait_enhanced(message(1, value=b"x" * 50))
    assert big.full()  # 100 bytes: four batches' worth
    assert [m.offset for m in big.take()] == [0]  # at least one message
    assert big.full()  # still 50 bytes
    assert [m.offset for m in big.take()] == [1]
    assert not big.full() and big.bytes == 0


async def _full_buffer_and_a_waiting_put() -> tuple[BulkBuffer, asyncio.Future[None]]:
    """A full buffer (four one-message batches) and a put of offset 4 waiting for room."""
    buffer = BulkBuffer(batch=1, batch_bytes=10_000)
    for i in range(4):
        buffer.put_nowait_enhanced(message(i))
    waiting = asyncio.ensure_future(buffer.put(message(4)))
    await asyncio.sleep(0)  # the put runs until it waits
    assert not waiting.done()  # full: the conductor waits
    return buffer, waiting


def test_buffer_put_waits_for_room_and_clear_releases() -> None:
    async def scenario() -> list[int]:
        buffer, waiting = await _full_buffer_and_a_waiting_put()
        taken = [m.offset for m in buffer.take()]
        await asyncio.wait_for(waiting, 1)
        while buffer.messages:
            taken += [m.offset for m in buffer.take()]
        return taken

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 4]


def test_a_put_waiting_through_a_clear_adds_nothing() -> None:
    """A rebalance's clear makes room; the message that waited for it would come before
    the reread of those cleared (seen: a sink got offset 946 right after 26 that way)."""

    async def scenario() -> list[int]:
        buffer, waiting = await _full_buffer_and_a_waiting_put()
        buffer.clear()
        await asyncio.wait_for(waiting, 1)
        buffer.put_nowait_enhanced(message(0))  # the reread
        return [m.offset for m in buffer.messages]

    assert asyncio.run(scenario()) == [0]


def test_a_put_waiting_through_a_clear_stops_being_waited_for(app: faust.App) -> None:
    """The conductor counted this channel's share of a message and waited for room; a
    rebalance cleared the buffer, so the message is not added. The other channel acks
    its share: the message must leave the consumer's in-flight set (a rebalance waits
    for that set to empty), unacked, so never committed."""

    async def handler(messages: list[Any]) -> None:
        return None

    bulk = bulk_consumer(app, handler)
    consumer = app.consumer

    async def scenario() -> None:
        while not bulk.buffer.full():
            bulk.buffer.put_nowait_enhanced(message(len(bulk.buffer)))
        waiting = message(len(bulk.buffer))
        waiting.incref(2)  # delivered to both channels
        consumer.unacked.add(waiting)  # read by the other agent
        put = asyncio.ensure_future(bulk.topic.put(waiting))
        await asyncio.sleep(0)
        assert not put.done()  # full: the conductor waits
        bulk.buffer.clear()  # a rebalance
        await asyncio.wait_for(put, 1)
        assert not bulk.buffer.messages
        assert not waiting.ack(consumer)  # the other agent's ack: not final
        consumer._clean_unacked_messages()  # faust's wait for in-flight messages
        assert waiting not in consumer.unacked and not waiting.acked

    asyncio.get_event_loop().run_until_complete(scenario())


def test_buffer_wait_returns_on_a_full_batch_or_after_within() -> None:
    async def scenario() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        buffer = BulkBuffer(batch=3, batch_bytes=10_000)
        buffer.put_nowait_enhanced(message(0))
        started = loop.time()
        await buffer.wait(0.2)  # one message: waits for `within`
        partial = loop.time() - started
        buffer.take()
        for i in range(3):
            buffer.put_nowait_enhanced(message(i))
        started = loop.time()
        await buffer.wait(5.0)  # a full batch: at once
        return partial, loop.time() - started

    partial, full = asyncio.run(scenario())
    assert 0.15 <= partial < 2.0
    assert full < 0.1


def test_bulk_topic_delivers_the_raw_message(app: faust.App) -> None:
    buffer = BulkBuffer(batch=5, batch_bytes=10_000)
    topic = BulkTopic(app, [TOPIC], buffer)
    msg = message(7)
    assert asyncio.get_event_loop().run_until_complete(topic.decode(msg)) is msg
    assert topic.queue is buffer
    # Never the key/value type pair of an ordinary topic: the conductor must not hand
    # this topic's raw message to another channel of the same topic as its event.
    plain = app.topic(TOPIC, key_type=bytes, value_type=bytes)
    assert (topic.key_type, topic.value_type) != (plain.key_type, plain.value_type)


def test_acks_only_after_the_handler_returned(app: faust.App) -> None:
    consumer = app.consumer
    seen_unacked: list[int] = []

    async def handler(messages: list[Any]) -> None:
        await asyncio.sleep(0)
        # In flight: tracked (a rebalance waits for them), not yet acked.
        seen_unacked.extend(m.offset for m in messages if m in consumer.unacked)
        assert not any(m.acked for m in messages)

    bulk = bulk_consumer(app, handler)
    batch = [message(i) for i in range(3)]
    for m in batch:
        m.incref()  # as the conductor does for each channel
    asyncio.get_event_loop().run_until_complete(bulk.deliver(batch))
    assert seen_unacked == [0, 1, 2]
    assert all(m.acked for m in batch)
    assert not consumer.unacked
    assert consumer._acked[TP(TOPIC, 0)] == [0, 1, 2]
    assert bulk.messages == 3 and bulk.batches == 1


def test_a_failed_batch_is_not_acked(app: faust.App) -> None:
    async def handler(messages: list[Any]) -> None:
        raise ValueError("boom")

    bulk = bulk_consumer(app, handler)
    batch = [message(i) for i in range(3)]
    for m in batch:
        m.incref()
    asyncio.get_event_loop().run_until_complete(bulk.deliver(batch))
    assert not any(m.acked for m in batch)
    assert not app.consumer._acked[TP(TOPIC, 0)]
    assert not app.consumer.unacked  # untracked: nothing waits for them forever
    assert bulk.failed_batches == 1


def test_a_message_shared_with_another_channel_is_acked_by_the_last_one(
    app: faust.App,
) -> None:
    async def handler(messages: list[Any]) -> None:
        return None

    bulk = bulk_consumer(app, handler)
    shared = message(0)
    shared.incref(2)  # delivered to this channel and to an ordinary agent's
    asyncio.get_event_loop().run_until_complete(bulk.deliver([shared]))
    assert not shared.acked  # the other channel has not acked it yet
    assert shared.ack(app.consumer)
    assert app.consumer._acked[TP(TOPIC, 0)] == [0]


def test_messages_from_before_a_rebalance_are_dropped(app: faust.App) -> None:
    bulk = bulk_consumer(app, lambda messages: None)
    app.flow_control.resume()  # as after an assignment
    app.consumer_generation_id = 2
    fresh, stale = message(1, generation=2), message(0, generation=1)
    assert bulk._current([stale, fresh]) == [fresh]
    assert bulk.stale_dropped == 1
    app.flow_control.suspend()
    assert bulk._current([fresh]) == []


def test_no_reference_to_a_delivered_batch_outlives_it(app: faust.App) -> None:
    """A message another channel never acks (a rebalance cleared its queue) leaves
    faust's in-flight WeakSet only as garbage: the drainer must not keep it alive."""

    async def handler(messages: list[Any]) -> None:
        return None

    bulk = bulk_consumer(app, handler)
    app.flow_control.resume()
    shared = message(0)
    shared.incref(2)  # this channel's share and another's, which never acks
    app.consumer.unacked.add(shared)  # tracked by the other channel's stream
    ref = weakref.ref(shared)
    bulk.buffer.put_nowait_enhanced(shared)
    del shared

    async def scenario() -> None:
        task = asyncio.ensure_future(bulk._run())
        for _ in range(50):
            await asyncio.sleep(0.01)
            if bulk.batches:
                break
        gc.collect()
        assert ref() is None, gc.get_referrers(ref())
        assert not app.consumer.unacked
        task.cancel()

    asyncio.get_event_loop().run_until_complete(scenario())
    assert bulk.batches == 1


def test_root_logger_is_put_back_at_the_worker_level(app: faust.App) -> None:
    """faust.Worker leaves the root logger at DEBUG (for its spinner)."""
    keep_root_log_level(app, "warning")
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.DEBUG)
    try:
        loop = asyncio.get_event_loop()
        for task in app._app_tasks:
            loop.run_until_complete(task())
        assert root.level == logging.WARNING
    finally:
        root.setLevel(before)


def test_buffer_wait_goes_on_while_a_backlog_is_being_delivered() -> None:
    async def scenario() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        buffer = BulkBuffer(batch=80, batch_bytes=10**9)
        buffer.put_nowait_enhanced(message(0))

        async def feed() -> None:  # 20 messages (a quarter batch) every 20 ms
            for i in range(1, 200):
                buffer.put_nowait_enhanced(message(i))
                if i % 20 == 0:
                    await asyncio.sleep(0.02)

        feeder = asyncio.ensure_future(feed())
        started = loop.time()
        await buffer.wait(0.05)  # 50 ms is less than a full batch, but it keeps coming
        waited = loop.time() - started
        feeder.cancel()
        return len(buffer), waited

    size, waited = asyncio.run(scenario())
    assert size >= 80
    assert waited < 1.0


def test_a_dropped_message_another_channel_tracked_stops_being_waited_for(
    app: faust.App,
) -> None:
    """A rebalance clears this channel's buffer; the ordinary agent that shares the
    topic had read (tracked) and acked its copy: the message must leave the consumer's
    in-flight set — without being acked, so it is never committed."""

    async def handler(messages: list[Any]) -> None:
        return None

    bulk = bulk_consumer(app, handler)
    consumer = app.consumer
    done_elsewhere, still_elsewhere, only_here = message(0), message(1), message(2)
    for m in (done_elsewhere, still_elsewhere):
        m.incref(2)  # delivered to both channels
        consumer.unacked.add(m)  # read by the other agent's stream
    only_here.incref()
    for m in (done_elsewhere, still_elsewhere, only_here):
        bulk.buffer.put_nowait_enhanced(m)
    assert not done_elsewhere.ack(consumer)  # the other agent's ack: not final
    app.flow_control.clear()  # a rebalance: the worker's consumer notes what it drops

    assert not bulk.buffer.messages
    assert set(consumer.unacked) == {still_elsewhere}  # the other agent is still on it
    assert not still_elsewhere.ack(consumer)  # now it is done too
    consumer._clean_unacked_messages()  # faust's wait for in-flight messages, each second
    assert not consumer.unacked
    assert not any(m.acked for m in (done_elsewhere, still_elsewhere, only_here))
    assert not consumer._acked[TP(TOPIC, 0)]  # nothing committable


def test_stale_messages_taken_from_the_buffer_stop_being_waited_for(app: faust.App) -> None:
    """Fetched before a rebalance, taken after it: dropped unacked, and no longer
    waited for once only this channel's share is left."""

    async def handler(messages: list[Any]) -> None:
        raise AssertionError("nothing current to deliver")

    bulk = bulk_consumer(app, handler)
    consumer = app.consumer
    app.flow_control.resume()
    app.consumer_generation_id = 2
    stale = message(0, generation=1)
    stale.incref(2)
    consumer.unacked.add(stale)  # read by the other agent's stream
    assert not stale.ack(consumer)  # and acked there
    asyncio.get_event_loop().run_until_complete(bulk._deliver_current([stale]))
    assert bulk.stale_dropped == 1
    assert stale not in consumer.unacked and not stale.acked
