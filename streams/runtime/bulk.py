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
* The consumer that feeds it is streams.runtime.consumer's.

Not fed to faust's sensors per message (Monitor's messages_received and the like do
not count bulk messages); the processor keeps its own counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

import faust
from faust.types import Message

from streams.runtime.failfast import or_exit

log = logging.getLogger(__name__)

BulkHandler = Callable[[list[Message]], Awaitable[None]]


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
        self.first_put_at: float | None = None  # wall time of the first message
        self._nonempty = asyncio.Event()
        self._batch_ready = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self.clears = 0

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

    async def put(self, value: Message) -> bool:
        """Add one message, waiting while the buffer is full — unless the buffer was
        cleared meanwhile: added after the messages cleared before it, it would be
        processed before their reread (the worker's consumer reads it again too).
        Answers whether it was added."""
        clears = self.clears
        while self.full():
            await self._space.wait()
        if clears != self.clears:
            return False
        self.put_nowait_enhanced(value)
        return True

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
        nothing here was acked, so it is read again from the committed offsets; the
        worker's consumer notes what was dropped, see streams.runtime.consumer)."""
        self.messages = []
        self.bytes = 0
        self.clears += 1
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
        """Called by the conductor when the buffer is full: wait for room. A message the
        buffer does not take (a rebalance cleared it meanwhile) is reported to the
        worker's consumer as dropped, like those the clear dropped: the conductor
        counted this channel's share of it, and a share never acked nor reported kept
        the rebalance waiting for it forever."""
        if not await self.bulk.put(value):
            note_cleared = getattr(self.app.consumer, "note_cleared", None)
            if note_cleared is not None:
                note_cleared([value])


class BulkConsumer:
    """The messages of `topics`, in lists, to `handler`; acked when it returns.

    Create it before the app starts (the topics must be in the first subscription).
    `handler` gets the messages in arrival order (offset order within a partition), at
    most `max_batch` messages and `max_batch_bytes` bytes of values at a time; it waits
    up to `within_s` for a batch to fill. If it raises, the error is logged and the
    batch is not acked (its offsets are not committed) — but later batches of the same
    partitions are, and faust commits past a single unacked offset, so this project's
    agents wrap their handlers in streams.runtime.failfast.or_exit, which ends the
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
            # Another agent of the topic may have tracked them: the worker's consumer
            # stops waiting for them once only this share is left (streams.runtime.consumer).
            note_cleared = getattr(app.consumer, "note_cleared", None)
            if note_cleared is not None:
                kept = set(map(id, fresh))
                note_cleared([m for m in messages if id(m) not in kept])
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


def consume_in_bulk(
    app: faust.App,
    topics: Iterable[str],
    process: BulkHandler,
    *,
    doing: str,
    max_batch: int,
    within_s: float,
    name: str,
    on_revoke: Callable[[set[Any]], Any] | None = None,
    max_batch_bytes: int | None = None,
) -> BulkConsumer:
    """How every agent consumes: `process` gets lists of raw messages of `topics` (at
    most `max_batch` of them and, if given, `max_batch_bytes` of values); a
    failure stops the worker without committing (streams.runtime.failfast, the log
    says it failed while `doing`); `on_revoke` hears of partitions taken away."""

    async def handle(messages: list[Message]) -> None:
        await or_exit(process(messages), doing)

    sizes = {} if max_batch_bytes is None else {"max_batch_bytes": max_batch_bytes}
    consumer = BulkConsumer(
        app, topics, handle, max_batch=max_batch, within_s=within_s, name=name, **sizes
    )
    if on_revoke is not None:
        revoked_hook = on_revoke

        async def revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
            result = revoked_hook(revoked)
            if asyncio.iscoroutine(result):
                await result

        app.on_partitions_revoked.connect(revoked)  # type: ignore[arg-type]
    return consumer
