"""streams.runtime.consumer (OrderedConsumer and its mixins) without a broker: the fetch
loop (direct delivery unless the flow is suspended, nothing else changed from faust's
loop but in-order delivery), in-order delivery and rereads, the commit that stops at a
missing offset, getmany's rereads, what the stall guard counts as in flight, and shared
messages cleared at a rebalance."""

from __future__ import annotations

import ast
import asyncio
import difflib
import inspect
import re
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import faust
from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from streams.runtime import delivery_order, stall_timer
from streams.runtime.consumer import OrderedConsumer
from streams.runtime.stall_guard import PartitionProgress, StallGuard
from tests.unit.runtime.faust_app import TOPIC, bulk_consumer, message


def test_install_makes_the_app_consume_with_the_ordered_consumer(app: faust.App) -> None:
    assert isinstance(app.consumer, OrderedConsumer)


class _Fetcher:
    def __init__(self) -> None:
        self._stopped = asyncio.Event()


def _drain(app: faust.App, suspended: bool) -> tuple[list[int], list[str], dict[Any, Any]]:
    consumer = app.consumer
    delivered: list[int] = []
    how: list[str] = []
    fetcher = _Fetcher()

    async def getmany(timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        for i in range(3):
            yield TP(TOPIC, 0), message(i)
        fetcher._stopped.set()  # one round only

    async def callback(msg: Any) -> None:
        delivered.append(msg.offset)

    async def wait_first(*coros: Any, **kwargs: Any) -> None:
        how.append("wait_first")
        await coros[0]
        coros[1].close()

    consumer.getmany = getmany  # type: ignore[method-assign]
    consumer.callback = callback
    consumer.wait_first = wait_first  # type: ignore[method-assign]
    if suspended:
        consumer.suspend_flow.set()
    asyncio.get_event_loop().run_until_complete(
        consumer._drain_messages(fetcher)  # type: ignore[arg-type]
    )
    return delivered, how, dict(consumer._read_offset)


def test_drain_delivers_directly_while_the_flow_runs(app: faust.App) -> None:
    delivered, how, offsets = _drain(app, suspended=False)
    assert delivered == [0, 1, 2]
    assert how == []
    assert offsets[TP(TOPIC, 0)] == 2


def test_drain_uses_faust_wait_first_when_the_flow_is_suspended(app: faust.App) -> None:
    delivered, how, _ = _drain(app, suspended=True)
    assert delivered == [0, 1, 2]
    assert how == ["wait_first"] * 3


def _code_lines(function: Any) -> list[str]:
    """The code of `function`, line by line, without comments or its docstring."""
    source = textwrap.dedent(inspect.getsource(function))
    body = ast.parse(source).body[0]
    assert isinstance(body, ast.FunctionDef | ast.AsyncFunctionDef)
    first = body.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        assert first.end_lineno is not None
        skipped = source.splitlines()
        del skipped[first.lineno - 1 : first.end_lineno]
        source = "\n".join(skipped)
    lines = []
    for line in source.splitlines():
        line = re.sub(r"\s+#.*$", "", line).rstrip()
        if line.strip() and not line.strip().startswith("#"):
            lines.append(line.strip())
    return lines


def test_drain_loop_differs_from_faust_only_where_intended() -> None:
    """If faust's loop changes (an upgrade), this fails: re-derive the patch."""
    ours = _code_lines(OrderedConsumer._drain_messages)
    theirs = _code_lines(FaustConsumer._drain_messages)
    changed = [
        line
        for line in difflib.unified_diff(theirs, ours, lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert sorted(changed) == sorted(
        [
            # one delivery: direct unless the flow is suspended
            "-await self.wait_first(",
            "-callback(message), self.suspend_flow.wait()",
            "-)",
            "+if suspended():",
            "+await self.wait_first(callback(message), self.suspend_flow.wait())",
            "+else:",
            "+await callback(message)",
            # a local for the check above
            "+suspended = self.suspend_flow.is_set",
            # in-order delivery (see InOrderDelivery._in_order and _delivered)
            "+if not await self._in_order(tp, message):",
            "+continue",
            "+epoch, clears = self._seek_epoch, self.clears",
            "-set_read_offset = self._read_offset.__setitem__",
            "-set_read_offset(tp, offset)",
            "+self._delivered(tp, offset, epoch)",
            # a delivery the queues were cleared during (see _undeliver)
            "+if clears != self.clears:",
            "+self._undeliver(tp, message)",
            "+else:",
            # seeks made between fetches (see DeferredSeeks.seek)
            "+await self._apply_seeks()",
            # the same code, formatted differently
            "-ait = cast(AsyncIterator, getmany(timeout=1.0))",
            "+ait = getmany(timeout=1.0)",
            "-if commit_every is not None:",
            "-if self._n_acked >= commit_every:",
            "+if commit_every is not None and self._n_acked >= commit_every:",
        ]
    ), changed


class _Record:
    def __init__(self, offset: int) -> None:
        self.offset = offset


def _getmany(
    app: faust.App,
    records: dict[TP, list[int]],
    active: set[TP] | None,
    on_yield: Any = None,
) -> tuple[list[tuple[TP, int]], dict[TP, int]]:
    """Run OrderedConsumer.getmany over `records` (offsets per partition): what it
    yielded, and where it sought back to."""
    consumer = app.consumer
    sought: dict[TP, int] = {}

    async def wait_next_records(timeout: float) -> tuple[Any, Any]:
        return {tp: [_Record(o) for o in offsets] for tp, offsets in records.items()}, active

    async def seek(tp: TP, offset: int) -> None:
        sought[tp] = offset

    consumer._wait_next_records = wait_next_records  # type: ignore[method-assign]
    consumer._to_message = lambda tp, record: (tp, record.offset)  # type: ignore[method-assign]
    consumer.highwater = lambda tp: 100  # type: ignore[method-assign]
    consumer.seek = seek  # type: ignore[method-assign]
    consumer.assignment = lambda: set(records)  # type: ignore[method-assign]
    consumer.flow_active = True
    yielded: list[tuple[TP, int]] = []

    async def run() -> None:
        async for _tp, msg in consumer.getmany(timeout=1.0):
            yielded.append(msg)
            if on_yield is not None:
                on_yield(consumer, len(yielded))

    asyncio.get_event_loop().run_until_complete(run())
    return yielded, sought


A, B = TP(TOPIC, 0), TP(TOPIC, 1)


def test_getmany_rereads_a_partition_fetched_while_not_active(app: faust.App) -> None:
    """faust dropped such records with the client's position already past them: the
    partition's committed offset then stayed behind (seen at a worker's start)."""
    yielded, sought = _getmany(app, {A: [5, 6, 7], B: [10, 11]}, active={B})
    assert yielded == [(B, 10), (B, 11)]
    assert sought == {A: 5}


def test_getmany_rereads_what_was_left_when_the_flow_stopped(app: faust.App) -> None:
    def stop_after_first(consumer: Any, n: int) -> None:
        consumer.flow_active = False

    yielded, sought = _getmany(app, {A: [5, 6], B: [10, 11]}, None, stop_after_first)
    assert len(yielded) == 1
    first_tp, first_offset = yielded[0]
    rest = {A: [5, 6], B: [10, 11]}
    rest[first_tp] = [o for o in rest[first_tp] if o > first_offset]
    assert sought == {tp: offsets[0] for tp, offsets in rest.items() if offsets}


def test_getmany_leaves_a_new_generation_to_the_rebalance(app: faust.App) -> None:
    def rebalance(consumer: Any, n: int) -> None:
        consumer.app.consumer_generation_id += 1

    yielded, sought = _getmany(app, {A: [5, 6, 7]}, None, rebalance)
    assert yielded == [(A, 5)]
    assert sought == {}  # faust seeks every partition to its committed offset itself


def test_getmany_delivers_everything_when_nothing_stands_in_the_way(app: faust.App) -> None:
    yielded, sought = _getmany(app, {A: [1, 2], B: [3]}, active={A, B})
    assert sorted(yielded) == [(A, 1), (A, 2), (B, 3)]
    assert sought == {}


def test_partition_progress_counts_what_is_in_flight(app: faust.App) -> None:
    """Queued for the bulk agent, tracked and not acked, or acked and not committed:
    each keeps its partition from being called stalled (streams.runtime.stall_guard)."""

    async def handler(messages: list[Any]) -> None:
        return None

    bulk = bulk_consumer(app, handler)
    consumer = app.consumer
    p0, p1, p2, p3 = (TP(TOPIC, p) for p in range(4))
    queued = message(7, partition=1)
    bulk.buffer.put_nowait_enhanced(queued)
    tracked = message(3, partition=2)
    consumer.unacked.add(tracked)
    consumer._acked[p3] = [4, 5]
    consumer._committed_offset.update({p0: 10, p1: 7, p2: 3, p3: 4})
    consumer.assignment = lambda: {p0, p1, p2, p3}  # type: ignore[method-assign]

    ends = {tp: 20 for tp in (p0, p1, p2, p3)}
    progress = stall_timer.partition_progress(app, ends, starts={})
    assert {tp: p.in_flight for tp, p in progress.items()} == {p0: 0, p1: 1, p2: 1, p3: 2}
    assert progress[p0].committed == 10 and progress[p0].end == 20
    # The guard asks the broker for the idle partitions only: the others are left out.
    assert stall_timer.messages_in_flight(app) == {p1: 1, p2: 1, p3: 2}
    assert set(stall_timer.partition_progress(app, {p0: 20}, starts={})) == {p0}


def test_partition_progress_counts_an_uncommitted_partition_from_its_first_offset(
    app: faust.App,
) -> None:
    """Nothing committed yet is no reason to look away: the partition is behind from
    its first offset (a worker that died before its first commit left it so)."""
    consumer = app.consumer
    p0, p1 = TP(TOPIC, 0), TP(TOPIC, 1)
    consumer._committed_offset.update({p1: 9})
    consumer.assignment = lambda: {p0, p1}  # type: ignore[method-assign]

    progress = stall_timer.partition_progress(app, {p0: 49, p1: 49}, starts={p0: 3})
    assert progress[p0] == PartitionProgress(committed=3, end=49, in_flight=0)
    assert progress[p1] == PartitionProgress(committed=9, end=49, in_flight=0)
    guard: StallGuard[TP] = StallGuard(after_s=1.0)
    guard.check(progress, now=0.0)
    assert sorted(guard.check(progress, now=1.0)) == [p0, p1]


class _ClientThread:
    """The Kafka client's thread without a broker: seeks of assigned partitions are
    recorded, and so is each call made in the thread."""

    def __init__(self, assigned: set[TP]) -> None:
        self.assigned = assigned
        self.sought: dict[TP, int] = {}
        self.calls = 0

    def _ensure_consumer(self) -> _ClientThread:
        return self

    def assignment(self) -> set[TP]:
        return self.assigned

    def seek(self, tp: TP, offset: int) -> None:
        self.sought[tp] = offset

    async def call_thread(self, fun: Any) -> Any:
        self.calls += 1
        return await fun()


def _in_order_consumer(app: faust.App) -> tuple[Any, dict[TP, int]]:
    """The app's consumer on `_ClientThread` (partitions 0-3 of TOPIC assigned), as after
    a rebalance's seek; answer it and the seeks its client made."""

    async def handler(messages: list[Any]) -> None:
        return None

    bulk_consumer(app, handler)  # makes TOPIC an acked topic
    consumer = app.consumer
    thread = _ClientThread({TP(TOPIC, p) for p in range(4)})
    consumer._thread = thread
    consumer._sought_generation = app.consumer_generation_id  # as after the rebalance's seek
    return consumer, thread.sought


def _committed_offsets(consumer: Any, committed: dict[TP, int | None]) -> None:
    """Make `consumer.seek_to_committed` answer `committed` (no broker)."""

    async def seek_to_committed() -> dict[TP, int | None]:
        return committed

    consumer.seek_to_committed = seek_to_committed


def test_delivery_is_in_offset_order_and_a_jump_is_reread(app: faust.App) -> None:
    """A message past the next expected offset is not delivered: its partition is
    reread from the missing offset (an agent that applied it would skip the missing
    one for good: every agent skips offsets at or below the last it applied)."""
    consumer, sought = _in_order_consumer(app)
    tp = TP(TOPIC, 0)
    run = asyncio.get_event_loop().run_until_complete

    assert run(consumer._in_order(tp, message(5)))  # nothing expected yet
    consumer._delivered(tp, 5, consumer._seek_epoch)
    assert consumer._expected[tp] == 6
    assert not run(consumer._in_order(tp, message(8)))  # 6 and 7 missing
    assert consumer._to_seek == {tp: 6} and consumer._expected[tp] == 6
    assert not run(consumer._in_order(tp, message(9)))  # same fetch: one seek
    assert consumer._to_seek == {tp: 6} and sought == {}
    run(consumer._apply_seeks())  # the fetch loop, before its next fetch
    assert sought == {tp: 6} and not consumer._to_seek
    assert run(consumer._in_order(tp, message(6)))


def test_seeks_are_made_by_the_fetch_loop_in_the_clients_thread(app: faust.App) -> None:
    """faust called the client's seek from the worker's thread at any moment: a fetch
    being handed out in the client's thread then set the position past its records
    (the seek was lost), and records fetched before a seek could come after it. Seeks
    wait for the fetch loop, which makes them in the client's thread between fetches,
    one call for all; a partition no longer assigned is left alone."""
    consumer, sought = _in_order_consumer(app)
    tp, gone = TP(TOPIC, 0), TP(TOPIC, 9)
    run = asyncio.get_event_loop().run_until_complete
    run(consumer.seek(tp, 7))
    run(consumer.seek(gone, 3))
    assert sought == {} and consumer._expected[tp] == 7
    run(consumer._apply_seeks())
    assert sought == {tp: 7} and consumer._thread.calls == 1
    run(consumer._apply_seeks())  # nothing waiting: no call
    assert consumer._thread.calls == 1


def test_a_jump_is_taken_only_from_the_first_record_after_its_seek(app: faust.App) -> None:
    """Offsets that do not exist (transaction markers, compaction, retention) are jumped
    over when the first record the client hands out after a seek to the missing offset
    starts past them; they are committed as if acked. Any other record past the expected
    offset is reread (seen, before seeks were made by the fetch loop: a worker took
    offset 957 after 1, fetched before a seek, and its router ledger then skipped
    403-954 for good)."""
    consumer, sought = _in_order_consumer(app)
    tp = TP(TOPIC, 0)
    run = asyncio.get_event_loop().run_until_complete
    consumer._delivered(tp, 5, consumer._seek_epoch)
    assert not run(consumer._in_order(tp, message(8)))
    assert not run(consumer._in_order(tp, message(957)))  # the rest of that fetch
    run(consumer._apply_seeks())
    assert sought == {tp: 6}
    assert run(consumer._in_order(tp, message(8)))  # first after the seek: 6, 7 do not exist
    consumer._delivered(tp, 8, consumer._seek_epoch)
    consumer._committed_offset[tp] = 6
    consumer._acked[tp] = [8]
    assert consumer._new_offset(tp) == 9
    assert not run(consumer._in_order(tp, message(11)))  # not first after a seek: reread
    assert consumer._to_seek == {tp: 9}


def test_a_message_from_before_a_rebalance_is_not_delivered(app: faust.App) -> None:
    consumer, _ = _in_order_consumer(app)
    app.consumer_generation_id = 3
    consumer._sought_generation = 3
    run = asyncio.get_event_loop().run_until_complete
    assert not run(consumer._in_order(TP(TOPIC, 0), message(1, generation=2)))
    assert run(consumer._in_order(TP(TOPIC, 0), message(1, generation=3)))


def test_nothing_is_delivered_before_the_rebalance_seeks(app: faust.App) -> None:
    """faust resumes the partitions of a new assignment just before it seeks them to
    their committed offsets; what the client reads in between comes from anywhere (seen:
    a sink wrote offsets from 244 on, then skipped 71-243 when the seek reread them).
    Nor is anything delivered until the fetch loop has sought the partitions again
    itself: the records handed out between faust's seek and then are dropped, and
    would not be read again (seen: a router took 1343 after 408 that way)."""
    consumer, sought = _in_order_consumer(app)
    tp = TP(TOPIC, 0)
    app.consumer_generation_id = 5
    run = asyncio.get_event_loop().run_until_complete
    assert not run(consumer._in_order(tp, message(244, generation=5)))

    _committed_offsets(consumer, {tp: 71})
    run(consumer.perform_seek())
    for offset in (71, 72):  # handed out after faust's seek: dropped
        assert not run(consumer._in_order(tp, message(offset, generation=5)))
    run(consumer._apply_seeks())
    assert sought == {tp: 71} and consumer._sought_generation == 5
    assert run(consumer._in_order(tp, message(71, generation=5)))


def test_a_delivery_spanning_a_seek_does_not_move_the_offsets(app: faust.App) -> None:
    """faust's loop set the read offset after a delivery that had waited through a
    rebalance's seek: the messages reread from the committed offset were then
    dropped as already read."""
    consumer, _ = _in_order_consumer(app)
    tp = TP(TOPIC, 0)
    epoch = consumer._seek_epoch
    asyncio.get_event_loop().run_until_complete(consumer.seek(tp, 10))
    consumer._delivered(tp, 42, epoch)  # began before the seek
    assert consumer._read_offset[tp] == 10 and consumer._expected[tp] == 10


def test_commit_stops_at_a_missing_offset(app: faust.App) -> None:
    consumer = app.consumer
    tp = TP(TOPIC, 0)
    consumer._committed_offset[tp] = 10
    consumer._acked[tp] = [11, 12]  # 10 never acked
    assert consumer._new_offset(tp) is None
    consumer._acked[tp] = [10, 11, 12]
    assert consumer._new_offset(tp) == 13


def test_with_nothing_committed_delivery_and_commit_start_at_the_first_offset(
    app: faust.App,
) -> None:
    """A partition nothing was committed for is read from its first offset: the
    rebalance's seek goes there (faust left the client's position where it was, past
    records fetched and dropped before), delivery expects it first, and the commit
    waits for it (faust committed any run of acked offsets when nothing was committed
    yet)."""
    consumer, sought = _in_order_consumer(app)
    done, fresh, zero = TP(TOPIC, 0), TP(TOPIC, 1), TP(TOPIC, 2)
    changelog = TP("app-table-changelog", 0)  # never committed: a standby reads it all
    consumer._thread.assigned.add(changelog)

    async def earliest_offsets(*tps: TP) -> dict[TP, int]:
        assert tps == (fresh, zero, changelog)
        return {fresh: 3, zero: 0, changelog: 5}

    # The client's seek to the committed offsets leaves offset 0 alone as well.
    _committed_offsets(consumer, {done: 40, fresh: None, zero: 0, changelog: None})
    consumer.earliest_offsets = earliest_offsets  # type: ignore[method-assign]
    run = asyncio.get_event_loop().run_until_complete
    run(consumer.perform_seek())
    run(consumer._apply_seeks())
    # The client's position may be anywhere: it is set.
    assert sought == {done: 40, fresh: 3, zero: 0, changelog: 5}
    assert consumer._expected[fresh] == 3 and consumer._expected[zero] == 0
    consumer._acked[fresh] = [20, 21]
    assert consumer._new_offset(fresh) is None
    consumer._acked[fresh] = [3, 4, 5]
    assert consumer._new_offset(fresh) == 6


def test_an_ack_from_an_earlier_assignment_is_not_recorded_for_the_commit(
    app: faust.App,
) -> None:
    """faust's streams ack the messages they skip at a rebalance; such an ack must not
    let a commit pass the message before its reread is processed."""
    consumer, _ = _in_order_consumer(app)
    tp = TP(TOPIC, 0)
    app.consumer_generation_id = 4
    old, current = message(10, generation=3), message(11, generation=4)
    consumer._unacked_messages.update({old, current})
    assert consumer.ack(old) is False
    assert old.acked and old not in consumer._unacked_messages  # nobody waits for it
    assert consumer.ack(current) is True
    assert consumer._acked[tp] == [11]
    consumer._committed_offset[tp] = 10
    assert consumer._new_offset(tp) is None  # 10 still to be processed


def test_the_rebalance_seek_drops_acks_from_before_it(app: faust.App) -> None:
    """Everything from the committed offsets is delivered again after the seek; an ack
    recorded before it (a message skipped while the rebalance waited) is dropped."""
    consumer, _ = _in_order_consumer(app)
    tp = TP(TOPIC, 0)

    _committed_offsets(consumer, {tp: 10})
    consumer._acked[tp] = [10, 11, 12]
    consumer._acked_index[tp] = {10, 11, 12}
    asyncio.get_event_loop().run_until_complete(consumer.perform_seek())
    assert consumer._new_offset(tp) is None
    assert not consumer._acked_index.get(tp)


class _Event:
    def __init__(self, msg: ConsumerMessage) -> None:
        self.message = msg


def test_a_message_cleared_from_an_agent_queue_stops_being_waited_for(
    app: faust.App,
) -> None:
    """Two agents share a topic; a rebalance clears one's queue after the other read
    the message: the rebalance must stop waiting for it once the reader is done —
    without acking it (it is reread from the committed offset)."""
    consumer = app.consumer
    queue = app.FlowControlQueue(maxsize=10, clear_on_resume=True)
    m = message(4)
    m.incref(2)
    consumer.unacked.add(m)  # read (tracked) by the other agent, still processing
    queue.put_nowait(_Event(m))
    app.flow_control.clear()  # a rebalance
    assert queue.empty()
    assert m in consumer.unacked  # the other agent is still on it
    assert not m.ack(consumer)  # now it is done
    consumer._clean_unacked_messages()  # faust's wait loop, every second
    assert m not in consumer.unacked and not m.acked
    assert not consumer._acked[TP(TOPIC, 0)]  # nothing committable


def test_messages_cleared_while_the_agents_run_are_read_again(app: faust.App) -> None:
    """faust's flow control clears the agents' queues on every resume, also while the
    agents run (table recovery of standbys): the messages after a cleared one reached
    the agent without it. Its partition is read again from the first cleared offset,
    and a later offset of the same partition is not delivered before it."""
    consumer, sought = _in_order_consumer(app)
    tp, other = TP(TOPIC, 0), TP(TOPIC, 1)
    consumer.assignment = lambda: {tp}  # type: ignore[method-assign]
    app.consumer_generation_id = consumer._sought_generation = 2
    queue = app.FlowControlQueue(maxsize=10, clear_on_resume=True)
    for m in (message(8, generation=2), message(7, generation=2),
              message(9, partition=1, generation=2),  # not assigned any more
              message(3, generation=1)):  # before the last rebalance: its seek covers it
        queue.put_nowait(_Event(m))
    app.flow_control.resume()  # already running: faust clears the queues all the same
    assert queue.empty()
    assert consumer._expected[tp] == 7 and consumer._to_seek == {tp: 7}
    run = asyncio.get_event_loop().run_until_complete
    # Not yet sought (the fetch loop seeks before its next fetch): a later offset waits.
    assert not run(consumer._in_order(tp, message(10, generation=2)))
    run(consumer._apply_seeks())
    assert sought == {tp: 7} and other not in sought
    assert run(consumer._in_order(tp, message(7, generation=2)))


def test_a_reread_of_cleared_messages_never_moves_delivery_forward(app: faust.App) -> None:
    """Messages cleared from an agent's queue are read again only if delivery is past
    them: a reread from further on would undo a seek further back (seen: a batch
    dropped at a rebalance had its partition read again from 52; the messages cleared
    behind it then moved the reread to 566, and a sink never wrote 52-565)."""
    consumer, _ = _in_order_consumer(app)
    tp = TP(TOPIC, 0)
    consumer.assignment = lambda: {tp}  # type: ignore[method-assign]
    app.consumer_generation_id = consumer._sought_generation = 2
    consumer._delivered(tp, 700, consumer._seek_epoch)
    consumer.note_cleared([message(52, generation=2)])
    assert consumer._to_seek == {tp: 52}
    consumer.note_cleared([message(566, generation=2)])
    assert consumer._to_seek == {tp: 52} and consumer._expected[tp] == 52


def test_a_delivery_during_which_the_queues_were_cleared_is_taken_back(
    app: faust.App,
) -> None:
    """A delivery waiting for room in a full agent queue goes on once a clear makes
    room: its message then sits ahead of the reread of those cleared. It is made a
    message of no generation (agents skip it) and its partition read again from it."""
    consumer, _ = _in_order_consumer(app)
    tp = TP(TOPIC, 0)
    consumer.assignment = lambda: {tp}  # type: ignore[method-assign]
    fetcher = _Fetcher()
    sent = [message(o) for o in range(3)]

    async def getmany(timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        for m in sent:
            yield tp, m
        fetcher._stopped.set()

    async def callback(msg: Any) -> None:
        if msg.offset == 1:
            app.flow_control.clear()  # a rebalance, while this delivery waits

    consumer.getmany = getmany  # type: ignore[method-assign]
    consumer.callback = callback
    asyncio.get_event_loop().run_until_complete(
        consumer._drain_messages(fetcher)  # type: ignore[arg-type]
    )
    assert [m.generation_id for m in sent] == [0, delivery_order.UNDELIVERED, 0]
    assert consumer._to_seek == {tp: 1}
