"""The worker's timer that feeds the stall guard (streams.runtime.stall_guard): which
input partitions are behind their end with nothing in flight, read from the worker's
consumer (streams.runtime.consumer) and its agents' queues, and the reread of those
the guard calls stalled (a seek of the consumer: made by its fetch loop, see
streams.runtime.seeks).

faust has no such guard. The timer reads faust internals of the consumer (PRIVATES),
which the consumer checks with its own when it is created
(streams.runtime.versions.check_internals).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import faust
from faust.types import TP

from streams.runtime.bulk import BulkBuffer
from streams.runtime.stall_guard import PartitionProgress, StallGuard

if TYPE_CHECKING:
    from streams.runtime.consumer import OrderedConsumer

log = logging.getLogger(__name__)

# faust's internals read here, from the worker's consumer: its committed offsets
# (`_committed_offset`), acked offsets (`_acked`), which partitions are table changelogs
# (`_is_changelog_tp`), and the conductor's channels (`app.topics._topics`); each
# channel's queue is read through asyncio.Queue's `_queue` (the standard library's).
PRIVATES: tuple[str, ...] = (
    "_committed_offset", "_acked", "_is_changelog_tp", "app.topics._topics",
)  # fmt: skip


# How long a partition must stay behind its end with nothing in flight before it is
# read again (streams.runtime.stall_guard), and how often that is checked. A check asks
# the broker for offsets through the consumer's connection, where the request waits
# behind the fetch in progress (up to faust's 1.5 s fetch wait): checking more often
# than every few seconds would make the timer overlap itself on an idle worker.
STALL_AFTER_S = 15.0
STALL_CHECK_S = 5.0


def guard_stalled_partitions(app: faust.App, after_s: float = STALL_AFTER_S) -> StallGuard[TP]:
    """Read again, from its committed offset (its first offset when nothing is committed
    yet), any input partition that stays behind its end with nothing of it in flight
    (see streams.runtime.stall_guard for why that happens)."""
    guard: StallGuard[TP] = StallGuard(after_s)

    @app.timer(STALL_CHECK_S)
    async def _reread_stalled_partitions() -> None:
        consumer = cast("OrderedConsumer", app.consumer)
        if (app.rebalancing or app.in_recovery or not app.flow_control.is_active()
                or not consumer.flow_active):
            guard.reset()
            return
        generation = app.consumer_generation_id
        # Only a partition with nothing in flight can be stalled: the broker is asked
        # for those only (none while every partition has work).
        in_flight = messages_in_flight(app)
        idle = [tp for tp in consumer.assignment()
                if not consumer._is_changelog_tp(tp) and not in_flight.get(tp)]
        ends: Mapping[TP, int] = {}
        starts: Mapping[TP, int] = {}
        if idle:
            unstarted = [tp for tp in idle if consumer._committed_offset.get(tp) is None]
            try:
                # Both asked at once: each waits behind the fetch in progress.
                ends, starts = await asyncio.gather(
                    consumer.highwaters(*idle),
                    consumer.earliest_offsets(*unstarted) if unstarted else _no_offsets(),
                )
            except Exception as exc:  # the broker is unreachable: the next round asks again
                log.info("reading end offsets for the stall guard failed: %r", exc)
                return
        if app.consumer_generation_id != generation:
            return
        progress = partition_progress(app, ends, starts, in_flight)
        for tp in guard.check(progress, time.monotonic()):
            start = progress[tp].committed
            if start is None or app.consumer_generation_id != generation:
                continue
            log.warning(
                "%s[%d] stayed at offset %d, behind its end %s, with nothing in flight for "
                "%.0f s: reading it again from there", tp.topic, tp.partition, start,
                progress[tp].end, after_s,
                extra={"topic": tp.topic, "partition": tp.partition},
            )
            await consumer.seek(tp, start)

    return guard


async def _no_offsets() -> Mapping[TP, int]:
    return {}


def partition_progress(
    app: faust.App,
    ends: Mapping[TP, int],
    starts: Mapping[TP, int],
    in_flight: Mapping[TP, int] | None = None,
) -> dict[TP, PartitionProgress]:
    """The committed offset (from `starts`, its first offset, when nothing is committed
    yet), end offset and messages in flight (`messages_in_flight`) of each assigned
    input partition that `ends` has."""
    consumer = cast("OrderedConsumer", app.consumer)
    if in_flight is None:
        in_flight = messages_in_flight(app)
    progress = {}
    for tp in consumer.assignment():
        if consumer._is_changelog_tp(tp) or tp not in ends:
            continue  # changelogs are read by table recovery, not by agents
        committed = consumer._committed_offset.get(tp)
        progress[tp] = PartitionProgress(
            committed=starts.get(tp) if committed is None else committed,
            end=ends[tp],
            in_flight=in_flight.get(tp, 0),
        )
    return progress


def messages_in_flight(app: faust.App) -> dict[TP, int]:
    """Per input partition, its messages queued for an agent, being processed, or acked
    and not yet committed."""
    consumer = cast("OrderedConsumer", app.consumer)
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
    return in_flight
