"""The worker's Kafka consumer: faust's aiokafka Consumer with a cheaper fetch loop and
delivery that never loses a message on the way to the agents.

* `FastDrainConsumer._drain_messages`: each delivery awaited directly instead of
  through faust's per-message `wait_first` (see the class).
* In-order delivery per partition (nothing before a rebalance's seek; a partition
  never committed read from its first offset; a jump read again, and taken only when
  the first record after that seek shows it), seeks made by the fetch loop between
  fetches in the client's own thread, a commit that stops at a missing offset, a
  fetch that never drops records silently, messages faust clears from agents' queues
  read again, and shared messages cleared at a rebalance no longer waited for (see
  the sections of the class).

`install` makes an app use it; streams.runtime.bulk's bulk agents sit on top.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any, cast

import faust
from faust.exceptions import ConsumerNotStarted
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, Message
from faust.types.tuples import ack_lock
from mode import Service, ServiceT
from mode.utils.futures import notify

from streams.runtime.bulk import BulkBuffer

log = logging.getLogger(__name__)


# The consumer generation of a message taken back (FastDrainConsumer._undeliver): none.
UNDELIVERED = -1


class FastDrainConsumer(aiokafka_driver.Consumer):
    """faust's aiokafka Consumer. Its fetch loop (`_drain_messages`) makes the waiting
    seeks before each fetch (see `seek`) and awaits each delivery directly:

    faust delivers every fetched message with
    `await self.wait_first(callback(message), self.suspend_flow.wait())`: four tasks
    (the delivery, suspend_flow, stopped, crashed), an asyncio.wait and three
    cancellations per message, so that a delivery blocked on a full agent queue can
    be abandoned when a rebalance suspends the flow. That was the largest single cost
    of a busy worker. Here the delivery is awaited directly while the flow is not
    suspended; when it is, faust's `wait_first` is used, exactly as before. A
    delivery blocked when a rebalance starts ends as it did before: faust stops the
    fetcher (cancelling it) before it revokes partitions, and clears the queues; one
    that the queues were cleared during otherwise is taken back (`_undeliver`).
    Everything else is faust 0.15.3's loop unchanged but for in-order delivery (the
    sections below).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # In-order delivery (see _in_order): per partition, the next offset to deliver;
        # seeks counted, so that a delivery spanning one does not move the offsets;
        # seeks waiting for the fetch loop (see `seek`); partitions sought since their
        # last record was handed out, with the offset they were sought to.
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
        # Messages cleared from agents' queues at a rebalance: (message, shares).
        self._cleared: dict[int, tuple[Message, int]] = {}
        self.clears = 0  # how many times faust's flow control cleared the agents' queues

    async def _drain_messages(self, fetcher: ServiceT) -> None:  # pragma: no cover
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        suspended = self.suspend_flow.is_set

        get_read_offset = self._read_offset.__getitem__
        flag_consumer_fetching = CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for

        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                await self._apply_seeks()  # the other change: see `seek`
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0

                        offset = message.offset
                        if not await self._in_order(tp, message):
                            continue
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset:
                                acks_enabled = acks_enabled_for(message.topic)
                                if acks_enabled:
                                    await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            epoch, clears = self._seek_epoch, self.clears
                            if suspended():
                                await self.wait_first(callback(message), self.suspend_flow.wait())
                            else:
                                # The one change: see the class docstring.
                                await callback(message)
                            if clears != self.clears:
                                self._undeliver(tp, message)
                            else:
                                self._delivered(tp, offset, epoch)
                        else:
                            self.log.dev(
                                "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                                offset,
                                message.key,
                                message.value,
                            )
                    unset_flag(flag_consumer_fetching)

        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)


    # ---- in-order delivery ------------------------------------------------------------
    # Every agent of this project skips a message at or below the last offset it applied
    # (ledgers, checkpoints, clocks), and faust commits a partition one offset past a
    # single missing one (`_new_offset`): a message skipped on the way to the agents was
    # lost for good. So each acked partition is delivered strictly in offset order from
    # where it was last sought; a jump is reread from the missing offset.


    async def _in_order(self, tp: TP, message: Message) -> bool:
        """Whether `message` is the next to deliver of its partition. One fetched before
        a rebalance, or before the rebalance's seek, is not (the seek rereads from the
        committed offsets); after a jump past the expected offset, the partition is
        reread from there, and the jump is taken only when it is the first record the
        client hands out after that seek."""
        generation = self.app.consumer_generation_id
        if message.generation_id != generation:
            return False
        if not self.app.topics.acks_enabled_for(message.topic):
            return True  # table changelogs: compacted, with gaps of their own
        sought_to = self._fresh.pop(tp, None)  # the first record since a seek
        if self._sought_generation != generation:
            # Assigned, not yet sought to the committed offsets: the client's position
            # is anywhere (faust resumes the partitions just before it seeks them). An
            # agent that applied such a message would skip those before it when they
            # are read again after the seek.
            return False
        want = self._expected.get(tp)
        if want is None or message.offset <= want:
            return True  # below: faust's read offset drops the duplicate
        if tp in self._to_seek:
            return False  # a seek not made yet rereads it
        if sought_to == want:
            # The client read from `want` and this came first: the offsets in between
            # do not exist (transaction markers, compaction, retention).
            log.warning("%s[%d]: no offsets %d to %d, going on", tp.topic, tp.partition,
                        want, message.offset - 1)
            self._gap[tp].addi(want, message.offset)  # committed as if acked
            self._gap[tp].merge_overlaps()
            return True
        log.info("rereading %s[%d] from %d: offset %d came first",
                 tp.topic, tp.partition, want, message.offset)
        await self.seek(tp, want)
        return False

    def _undeliver(self, tp: TP, message: Message) -> None:
        """Take back a delivery during which the agents' queues were cleared: it may
        have put `message` in a queue after the clear (a delivery waiting for room in
        a full queue goes on once the clear makes room), ahead of the reread of the
        messages cleared. Agents skip a message of another consumer generation, and
        its partition is read again from it."""
        if not self.app.topics.acks_enabled_for(tp.topic):
            self._delivered(tp, message.offset, self._seek_epoch)
            return  # table changelogs: applied whenever they come
        message.generation_id = UNDELIVERED
        self._reread_from({tp: message.offset})

    def _delivered(self, tp: TP, offset: int, epoch: int) -> None:
        """Record `offset` as delivered, unless a seek happened while it was (the seek's
        offsets win: faust's loop let a late delivery overwrite them, and the messages
        reread after the seek were then dropped as already read)."""
        if epoch != self._seek_epoch:
            return
        self._read_offset[tp] = offset
        if self.app.topics.acks_enabled_for(tp.topic):
            self._expected[tp] = offset + 1

    # ---- seeks ---------------------------------------------------------------------------
    # A seek is made by the fetch loop, between two fetches, in the client's thread. Then
    # every record handed out before it came from the old position and every record after
    # it from the new one, so the first record after a seek tells the truth about the
    # partition (see _in_order). faust's seek called the client from the worker's thread
    # at any moment: a fetch being handed out in the client's thread then set the
    # position past its records, undoing the seek, and records fetched before a seek
    # could come after it.

    async def seek(self, partition: TP, offset: int) -> None:
        """Deliver `partition` from `offset` on: from now on nothing past it is
        delivered, and the fetch loop moves the client there before its next fetch."""
        self._seek_later(partition, offset)

    def _seek_later(self, tp: TP, offset: int) -> None:
        """`seek`, for synchronous code."""
        self._read_offset[tp] = offset if offset else None
        self._seek_epoch += 1
        self._expected[tp] = offset
        self._to_seek[tp] = offset

    async def _apply_seeks(self) -> None:
        """Make the seeks waiting for the fetch loop, in the client's thread."""
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
        there itself."""
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

    def ack(self, message: Message) -> bool:
        """faust's ack, except for a message fetched under an earlier assignment: it is
        no longer waited for, and not recorded for the commit (the rebalance reads it
        again from the committed offset; faust's streams ack the messages they skip)."""
        if message.generation_id == self.app.consumer_generation_id:
            return cast(bool, super().ack(message))
        with ack_lock:
            if not message.acked:
                message.acked = True
                self._unacked_messages.discard(message)
                notify(self._waiting_for_ack)
        return False

    def _new_offset(self, tp: TP) -> int | None:
        """faust's next offset to commit, except that a missing offset right at the
        committed one (the first offset when nothing is committed yet) stops it: faust
        passed over exactly one, and over any number when nothing was committed."""
        acked = self._acked[tp]
        committed = self._committed_offset[tp]
        if committed is None:
            committed = self._log_start.get(tp)
        if acked and committed is not None and not self._gap[tp] and min(acked) > committed:
            return None
        return cast(int | None, super()._new_offset(tp))

    # ---- messages cleared from agents' queues ------------------------------------------
    # faust clears every agent's queue when a rebalance starts and each time its flow
    # control resumes — which it also does while the agents run (table recovery of
    # standby partitions, the end of a recovery right after the seek to the committed
    # offsets). A cleared message was delivered: the client's position is past it, and
    # the messages after it reach the agents without it, so an agent that skips offsets
    # at or below the last it applied would skip it for good. Its partition is read
    # again from the first cleared offset.
    # A message shared by two agents is acked (final) only when both acked it; once only
    # cleared shares are left it is untracked — not acked, so a rebalance no longer
    # waits for it, and it is not committed.

    def note_cleared(self, messages: Iterable[Message]) -> None:
        """Record `messages` as dropped from one agent's queue each, and read their
        partitions again from the first dropped offset."""
        cleared = self._cleared
        generation = self.app.consumer_generation_id
        first: dict[TP, int] = {}
        for message in messages:
            _, shares = cleared.get(id(message), (message, 0))
            cleared[id(message)] = (message, shares + 1)
            if message.generation_id == generation and message.offset < first.get(
                message.tp, message.offset + 1
            ):
                first[message.tp] = message.offset
        self._release_cleared()
        if first:
            self._reread_from(first)

    def _reread_from(self, offsets: dict[TP, int]) -> None:
        """Seek each assigned partition of `offsets` back to its offset, now (faust's
        flow control clears the queues synchronously) — never forward: a partition
        whose next delivery is further back delivers it anyway (after a rebalance's
        seek to the committed offsets, or an earlier reread from further back, which a
        seek forward would undo)."""
        try:
            assigned = self.assignment()
        except ConsumerNotStarted:
            return  # stopping: nothing more is read
        for tp, offset in offsets.items():
            if tp not in assigned or not self.app.topics.acks_enabled_for(tp.topic):
                continue
            if offset > self._expected.get(tp, offset):
                continue
            log.info("rereading %s[%d] from %d: cleared from an agent's queue",
                     tp.topic, tp.partition, offset)
            self._seek_later(tp, offset)

    def _release_cleared(self) -> None:
        """Untrack each cleared message whose only unacked shares are cleared ones."""
        unacked = self._unacked_messages
        for key, (message, shares) in list(self._cleared.items()):
            if message.acked or message not in unacked:
                del self._cleared[key]
            elif message.refcount <= shares:
                unacked.discard(message)
                del self._cleared[key]

    def _clean_unacked_messages(self) -> None:
        """faust's cleanup (called every second while a rebalance waits for in-flight
        messages), and the cleared messages no agent will ack."""
        super()._clean_unacked_messages()
        self._release_cleared()

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        """faust's getmany, except that a fetched record is never dropped silently.

        faust drops the rest of a fetched batch when the flow stops or the generation
        changes while it is being delivered, and any record of a partition that is not
        active at that moment (paused, or its agent's queue full) — but the broker
        client's position has already moved past them. A rebalance seeks every
        partition back to its committed offset, which covers most of these; a drop
        between that seek and the flow resuming (a worker's start) was never read
        again, and the partition's committed offset stayed behind until new messages
        came. Here each such partition is sought back to its first dropped record."""
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            # faust: called while the flow is stopped; reread from the committed offsets.
            try:
                await self.perform_seek()
            except Exception as exc:
                log.warning("seeking to the committed offsets failed: %r", exc)
            return
        to_message = self._to_message
        buffered = self._buffered_partitions
        rewind: dict[TP, int] = {}
        for tp, record in self.scheduler.iterate(records):
            if tp in rewind:
                continue  # after a dropped record: reread in order
            if (
                not self.flow_active
                or self.app.consumer_generation_id != generation_id
                or not (active_partitions is None or tp in active_partitions or tp in buffered)
            ):
                rewind[tp] = record.offset
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            yield tp, to_message(tp, record)
        if rewind:
            await self._rewind(rewind, generation_id)

    async def _rewind(self, offsets: dict[TP, int], generation_id: int) -> None:
        """Seek each partition still assigned (same generation) back to `offsets`."""
        if self.app.consumer_generation_id != generation_id:
            return  # the rebalance seeks to the committed offsets itself
        assigned = self.assignment()
        for tp, offset in offsets.items():
            if tp in assigned:
                log.info("rereading %s[%d] from %d (fetched while not deliverable)",
                         tp.topic, tp.partition, offset)
                await self.seek(tp, offset)


class FastDrainTransport(aiokafka_driver.Transport):
    """faust's aiokafka transport with FastDrainConsumer."""

    Consumer = FastDrainConsumer


def install(app: faust.App) -> None:
    """Make `app` consume with FastDrainConsumer (before the app starts)."""
    app.transport = FastDrainTransport(app.conf.broker_consumer, app)
    flow_control = app.flow_control
    clear_queues = flow_control.clear

    def clear_and_note() -> None:
        # Agents' queues hold events; a bulk agent's buffer holds the messages.
        dropped: list[Message] = []
        for queue in list(cast(Any, flow_control)._queues):
            if isinstance(queue, BulkBuffer):
                dropped += queue.messages
            else:
                dropped += [item.message for item in list(getattr(queue, "_queue", ()))
                            if isinstance(getattr(item, "message", None), Message)]
        clear_queues()
        consumer = cast(FastDrainConsumer, app.consumer)
        consumer.clears += 1
        if dropped:
            consumer.note_cleared(dropped)

    flow_control.clear = clear_and_note  # type: ignore[method-assign]
