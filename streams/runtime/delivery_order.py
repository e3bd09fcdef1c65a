"""The fetch loop and in-order delivery: each acked partition is handed to the agents
strictly in offset order, from where it was last sought; a jump is read again from the
missing offset.

Every agent of this project skips a message at or below the last offset it applied
(ledgers, checkpoints, clocks), and faust commits a partition one offset past a single
missing one (see streams.runtime.commit_rule): a message skipped on the way to the
agents was lost for good.

The fetch loop (`InOrderDelivery._drain_messages`) is faust 0.15.3's, with four
changes: it makes the waiting seeks before each fetch (streams.runtime.seeks), awaits
each delivery directly unless the flow is suspended, delivers only the message that is
next in its partition (`_in_order`), and records a delivery only if no seek happened
and no queue was cleared meanwhile (`_delivered`, `_undeliver`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import ClassVar, cast

from faust.transport.consumer import CONSUMER_FETCHING
from faust.types import TP, Message
from mode import Service, ServiceT

from streams.runtime.cleared import RereadCleared

# One log for every part of the worker's consumer (streams.runtime.consumer).
log = logging.getLogger("streams.runtime.consumer")

# The consumer generation of a message taken back (InOrderDelivery._undeliver): none.
UNDELIVERED = -1


class InOrderDelivery(RereadCleared):
    """faust's aiokafka Consumer whose fetch loop delivers each partition in offset
    order."""

    # The faust and mode internals this mixin overrides and reads (checked at start, see
    # streams.runtime.versions.check_internals).
    OVERRIDES: ClassVar[tuple[str, ...]] = ("_drain_messages",)
    PRIVATES: ClassVar[tuple[str, ...]] = (
        "_stopped", "_read_offset", "_commit_every", "_n_acked", "_add_gap", "_gap",
    )  # fmt: skip

    async def _drain_messages(self, fetcher: ServiceT) -> None:  # pragma: no cover
        """The fetch loop: fetch (`getmany`), deliver each message to the conductor
        (`callback`), record it as read, until the consumer or the fetcher stops.

        Corrects faust's `Consumer._drain_messages`, copied here with these changes
        (tests/unit/runtime/test_consumer.py fails if faust's loop changes):

        * faust delivers every message with
          `await self.wait_first(callback(message), self.suspend_flow.wait())`: four
          tasks (the delivery, suspend_flow, stopped, crashed), an asyncio.wait and
          three cancellations per message, so that a delivery blocked on a full agent
          queue can be abandoned when a rebalance suspends the flow — the largest single
          cost of a busy worker. Here the delivery is awaited directly while the flow is
          not suspended, and through faust's `wait_first` when it is. A delivery blocked
          when a rebalance starts ends as before: faust stops the fetcher (cancelling
          it) before it revokes partitions, and clears the queues; one that the queues
          were cleared during otherwise is taken back (`_undeliver`).
        * faust delivers whatever its read offset lets through: a record fetched before
          a rebalance or its seek, or past a missing offset. Here only the next message
          of its partition is (`_in_order`).
        * faust sets the read offset after each delivery, even one that waited through
          a seek (the messages reread after the seek were then dropped as already
          read). Here `_delivered` leaves the seek's offsets alone.
        * The seeks waiting for the fetch loop are made before each fetch
          (`_apply_seeks`, streams.runtime.seeks).

        Relies on: `_stopped` (mode's Service stop event, of the consumer and the
        fetcher), `_read_offset`, `_commit_every` and `_n_acked` (faust's commit every
        N acks), `_add_gap` (faust's record of offsets skipped on an acked topic), and
        `diag`, `suspend_flow`, `wait_first`, `callback`, `consumer_stopped_errors`."""
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
                await self._apply_seeks()  # seeks between fetches: see streams.runtime.seeks
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
                                # Directly: see the docstring.
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

    async def _in_order(self, tp: TP, message: Message) -> bool:
        """Whether `message` is the next to deliver of its partition. One fetched before
        a rebalance, or before the rebalance's seek, is not (the seek rereads from the
        committed offsets); after a jump past the expected offset, the partition is
        reread from there, and the jump is taken only when it is the first record the
        client hands out after that seek (streams.runtime.seeks: then the offsets in
        between do not exist, and are recorded in faust's `_gap` to be committed as if
        acked). Table changelogs are delivered as faust delivers them."""
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
                        want, message.offset - 1,
                        extra={"topic": tp.topic, "partition": tp.partition})
            self._gap[tp].addi(want, message.offset)  # committed as if acked
            self._gap[tp].merge_overlaps()
            return True
        log.info("rereading %s[%d] from %d: offset %d came first",
                 tp.topic, tp.partition, want, message.offset,
                 extra={"topic": tp.topic, "partition": tp.partition})
        await self.seek(tp, want)
        return False

    def _undeliver(self, tp: TP, message: Message) -> None:
        """Take back a delivery during which the agents' queues were cleared: it may
        have put `message` in a queue after the clear (a delivery waiting for room in
        a full queue goes on once the clear makes room), ahead of the reread of the
        messages cleared (streams.runtime.cleared). Agents skip a message of another
        consumer generation, and its partition is read again from it."""
        if not self.app.topics.acks_enabled_for(tp.topic):
            self._delivered(tp, message.offset, self._seek_epoch)
            return  # table changelogs: applied whenever they come
        message.generation_id = UNDELIVERED
        self._reread_from({tp: message.offset})

    def _delivered(self, tp: TP, offset: int, epoch: int) -> None:
        """Record `offset` as delivered, unless a seek happened while it was (the seek's
        offsets win: faust's loop let a late delivery overwrite them, and the messages
        reread after the seek were then dropped as already read).
        Relies on: `_read_offset` (faust's last delivered offset per partition)."""
        if epoch != self._seek_epoch:
            return
        self._read_offset[tp] = offset
        if self.app.topics.acks_enabled_for(tp.topic):
            self._expected[tp] = offset + 1
