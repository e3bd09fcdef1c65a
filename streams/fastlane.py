"""Bulk consumption for Faust: hand lists of raw messages to a processor, without
building a Faust Event per message and without the per-message stream machinery.

Why: a Faust agent pays about 100 µs of framework per message (the consumer's
per-message `wait_first`, the conductor, an Event, a queue, the Stream iterator, its
acks and sensors); a processor that works on batches only needs the messages. What
stays Faust's: the consumer group and partition assignment, table recovery, the
conductor that delivers each message to every channel of its topic (so an ordinary
agent can share a topic with a bulk one), and the offset commits, which cover only
acked messages.

* `BulkTopic` is a faust Topic whose decode is the identity (the message itself)
  and whose "queue" is a `BulkBuffer`: the conductor appends messages to a list.
* `BulkConsumer` owns one BulkTopic and a task (started with the app, after table
  recovery) that takes the buffered messages in lists of up to `max_batch`, tracks
  them as in flight (so a rebalance or a shutdown waits for them, as it waits for a
  stream's current event), awaits the processor, and only then acks them: message
  refcount and `Consumer.ack`, as faust's Stream.ack does, so a commit never covers a
  message whose batch was not fully processed. Outputs the processor queued are
  safe too: faust flushes the producer before it commits offsets (at-least-once).
* `FastDrainConsumer` (installed by `install`) is faust's aiokafka Consumer with one
  change to its fetch loop, see there.

Not fed to faust's sensors per message (Monitor's messages_received and the like do
not count bulk messages); the processor keeps its own counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, Message
from mode import Service, ServiceT

from streams.stall_guard import PartitionProgress, StallGuard

log = logging.getLogger(__name__)

BulkHandler = Callable[[list[Message]], Awaitable[None]]
# While dropped messages wait for other channels' acks, how often to look again.
RELEASE_EVERY_S = 0.2


class BulkBuffer:
    """Stands in for a channel's queue: the conductor appends messages here
    (`put_nowait_enhanced`, or `put` once it is full), the drainer takes lists.

    A batch is at most `batch` messages and `batch_bytes` bytes of values (at least one
    message); the buffer holds up to four batches' worth, then the conductor waits."""

    def __init__(self, batch: int, batch_bytes: int) -> None:
        self.batch = batch
        self.batch_bytes = batch_bytes
        self.maxsize = 4 * batch
        self.max_bytes = 4 * batch_bytes
        self.messages: list[Message] = []
        self.bytes = 0
        # Dropped by `clear` and not acked: see BulkConsumer._release.
        self.dropped: list[Message] = []
        self.first_put_at: float | None = None  # wall time of the first message
        self._nonempty = asyncio.Event()
        self._batch_ready = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()

    def __len__(self) -> int:
        return len(self.messages)

    def full(self) -> bool:
        """Whether the conductor must wait (`put`) before adding more."""
        return len(self.messages) >= self.maxsize or self.bytes >= self.max_bytes

    def empty(self) -> bool:
        """Whether nothing is buffered."""
        return not self.messages

    def put_nowait_enhanced(self, value: Message, **_pressure_callbacks: Any) -> None:
        """Add one message (the conductor's call; the pressure callbacks are not
        needed: a full buffer makes the conductor wait in `put`)."""
        messages = self.messages
        messages.append(value)
        self.bytes += value.serialized_value_size
        n = len(messages)
        if n == 1:
            self._nonempty.set()
            if self.first_put_at is None:
                self.first_put_at = time.time()
        if n >= self.batch or self.bytes >= self.batch_bytes:
            self._batch_ready.set()
            if self.full():
                self._space.clear()

    async def put(self, value: Message) -> None:
        """Add one message, waiting while the buffer is full."""
        while self.full():
            await self._space.wait()
        self.put_nowait_enhanced(value)

    async def wait(self, within: float) -> None:
        """Wait for a message; then for a full batch, `within` seconds at a time, for
        as long as each wait brought at least an eighth of a batch's messages more (a
        backlog of many messages is being delivered: a fuller batch means fewer writes
        per key; nine waits at most). Messages are delivered by the same event loop
        that processes the batches, so right after a batch the buffer holds little even
        when the input is far ahead. Large messages (few per batch) are not waited for
        beyond the first `within`: the processor would sit idle while they arrive."""
        if not self.messages:
            await self._nonempty.wait()
        if within <= 0:
            return
        step = max(1, self.batch // 8)
        while not self._batch_ready.is_set():
            count = len(self.messages)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._batch_ready.wait(), within)
            if len(self.messages) - count < step:
                return

    def take(self) -> list[Message]:
        """Remove and answer the oldest batch (see the class docstring)."""
        messages = self.messages
        if len(messages) <= self.batch and self.bytes <= self.batch_bytes:
            taken, self.messages, self.bytes = messages, [], 0
        else:
            limit, size, cut = self.batch_bytes, 0, 0
            for message in messages[: self.batch]:
                size += message.serialized_value_size
                if size > limit and cut:
                    size -= message.serialized_value_size
                    break
                cut += 1
            taken, self.messages = messages[:cut], messages[cut:]
            self.bytes -= size
        if not self.messages:
            self._nonempty.clear()
        if len(self.messages) < self.batch and self.bytes < self.batch_bytes:
            self._batch_ready.clear()
        if not self.full():
            self._space.set()
        return taken

    def clear(self) -> None:
        """Drop everything buffered (faust's flow control does this on a rebalance:
        nothing here was acked, so it is read again from the committed offsets)."""
        self.dropped.extend(self.messages)
        self.messages = []
        self.bytes = 0
        self._nonempty.clear()
        self._batch_ready.clear()
        self._space.set()


