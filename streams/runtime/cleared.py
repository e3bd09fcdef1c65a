"""Messages cleared from the agents' queues by faust's flow control: read again.

faust clears every agent's queue (`FlowControlEvent.clear`) when a rebalance starts and
each time its flow control resumes — which it also does while the agents run (table
recovery of standby partitions, the end of a recovery right after the seek to the
committed offsets). A cleared message was delivered: the client's position is past it,
and the messages after it reach the agents without it, so an agent that skips offsets
at or below the last it applied would skip it for good. Its partition is read again
from the first cleared offset.

A message shared by two agents is acked (final) only when both acked it; once only
cleared shares are left it is untracked — not acked, so a rebalance no longer waits for
it, and it is not committed.

`note_flow_control_clears` hooks faust's flow control so that every clear is counted
and reported to the consumer (`RereadCleared.note_cleared`); a bulk agent's buffer
reports the stale messages it drops itself (streams.runtime.bulk).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, ClassVar, cast

import faust
from faust.exceptions import ConsumerNotStarted
from faust.types import TP, Message

from streams.runtime.bulk import BulkBuffer
from streams.runtime.seeks import DeferredSeeks

# One log for every part of the worker's consumer (streams.runtime.consumer).
log = logging.getLogger("streams.runtime.consumer")


class RereadCleared(DeferredSeeks):
    """faust's aiokafka Consumer that reads again what flow control cleared."""

    # The faust internals this mixin overrides and reads (checked at start, see
    # streams.runtime.versions.check_internals); `note_flow_control_clears` also reads
    # each queue's `_queue` (asyncio.Queue's deque).
    OVERRIDES: ClassVar[tuple[str, ...]] = ("_clean_unacked_messages",)
    PRIVATES: ClassVar[tuple[str, ...]] = (
        "_unacked_messages", "app.flow_control._queues",
    )  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Messages cleared from agents' queues at a rebalance: (message, shares).
        self._cleared: dict[int, tuple[Message, int]] = {}
        self.clears = 0  # how many times faust's flow control cleared the agents' queues

    def note_cleared(self, messages: Iterable[Message]) -> None:
        """Record `messages` as dropped from one agent's queue each, and read their
        partitions again from the first dropped offset (those of the current consumer
        generation: an earlier one's are covered by its rebalance's seek).
        faust has no such step: its `FlowControlEvent.clear` drops the queued events
        and forgets them."""
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
        seek forward would undo). Table changelogs are left alone."""
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
                     tp.topic, tp.partition, offset,
                     extra={"topic": tp.topic, "partition": tp.partition})
            self._seek_later(tp, offset)

    def _release_cleared(self) -> None:
        """Untrack each cleared message whose only unacked shares are cleared ones.
        Relies on: `_unacked_messages` (faust's set of tracked, unacked messages, which
        a rebalance and a shutdown wait for) and `Message.refcount` (the agents that
        still hold it)."""
        unacked = self._unacked_messages
        for key, (message, shares) in list(self._cleared.items()):
            if message.acked or message not in unacked:
                del self._cleared[key]
            elif message.refcount <= shares:
                unacked.discard(message)
                del self._cleared[key]

    def _clean_unacked_messages(self) -> None:
        """faust's cleanup (called every second while a rebalance waits for in-flight
        messages), and the cleared messages no agent will ack.

        Corrects faust's `Consumer._clean_unacked_messages`, which drops only acked
        messages from `_unacked_messages`: a message shared by two agents and cleared
        from one's queue is never acked by it (its refcount stays above 0), so a
        rebalance's `wait_empty`, which loops until that set is empty, waited for it
        forever. Here, once only cleared shares are
        left, it is untracked (`_release_cleared`), neither acked nor committed."""
        super()._clean_unacked_messages()
        self._release_cleared()


def note_flow_control_clears(app: faust.App) -> None:
    """Make every clear of `app`'s flow control count (`RereadCleared.clears`) and report
    the messages it drops to the consumer (`RereadCleared.note_cleared`).

    Corrects faust's `FlowControlEvent.clear`, which empties every agent's queue and
    forgets what was in it (see the module docstring): here the queued messages are
    collected first, then faust's clear runs, then the consumer is told.
    Relies on: `FlowControlEvent._queues` (the queues it manages) and each faust
    queue's `_queue` (asyncio.Queue's deque of queued events)."""
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
        consumer = cast(RereadCleared, app.consumer)
        consumer.clears += 1
        if dropped:
            consumer.note_cleared(dropped)

    flow_control.clear = clear_and_note  # type: ignore[method-assign]
