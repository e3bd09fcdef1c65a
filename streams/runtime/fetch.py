"""The fetch: a fetched record is never dropped silently.

faust's `Consumer.getmany` drops the rest of a fetched batch when the flow stops or the
consumer generation changes while it is being handed out, and any record of a partition
that is not active at that moment (paused, or its agent's queue full) — but the broker
client's position has already moved past them. A rebalance seeks every partition back
to its committed offset, which covers most of these; a drop between that seek and the
flow resuming (a worker's start) was never read again, and the partition's committed
offset stayed behind until new messages came. Here each such partition is sought back
to its first dropped record.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import ClassVar

from faust.types import TP, Message

from streams.runtime.seeks import DeferredSeeks

# One log for every part of the worker's consumer (streams.runtime.consumer).
log = logging.getLogger("streams.runtime.consumer")


class RereadDropped(DeferredSeeks):
    """faust's aiokafka Consumer whose fetch seeks back to what it could not hand out."""

    # The faust internals this mixin overrides and reads (checked at start, see
    # streams.runtime.versions.check_internals).
    OVERRIDES: ClassVar[tuple[str, ...]] = ("getmany",)
    PRIVATES: ClassVar[tuple[str, ...]] = (
        "_wait_next_records", "_to_message", "_buffered_partitions",
    )  # fmt: skip

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        """faust's getmany, except that a fetched record is never dropped silently.

        Corrects faust's `Consumer.getmany` (see the module docstring): where it
        `break`s out of a fetched batch (the flow stopped, the generation changed) or
        skips a record of a partition that is not active, here the record's partition
        is remembered with its offset, its later records are skipped too (to be reread
        in order), and each partition still assigned in the same generation is sought
        back there (`_rewind`; a new generation's rebalance seeks itself). Called while
        the flow is stopped, it seeks to the committed offsets, as faust's does.
        Relies on: `_wait_next_records` (faust's wait for the flow and fetch of the
        active partitions), `_to_message` (record to ConsumerMessage),
        `_buffered_partitions` (partitions faust delivers although not active), and
        `scheduler.iterate` (faust's round-robin over the fetched partitions)."""
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
                         tp.topic, tp.partition, offset,
                         extra={"topic": tp.topic, "partition": tp.partition})
                await self.seek(tp, offset)
