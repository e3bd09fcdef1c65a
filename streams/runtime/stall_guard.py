"""Which input partitions are stalled: behind their end, with nothing on the way.

A partition whose committed offset stays below its end offset while nothing of it
is in flight (no message waiting in an agent's queue, none being processed, none acked
and not yet committed) will never commit again on its own: the consumer's position is
past messages no agent received. faust can end up there around a worker's start (its
fetch loop drops records fetched while a partition is not deliverable, after the
client's position moved past them; the rebalance's seek to the committed offsets can
run before the last such drop). Nothing tells it apart from a slow agent but time, so a
partition is called stalled only after it stayed exactly so for `after_s` seconds; the
worker then reads it again from its committed offset. Every agent of this project
tolerates reading a message twice (ledgers, applied offsets, ids), so a false alarm
costs a re-read, never a duplicate.

The end offsets come from the broker, not from the last fetch: a partition the
consumer no longer fetches has no fresh high watermark, and a partition nothing was
committed for yet counts from its first offset, so neither hides a stall.

Pure logic, no faust: the worker's timer feeds it snapshots (streams.runtime.stall_timer).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["PartitionProgress", "StallGuard"]

K = TypeVar("K", bound=Hashable)  # a partition's name


@dataclass(frozen=True)
class PartitionProgress:
    """One partition as the consumer sees it at one moment."""

    # Where a reread starts: the next offset to commit, or the partition's first offset
    # when nothing is committed yet (None: unknown).
    committed: int | None
    end: int | None  # the partition's end offset, as the broker reports it (None: unknown)
    in_flight: int  # its messages queued, being processed, or acked but not committed


class StallGuard(Generic[K]):
    """Names the partitions that stayed stalled for `after_s` seconds."""

    def __init__(self, after_s: float) -> None:
        """A guard that waits `after_s` seconds before calling a partition stalled."""
        if after_s <= 0:
            raise ValueError(f"after_s must be > 0, got {after_s!r}")
        self.after_s = after_s
        # partition -> (the progress first seen stalled, when)
        self._since: dict[K, tuple[PartitionProgress, float]] = {}

    def check(self, progress: Mapping[K, PartitionProgress], now: float) -> list[K]:
        """The partitions to read again from their committed offsets, given each one's
        progress at `now` (seconds, monotonic). A partition is returned once per stall:
        its clock starts again."""
        stalled: list[K] = []
        since = self._since
        for tp in list(since):
            if tp not in progress:
                del since[tp]  # revoked
        for tp, p in progress.items():
            behind = (
                p.committed is not None
                and p.end is not None
                and p.end > p.committed
                and p.in_flight == 0
            )
            if not behind:
                since.pop(tp, None)
                continue
            first = since.get(tp)
            if first is None or first[0] != p:
                since[tp] = (p, now)  # newly behind, or it moved: start the clock
            elif now - first[1] >= self.after_s:
                stalled.append(tp)
                del since[tp]
        return stalled

    def reset(self) -> None:
        """Forget everything (a rebalance: positions are sought anew)."""
        self._since.clear()
