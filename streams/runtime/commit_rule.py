"""The commit rule: a partition's committed offset never passes a message that was not
processed in the current assignment.

faust commits each partition up to the first missing offset of its acked ones, with two
exceptions that lose messages for this project (every agent skips offsets at or below
the last it applied, so an offset committed past is never processed): it passes over
exactly one missing offset right at the committed one, and over any number when
nothing was committed yet; and it records the acks its streams give to messages they
skip during a rebalance, which are read again after it.
"""

from __future__ import annotations

from typing import ClassVar, cast

from faust.types import TP, Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from streams.runtime.seeks import DeferredSeeks


class GaplessCommit(DeferredSeeks):
    """faust's aiokafka Consumer whose commit stops at a missing offset."""

    # The faust internals this mixin overrides and reads (checked at start, see
    # streams.runtime.versions.check_internals).
    OVERRIDES: ClassVar[tuple[str, ...]] = ("ack", "_new_offset")
    PRIVATES: ClassVar[tuple[str, ...]] = (
        "_acked", "_committed_offset", "_gap", "_unacked_messages", "_waiting_for_ack",
    )  # fmt: skip

    def ack(self, message: Message) -> bool:
        """faust's ack, except for a message fetched under an earlier assignment: it is
        no longer waited for, and not recorded for the commit (the rebalance reads it
        again from the committed offset; faust's streams ack the messages they skip).

        Corrects faust's `Consumer.ack`, which records any acked message's offset in
        `_acked` for the next commit, whatever its generation: a commit could then pass
        a message skipped at a rebalance before its reread was processed. Here such a
        message is only marked acked and untracked, under faust's `ack_lock`, as faust
        does, and whoever waits for acks is woken.
        Relies on: `_unacked_messages` (faust's tracked, unacked messages) and
        `_waiting_for_ack` (the future faust's `wait_empty` waits on)."""
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
        passed over exactly one, and over any number when nothing was committed.

        Corrects faust's `Consumer._new_offset`, which returns None (nothing to commit)
        only when the lowest acked offset is more than one past the committed one, and
        never when nothing is committed (`_committed_offset` None or 0). Here the
        committed offset, or else the partition's first offset (`_log_start`, set by
        the rebalance's seek, streams.runtime.seeks), must itself be acked, unless
        faust's `_gap` holds offsets known not to exist (then faust's rule applies).
        Relies on: `_acked` (acked offsets per partition), `_committed_offset`, `_gap`."""
        acked = self._acked[tp]
        committed = self._committed_offset[tp]
        if committed is None:
            committed = self._log_start.get(tp)
        if acked and committed is not None and not self._gap[tp] and min(acked) > committed:
            return None
        return cast(int | None, super()._new_offset(tp))