class _Undecoded:
    """Key and value type of a BulkTopic: its "events" are the raw messages. Unlike
    any real type, so that the conductor never hands a raw message to another
    channel of the same topic in place of that channel's own decoded event."""


class BulkTopic(faust.Topic):
    """A topic whose conductor deliveries go, undecoded, to a BulkBuffer."""

    def __init__(self, app: faust.App, topics: Iterable[str], buffer: BulkBuffer) -> None:
        super().__init__(
            app,
            topics=list(topics),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            acks=True,
            queue=cast(Any, buffer),
        )
        self.key_type = self.value_type = cast(Any, _Undecoded)
        self.bulk = buffer

    def _compile_decode(self) -> None:
        """No decoder: see decode."""

    async def decode(self, message: Message, *, propagate: bool = False) -> Any:
        """The message itself: the processor reads message.value."""
        return message

    async def put(self, value: Any) -> None:
        """Called by the conductor when the buffer is full: wait for room."""
        await self.bulk.put(value)


class BulkConsumer:
    """The messages of `topics`, in lists, to `handler`; acked when it returns.

    Create it before the app starts (the topics must be in the first subscription).
    `handler` gets the messages in arrival order (offset order within a partition), at
    most `max_batch` messages and `max_batch_bytes` bytes of values at a time; it waits
    up to `within_s` for a batch to fill. If it raises, the error is logged and the
    batch is not acked (its offsets are not committed) — but later batches of the same
    partitions are, and faust commits past a single unacked offset, so this project's
    agents wrap their handlers in streams.agents.failfast.or_exit, which ends the
    process instead.
    """

    def __init__(
        self,
        app: faust.App,
        topics: Iterable[str],
        handler: BulkHandler,
        *,
        max_batch: int,
        within_s: float,
        name: str,
        max_batch_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.app = app
        self.handler = handler
        self.within_s = within_s
        self.name = name
        self.buffer = BulkBuffer(max_batch, max_batch_bytes)
        self.topic = BulkTopic(app, topics, self.buffer)
        self.batches = 0
        self.messages = 0
        self.failed_batches = 0
        self.stale_dropped = 0
        app.flow_control.manage_queue(cast(Any, self.buffer))
        app.topics.add(self.topic)
        app.task(self._run)

    async def _run(self) -> None:
        buffer = self.buffer
        while True:
            if buffer.dropped:
                self._release()
            if buffer.dropped:
                # Check them again soon, even if no message comes (a rebalance).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(buffer.wait(self.within_s), RELEASE_EVERY_S)
                if not buffer.messages:
                    continue
            else:
                await buffer.wait(self.within_s)
            # No reference to a delivered batch may outlive its delivery: faust's
            # consumer tracks in-flight messages in a WeakSet, and a message another
            # channel of its topic never acks (its queue was cleared by a rebalance)
            # leaves that set only when it is garbage. A batch kept alive here made
            # the rebalance wait for it forever.
            await self._deliver_current(buffer.take())

    async def _deliver_current(self, taken: list[Message]) -> None:
        messages = self._current(taken)
        del taken
        if messages:
            await self.deliver(messages)

    def _release(self) -> None:
        """Stop the consumer waiting for messages this channel dropped.

        A message dropped here (a rebalance cleared the buffer, or it was fetched before
        one) is never acked by this channel, so it is never committed. But another
        channel of its topic (an ordinary agent) may have tracked it as in flight, and
        faust's rebalance waits until every tracked message is acked or garbage
        collected — an agent that keeps its last batch referenced (an `async for` loop
        variable) kept it alive, and the rebalance waited forever. Once this channel's
        share is the only one left, nobody will ack it: it is untracked."""
        unacked = self.app.consumer.unacked
        waiting = []
        for message in self.buffer.dropped:
            if message.acked or message not in unacked:
                continue  # nobody waits for it
            if message.refcount <= 1:
                unacked.discard(message)
            else:
                waiting.append(message)  # another channel is still on it
        self.buffer.dropped = waiting

    def _current(self, messages: list[Message]) -> list[Message]:
        """Drop messages fetched before the latest rebalance (faust's Stream skips them
        too); they are read again from the committed offsets."""
        app = self.app
        generation = app.consumer_generation_id
        if app.flow_control.is_active() and all(
            m.generation_id == generation for m in messages
        ):
            return messages
        fresh = [m for m in messages if m.generation_id == generation]
        if not app.flow_control.is_active():
            fresh = []
        if len(fresh) < len(messages):
            kept = set(map(id, fresh))
            self.buffer.dropped.extend(m for m in messages if id(m) not in kept)
        self.stale_dropped += len(messages) - len(fresh)
        return fresh

    async def deliver(self, messages: list[Message]) -> None:
        """Track `messages` as in flight, process them, then ack them."""
        consumer = self.app.consumer
        unacked = consumer.unacked
        for message in messages:
            if not message.tracked:
                message.tracked = True
                unacked.add(message)
        processed = False
        try:
            await self.handler(messages)
            processed = True
        except asyncio.CancelledError:
            raise
        except Exception:
            self.failed_batches += 1
            log.exception("%s: a batch of %d messages failed; not acked", self.name,
                          len(messages))
        finally:
            if processed:
                for message in messages:
                    message.ack(consumer)
                self.batches += 1
                self.messages += len(messages)
            else:
                # Not acked: the offsets stay uncommitted. Untracked, so that a
                # rebalance or a shutdown does not wait for them forever.
                for message in messages:
                    unacked.discard(message)


# --------------------------------------------------------------------------- consumer


class FastDrainConsumer(aiokafka_driver.Consumer):
    """faust's aiokafka Consumer, with one change to `_drain_messages` (the fetch loop).

    faust delivers every fetched message with
    `await self.wait_first(callback(message), self.suspend_flow.wait())`: four tasks
    (the delivery, suspend_flow, stopped, crashed), an asyncio.wait and three
    cancellations per message, so that a delivery blocked on a full agent queue can
    be abandoned when a rebalance suspends the flow. That was the largest single cost
    of a busy worker. Here the delivery is awaited directly while the flow is not
    suspended; when it is, faust's `wait_first` is used, exactly as before. A
    delivery blocked when a rebalance starts ends as it did before: faust stops the
    fetcher (cancelling it) before it revokes partitions, and clears the queues.
    Everything else is faust 0.15.3's loop unchanged.
    """

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
                            epoch = self._seek_epoch
                            if suspended():
                                await self.wait_first(callback(message), self.suspend_flow.wait())
                            else:
                                # The one change: see the class docstring.
                                await callback(message)
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

    _seek_epoch = 0  # counts seeks: a delivery that spans one must not move the offsets

    @property
    def _expected(self) -> dict[TP, int]:
        """Per partition, the next offset to deliver."""
        expected: dict[TP, int] | None = self.__dict__.get("_expected_offsets")
        if expected is None:
            expected = self.__dict__["_expected_offsets"] = {}
        return expected

    async def _in_order(self, tp: TP, message: Message) -> bool:
        """Whether `message` is the next to deliver of its partition. One fetched before
        a rebalance is not (the rebalance rereads from the committed offsets); after a
        jump past the expected offset, the partition is reread from there."""
        if message.generation_id != self.app.consumer_generation_id:
            return False
        if not self.app.topics.acks_enabled_for(message.topic):
            return True  # table changelogs: compacted, with gaps of their own
        want = self._expected.get(tp)
        if want is None or message.offset <= want:
            return True  # below: faust's read offset drops the duplicate
        if tp in self._jumped:
            return False  # the rest of the fetch that jumped
        if self._rewound.get(tp) == (self._seek_epoch, want):
            # Reread from `want` and this came first: those offsets do not exist
            # (transaction markers, compaction).
            return True
        log.info("rereading %s[%d] from %d: offset %d came first",
                 tp.topic, tp.partition, want, message.offset)
        self._jumped.add(tp)
        await self.seek(tp, want)
        self._rewound[tp] = (self._seek_epoch, want)
        return False

    @property
    def _rewound(self) -> dict[TP, tuple[int, int]]:
        """Per partition, its last reread: (seek epoch, offset)."""
        rewound: dict[TP, tuple[int, int]] | None = self.__dict__.get("_rewound_at")
        if rewound is None:
            rewound = self.__dict__["_rewound_at"] = {}
        return rewound

    @property
    def _jumped(self) -> set[TP]:
        """Partitions reread since the current fetch began (getmany clears it)."""
        jumped: set[TP] | None = self.__dict__.get("_jumped_tps")
        if jumped is None:
            jumped = self.__dict__["_jumped_tps"] = set()
        return jumped

    def _delivered(self, tp: TP, offset: int, epoch: int) -> None:
        """Record `offset` as delivered, unless a seek happened while it was (the seek's
        offsets win: faust's loop let a late delivery overwrite them, and the messages
        reread after the seek were then dropped as already read)."""
        if epoch != self._seek_epoch:
            return
        self._read_offset[tp] = offset
        if self.app.topics.acks_enabled_for(tp.topic):
            self._expected[tp] = offset + 1

    async def seek(self, partition: TP, offset: int) -> None:
        """faust's seek; delivery goes on from `offset`."""
        await super().seek(partition, offset)
        self._seek_epoch += 1
        self._expected[partition] = offset

    async def perform_seek(self) -> None:
        """faust's seek of every partition to its committed offset (a rebalance);
        delivery goes on from there."""
        committed = await self.seek_to_committed()
        self._read_offset.update(
            {tp: offset if offset is not None and offset >= 0 else None
             for tp, offset in committed.items()}
        )
        self._committed_offset.update(
            {tp: offset if offset else None
             for tp, offset in committed.items() if offset is not None}
        )
        self._seek_epoch += 1
        self._expected.clear()
        self._expected.update(
            {tp: offset for tp, offset in committed.items() if offset is not None and offset >= 0}
        )

    def _new_offset(self, tp: TP) -> int | None:
        """faust's next offset to commit, except that a missing offset right at the
        committed one stops it (faust passed over exactly one)."""
        acked = self._acked[tp]
        committed = self._committed_offset[tp]
        if acked and committed is not None and not self._gap[tp] and min(acked) > committed:
            return None
        return cast(int | None, super()._new_offset(tp))

    # ---- messages cleared from agents' queues at a rebalance ---------------------------
    # A message shared by two agents is acked (final) only when both acked it. When a
    # rebalance clears one agent's queue, that agent's share is never acked, while the
    # other agent read (tracked) the message: faust's rebalance then waited for it
    # forever. Once only cleared shares are left, the message is untracked — not acked:
    # it is not committed, and the rebalance rereads it from the committed offset.

    @property
    def _cleared(self) -> dict[int, tuple[Message, int]]:
        """Messages cleared from queues at the last rebalance: (message, shares)."""
        cleared: dict[int, tuple[Message, int]] | None = self.__dict__.get("_cleared_msgs")
        if cleared is None:
            cleared = self.__dict__["_cleared_msgs"] = {}
        return cleared

    def note_cleared(self, messages: Iterable[Message]) -> None:
        """Record `messages` as dropped from one agent's queue each."""
        cleared = self._cleared
        for message in messages:
            _, shares = cleared.get(id(message), (message, 0))
            cleared[id(message)] = (message, shares + 1)
        self._release_cleared()

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
        self._jumped.clear()
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
        # The agents' queues hold events (the bulk buffer, messages: its own release).
        dropped = [
            item.message
            for queue in list(cast(Any, flow_control)._queues)
            if not isinstance(queue, BulkBuffer)
            for item in list(getattr(queue, "_queue", ()))
            if isinstance(getattr(item, "message", None), Message)
        ]
        clear_queues()
        if dropped:
            cast(FastDrainConsumer, app.consumer).note_cleared(dropped)

    flow_control.clear = clear_and_note  # type: ignore[method-assign]


# How long a partition must stay behind its end with nothing in flight before it is
# read again (streams.stall_guard), and how often that is checked.
STALL_AFTER_S = 15.0
STALL_CHECK_S = 2.0


def guard_stalled_partitions(app: faust.App, after_s: float = STALL_AFTER_S) -> StallGuard[TP]:
    """Read again, from its committed offset, any input partition that stays behind its
    end with nothing of it in flight (see streams.stall_guard for why that happens)."""
    guard: StallGuard[TP] = StallGuard(after_s)

    @app.timer(STALL_CHECK_S)
    async def _reread_stalled_partitions() -> None:
        consumer = cast(FastDrainConsumer, app.consumer)
        if (app.rebalancing or app.in_recovery or not app.flow_control.is_active()
                or not consumer.flow_active):
            guard.reset()
            return
        generation = app.consumer_generation_id
        stalled = guard.check(partition_progress(app), time.monotonic())
        for tp in stalled:
            committed = consumer._committed_offset.get(tp)
            if committed is None or app.consumer_generation_id != generation:
                continue
            log.warning(
                "%s[%d] stayed at committed offset %d, behind its end, with nothing in "
                "flight for %.0f s: reading it again from there", tp.topic, tp.partition,
                committed, after_s,
            )
            await consumer.seek(tp, committed)

    return guard


def partition_progress(app: faust.App) -> dict[TP, PartitionProgress]:
    """Each assigned input partition's committed offset, end, and messages in flight
    (queued for an agent, being processed, or acked and not yet committed)."""
    consumer = cast(FastDrainConsumer, app.consumer)
    in_flight: dict[TP, int] = {}
    for tp, offsets in consumer._acked.items():
        committed = consumer._committed_offset.get(tp)
        if offsets and (committed is None or min(offsets) <= committed):
            in_flight[tp] = len(offsets)  # committed at the next commit
        # else a missing offset holds them back: nothing in flight will fill it
    for message in list(consumer.unacked):
        if not message.acked:
            in_flight[message.tp] = in_flight.get(message.tp, 0) + 1
    for channel in list(cast(Any, app.topics)._topics):
        queue = channel.queue
        queued = queue.messages if isinstance(queue, BulkBuffer) else list(queue._queue)
        for item in queued:
            queued_tp = getattr(getattr(item, "message", item), "tp", None)
            if queued_tp is not None:
                in_flight[queued_tp] = in_flight.get(queued_tp, 0) + 1
    progress = {}
    for tp in consumer.assignment():
        if consumer._is_changelog_tp(tp):
            continue  # read by table recovery, not by agents
        progress[tp] = PartitionProgress(
            committed=consumer._committed_offset.get(tp),
            highwater=consumer.highwater(tp),
            in_flight=in_flight.get(tp, 0),
        )
    return progress


def keep_root_log_level(app: faust.App, level: str) -> None:
    """Put the root logger back at `level` once the worker has set up logging.

    faust.Worker sets the root logger to DEBUG to feed its terminal spinner (when its
    log level is WARN or above), so every log.debug in faust, mode and aiokafka built a
    LogRecord and ran the handlers (about a tenth of a busy worker's time).
    """
    wanted = logging.getLevelName(level.upper())

    @app.task
    async def _restore_root_level() -> None:
        root = logging.getLogger()
        if isinstance(wanted, int) and root.level < wanted:
            root.setLevel(wanted)


