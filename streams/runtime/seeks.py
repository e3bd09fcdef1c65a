"""Deferred seeks: every seek of the worker's consumer is made by the fetch loop,
between two fetches, in the Kafka client's own thread.

Then every record handed out before a seek came from the old position and every record
after it from the new one, so the first record after a seek tells the truth about the
partition (streams.runtime.delivery_order relies on that to tell a real jump from a
stale record). faust's seek called the client from the worker's thread at any moment:
a fetch being handed out in the client's thread then set the position past its
records, undoing the seek, and records fetched before a seek could come after it.

This mixin also holds the position state every other mixin of the consumer
(streams.runtime.consumer.OrderedConsumer) reads: the next offset to deliver of each
partition, the seeks waiting for the fetch loop, the partitions just sought, the
consumer generation the partitions were sought for, and the first offset of each
partition nothing was committed for.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

# One log for every part of the worker's consumer (streams.runtime.consumer).
log = logging.getLogger("streams.runtime.consumer")


class DeferredSeeks(aiokafka_driver.Consumer):
    """faust's aiokafka Consumer whose seeks wait for the fetch loop (`_apply_seeks`)."""

    # The faust and aiokafka internals this mixin overrides and reads (checked at start,
    # see streams.runtime.versions.check_internals).
    OVERRIDES: ClassVar[tuple[str, ...]] = ("seek", "perform_seek")
    PRIVATES: ClassVar[tuple[str, ...]] = (
        "_read_offset", "_committed_offset", "_acked", "_acked_index", "_gap",
        "_thread", "_thread._ensure_consumer", "_thread.call_thread",
    )  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # In-order delivery (see streams.runtime.delivery_order): per partition, the next
        # offset to deliver; seeks counted, so that a delivery spanning one does not move
        # the offsets; seeks waiting for the fetch loop (see `seek`); partitions sought
        # since their last record was handed out, with the offset they were sought to.
        self._expected: dict[TP, int] = {}
        self._seek_epoch = 0
        self._to_seek: dict[TP, int] = {}
        self._fresh: dict[TP, int] = {}
        # The consumer generation the partitions were last sought for (perform_seek), and
        # the one whose seeks wait for the fetch loop.
        self._sought_generation: int | None = None
        self._seeking_generation: int | None = None
        # First offset of each partition nothing was committed for (at the last seek).
        self._log_start: dict[TP, int] = {}

    async def seek(self, partition: TP, offset: int) -> None:
        """Deliver `partition` from `offset` on: from now on nothing past it is
        delivered, and the fetch loop moves the client there before its next fetch.

        Corrects faust's `Consumer.seek`, which calls the client's seek at once, from
        the worker's thread (`_thread.seek`): a fetch being handed out in the client's
        thread at that moment set the position past its records, undoing the seek, and
        records fetched before the seek could be delivered after it. Here the seek is
        only recorded (`_seek_later`); `_apply_seeks` makes it.
        Relies on: `_read_offset` (faust's last delivered offset per partition)."""
        self._seek_later(partition, offset)

    def _seek_later(self, tp: TP, offset: int) -> None:
        """`seek`, for synchronous code: faust's read offset set as its seek sets it,
        and the seek recorded for the fetch loop."""
        self._read_offset[tp] = offset if offset else None
        self._seek_epoch += 1
        self._expected[tp] = offset
        self._to_seek[tp] = offset

    async def _apply_seeks(self) -> None:
        """Make the seeks waiting for the fetch loop, in the client's thread (one call
        for all; a partition no longer assigned is left alone). Called by the fetch
        loop before each fetch (streams.runtime.delivery_order).
        Relies on: `_thread` (faust's AIOKafkaConsumerThread), its `call_thread` (runs a
        coroutine in the client's thread) and `_ensure_consumer` (the aiokafka
        AIOKafkaConsumer, whose public `assignment` and `seek` are used)."""
        if not self._to_seek:
            return
        seeks, self._to_seek = self._to_seek, {}
        generation = self._seeking_generation
        thread = self._thread

        async def seek_all() -> dict[TP, int]:
            consumer = thread._ensure_consumer()
            assigned = consumer.assignment()
            done = {}
            for tp, offset in seeks.items():
                if tp in assigned:
                    consumer.seek(tp, offset)
                    done[tp] = offset
            return done

        try:
            done = await thread.call_thread(seek_all)
        except BaseException:
            self._to_seek = {**seeks, **self._to_seek}
            raise
        self._fresh.update(done)
        if generation is not None and generation == self.app.consumer_generation_id:
            self._sought_generation = generation
            self._seeking_generation = None

    async def perform_seek(self) -> None:
        """faust's seek of every partition to its committed offset (a rebalance);
        delivery goes on from there once the fetch loop has sought every input partition
        there itself.

        Corrects faust's `Consumer.perform_seek`, which (1) keeps the acks recorded
        before the seek, so a message a stream skipped during the rebalance (faust's
        streams ack those) could be committed before its reread was processed; (2)
        leaves a partition nothing was committed for where the client's position
        happens to be (the client's `seek_to_committed` leaves offset 0 alone too),
        past records fetched and dropped before; (3) is followed by delivery at once,
        while records fetched between its seek and the next fetch come from before it.
        Here the acks are dropped, an uncommitted partition is sought to its first
        offset (`earliest_offsets`, remembered in `_log_start` for the commit rule), and
        every partition is sought again by the fetch loop (`_seek_later`); nothing is
        delivered until it has (`_sought_generation`, see delivery_order._in_order).
        Relies on: `_read_offset`, `_committed_offset` (set as faust sets them), and
        `_acked`, `_acked_index`, `_gap` (faust's acked offsets, their index, and the
        offsets known not to exist, per partition)."""
        generation = self.app.consumer_generation_id
        committed = await self.seek_to_committed()
        self._read_offset.update(
            {tp: offset if offset is not None and offset >= 0 else None
             for tp, offset in committed.items()}
        )
        self._committed_offset.update(
            {tp: offset if offset else None
             for tp, offset in committed.items() if offset is not None}
        )
        # Every partition is read again from here, so acks from before the seek are
        # dropped: faust's streams ack a message they skip during a rebalance, which
        # would let a commit pass it before its reread was processed.
        self._acked.clear()
        self._acked_index.clear()
        self._gap.clear()
        self._expected.clear()
        self._to_seek.clear()
        self._fresh.clear()
        # Nothing committed yet (the client's seek leaves offset 0 alone too): read from
        # the first offset (auto offset reset "earliest"), and the in-order rule and the
        # commit start there. The client's position is not left as it is: records
        # fetched and dropped before this seek (a worker's start) moved it past them,
        # and nothing else would read them again. Table changelogs are never committed:
        # standby tables read theirs again from the start.
        seeks = {tp: offset for tp, offset in committed.items()
                 if offset is not None and offset > 0}
        unstarted = [tp for tp, offset in committed.items() if offset is None or offset <= 0]
        self._log_start.clear()
        if unstarted:
            try:
                starts = await self.earliest_offsets(*unstarted)
            except Exception as exc:
                # Read from offset 0: the client resets to the first offset.
                log.warning("reading the first offsets of %d partitions failed: %r",
                            len(unstarted), exc)
                starts = dict.fromkeys(unstarted, 0)
            self._log_start.update(starts)
            seeks.update(starts)
        # The fetch loop seeks them all again: records it handed out after the client's
        # seek above and dropped (not yet sought) would not be read again otherwise.
        self._seeking_generation = generation
        for tp, offset in seeks.items():
            self._seek_later(tp, offset)
        if not self._to_seek:
            self._sought_generation = generation
