"""The window agent: feed executions and served requests to streams.domain.windows, emit
finals and revisions to engine.metrics.windows, and keep the state in a table.

State: one changelog-backed Faust table. Each window is one key, written at most once
per batch (not once per event); each source partition's clock is one more key.
Writes go to the changelog partition of the source partition, so the state moves
with its partition between workers.

Emission exactly once, by the protocol of streams.durable.exactly_once: a partition's
records go to the same partition of engine.metrics.windows, each named by its emission
id (a window closed by the wall clock while its partition is idle is not decided by an
input position); each source partition's ledger is the last write of its batch. When
a partition is taken over, the records found past its ledger are not emitted again
when re-delivered events recompute them; windows remember the positions they applied,
so state saved without its ledger is not counted twice.

Consumption: in bulk (streams.runtime.bulk.BulkConsumer), lists of up to WINDOW_TAKE raw
messages, no faust Event or Stream per message; a batch's messages are acked (and so
committable) only once it was applied and its changelog and output records queued.
GET /windows/stats answers this worker's counts (messages, events, batches).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import faust
import orjson
from faust.exceptions import ConsumerNotStarted
from faust.types import TP, Message
from faust.web import Request, Response, View

from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.dead_letters import (
    FUTURE_TIMESTAMP,
    TOO_LATE,
    DeadLetter,
    Inbound,
    is_infrastructure,
    processing_error,
)
from streams.domain.windows import (
    EXECUTIONS,
    REQUESTS,
    Clock,
    Outcome,
    PartitionWindows,
    Window,
    WindowConfig,
    decode_key,
    emission_id,
    encode_key,
)
from streams.durable.exactly_once import (
    Destination,
    Ledgers,
    Outputs,
    Source,
    SourceLedger,
    TableLedgers,
    TableWriter,
)
from streams.kafka.partitioner import partition_for
from streams.runtime.app import raw_table
from streams.runtime.bulk import BulkConsumer, consume_in_bulk
from streams.runtime.handoff import Handoff

log = logging.getLogger(__name__)

AGENT = "windows"
# Messages per batch at most: each batch writes each window it changed to the
# changelog once, so larger batches mean fewer writes.
WINDOW_TAKE = 10000


Where = tuple[str, int]  # (window kind, source partition)


@dataclass(slots=True)
class Taken:
    """A source partition this worker has taken over: its windows and its ledger."""

    windows: PartitionWindows
    ledger: SourceLedger


class WindowProcessor:
    """The windows this worker owns, and their changelog and output I/O."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        config: WindowConfig,
        table: faust.Table,
        names: TopicNames,
        partitions: dict[str, int],
        handoff: Handoff | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.config = config
        self.handoff = handoff
        self.table = table
        self.names = names
        self.output_partitions = partitions
        self.sources = {
            names.typed["engine_execution"]: EXECUTIONS,
            names.typed["engine_event"]: REQUESTS,
        }
        self.topic_of_kind = {kind: topic for topic, kind in self.sources.items()}
        if handoff is not None:
            for topic in self.sources:
                handoff.reads(topic)
        self.partitions: dict[tuple[str, int], PartitionWindows] = {}
        self.writer = TableWriter(app, table)
        destinations: list[Destination] = [
            (topic, p)
            for topic in (names.metrics_windows, names.dead_letter)
            for p in range(partitions[topic])
        ]
        self.ledgers = Ledgers(
            settings, AGENT, TableLedgers(self.writer), lambda: destinations
        )
        self.lock = asyncio.Lock()
        self.emitted = 0
        self.late_events = 0
        self.too_late = 0
        self.refused: Counter[str] = Counter()  # future_timestamp, processing_error
        # Throughput counters (GET /windows/stats): input messages and events applied,
        # and the wall-clock times of the first and the latest batch processed.
        self.messages_in = 0
        self.events_in = 0
        self.first_batch_at: float | None = None
        self.last_batch_at: float | None = None
        self.consumer: BulkConsumer | None = None  # set by register_windows

    # --- building a partition's windows from the table --------------------------

    async def _take_over(self, wanted: Iterable[Where]) -> dict[Where, Taken]:
        """The windows and ledgers of source partitions, built from the table and taken
        over (one read-back for all of them) where needed. A batch keeps using what
        this answers even if a rebalance revokes a partition meanwhile; what is built
        for a partition revoked during the takeover is not kept."""
        wanted = set(wanted)
        revoked_before = self._revocations(wanted)
        ledgers = await self.ledgers.ensure(self._source(*where) for where in wanted)
        taken: dict[Where, Taken] = {}
        missing = []
        for where in wanted:
            windows = self.partitions.get(where)
            if windows is None:
                missing.append(where)
            else:
                taken[where] = Taken(windows, ledgers[self._source(*where)])
        if not missing:
            return taken
        restored: dict[Where, dict[Any, Window]] = {where: {} for where in missing}
        source_partitions = self.settings.partitions
        for raw_key, value in list(self.table.data.items()):
            # Window keys are JSON arrays; anything else is bookkeeping (a clock as
            # versions before ledgers saved it included).
            if raw_key[:1] != b"[" or value is None:
                continue
            key = decode_key(raw_key.decode())
            found = restored.get((key[0], partition_for(key[1].encode(), source_partitions)))
            if found is not None:
                found[key] = Window.from_state(key, orjson.loads(value))
        # What was revoked while its ledger was taken over is not kept: it would go stale.
        revoked_now = self._revocations(missing)
        for kind, partition in missing:
            ledger = ledgers[self._source(kind, partition)]
            # The clock is saved in the ledger, with the offsets it has seen.
            clock = Clock() if ledger.extra is None else Clock.from_state(ledger.extra)
            windows = PartitionWindows(kind, self.config, clock)
            windows.restore(restored[(kind, partition)])
            if revoked_now[(kind, partition)] == revoked_before[(kind, partition)]:
                self.partitions[(kind, partition)] = windows
            taken[(kind, partition)] = Taken(windows, ledger)
            log.info(
                "windows %s/%d: %d restored, watermark %s",
                kind,
                partition,
                len(restored[(kind, partition)]),
                clock.watermark,
                extra={"topic": self.topic_of_kind[kind], "partition": partition},
            )
        for kind, partition in missing:
            _, expired = taken[(kind, partition)].windows.take_changes()
            for window_key in expired:  # deletions a crash cut short
                await self.writer.put(partition, encode_key(window_key).encode(), None)
        return taken

    def _revocations(self, wanted: Iterable[Where]) -> dict[Where, int]:
        """How many times each partition was revoked so far (its ledger forgotten)."""
        return {where: self.ledgers.forgets(self._source(*where)) for where in wanted}

    def _source(self, kind: str, partition: int) -> Source:
        return self.topic_of_kind[kind], partition

    async def ensure(self, kind: str, partition: int) -> PartitionWindows:
        """The windows of a source partition, built from the table if needed."""
        async with self.lock:
            return (await self._take_over([(kind, partition)]))[(kind, partition)].windows

    async def ensure_assigned(self) -> None:
        """Build the windows of every source partition assigned to this worker."""
        async with self.lock:
            await self._take_over(self._assigned())

    def owned(self) -> dict[Where, PartitionWindows]:
        """The windows built so far of the source partitions assigned to this worker
        now; not those of a partition revoked while a batch read before the rebalance
        still used it, whose copy goes stale at once."""
        try:
            assigned = self._assigned()
        except ConsumerNotStarted:  # asked before the worker started: nothing is owned
            return {}
        return {where: self.partitions[where] for where in assigned if where in self.partitions}

    def _assigned(self) -> list[Where]:
        return [
            (self.sources[tp.topic], tp.partition)
            for tp in self.app.consumer.assignment()
            if tp.topic in self.sources
        ]

    def revoke(self, tps: Iterable[Any]) -> None:
        """Forget partitions this worker no longer owns (rebuilt if they come back)."""
        for tp in tps:
            kind = self.sources.get(tp.topic)
            if kind is not None:
                self.partitions.pop((kind, tp.partition), None)
                self.ledgers.forget([(tp.topic, tp.partition)])

    # --- processing --------------------------------------------------------------

    async def process(self, messages: list[Message]) -> None:
        """Apply a batch of messages from the source topics (each partition's in
        offset order)."""
        now = time.time()
        if self.first_batch_at is None:
            self.first_batch_at = now
        taken = 0
        loads = orjson.loads
        handed = self.handoff.take if self.handoff is not None else None
        wanted = {(self.sources[m.topic], m.partition) for m in messages}
        revoked_before = self._revocations(wanted)
        async with self.lock:
            owned = await self._take_over(wanted)
            outcomes: dict[Where, Outcome] = {}
            for message in messages:
                kind = self.sources[message.topic]
                where = (kind, message.partition)
                windows, ledger = owned[where].windows, owned[where].ledger
                offset = message.offset
                if ledger.applied(offset):
                    continue  # redelivered after a restart; its batch was saved
                outcome = outcomes.get(where)
                if outcome is None:
                    outcome = outcomes[where] = Outcome()
                docs = None if handed is None else handed(
                    message.topic, message.partition, offset, message.value
                )
                if docs is None:
                    try:
                        value = loads(message.value or b"null")
                    except orjson.JSONDecodeError as exc:
                        outcome.failed.append(((offset, -1), message.value or b"", exc))
                        ledger.applied_through(offset)
                        continue
                    docs = value if isinstance(value, list) else [value]
                taken += len(docs)
                apply = windows.apply
                requests = kind == REQUESTS
                for index, doc in enumerate(docs):
                    if not isinstance(doc, dict):
                        problem = TypeError(f"{type(doc).__name__} is not an event object")
                        outcome.failed.append(((offset, index), doc, problem))
                        continue
                    if requests and doc.get("event") != "RequestServed":
                        continue  # other lifecycle events have no window
                    try:
                        apply((offset, index), doc, now, outcome)
                    except Exception as exc:  # this event is refused, the worker goes on
                        if is_infrastructure(exc):
                            raise
                        outcome.failed.append(((offset, index), doc, exc))
                ledger.applied_through(offset)
            for where, outcome in outcomes.items():
                await self._flush(where[1], owned[where], outcome)
            # A partition revoked while this batch ran was rebuilt for it: that copy
            # would go stale, and be taken as it is if the partition came back.
            now_revoked = self._revocations(wanted)
            for where, count in revoked_before.items():
                if now_revoked[where] != count:
                    self.partitions.pop(where, None)
                    self.ledgers.forget([self._source(*where)])
        self.messages_in += len(messages)
        self.events_in += taken
        self.last_batch_at = time.time()

    def stats(self) -> dict[str, Any]:
        """Running counts of this worker's window agent (GET /windows/stats)."""
        return {
            "messages_in": self.messages_in,
            "events_in": self.events_in,
            "first_message_at": self.consumer.buffer.first_put_at if self.consumer else None,
            "first_batch_at": self.first_batch_at,
            "last_batch_at": self.last_batch_at,
            "emitted": self.emitted,
            "late_events": self.late_events,
            "too_late": self.too_late,
            "refused": dict(self.refused),
            "partitions": sorted(f"{kind}/{p}" for kind, p in self.partitions),
            "handoff": self.handoff.stats() if self.handoff is not None else None,
            "batches": self.consumer.batches if self.consumer else 0,
            "failed_batches": self.consumer.failed_batches if self.consumer else 0,
            "stale_dropped": self.consumer.stale_dropped if self.consumer else 0,
        }

    async def tick(self) -> None:
        """Advance idle, caught-up partitions by the wall clock (called every second)."""
        if self.app.rebalancing:
            return
        now = time.time()
        idle_after = self.config.idle_timeout_s
        # Which partitions look idle is decided under the lock; their end offsets are
        # asked outside it, in one call: the answer comes through the consumer's thread
        # and can take a second or more while it fetches, and processing must not wait
        # for it (it did: 5 s stalls every 6 s while never-used partitions were idle).
        async with self.lock:
            candidates = []
            for (kind, partition), found in (await self._take_over(self._assigned())).items():
                windows = found.windows
                if windows.has_events and now - windows.clock.last_event_wall >= idle_after:
                    candidates.append(TP(self.topic_of_kind[kind], partition))
        if not candidates:
            return
        highs = await self.app.consumer.highwaters(*candidates)
        async with self.lock:
            if self.app.rebalancing:
                return
            assignment = self.app.consumer.assignment()
            for tp in candidates:
                where = (self.sources[tp.topic], tp.partition)
                idle = self.partitions.get(where)
                ledger = self.ledgers.get((tp.topic, tp.partition))
                if tp not in assignment or idle is None or ledger is None:
                    continue  # revoked meanwhile
                if now - idle.clock.last_event_wall < idle_after:
                    continue  # events came meanwhile
                if ledger.last + 1 < highs.get(tp, 0):
                    continue  # not idle: behind on its input
                outcome = Outcome()
                idle.advance_idle(now, outcome)
                if outcome.emitted or idle.dirty or idle.deleted:
                    await self._flush(tp.partition, Taken(idle, ledger), outcome)

    async def _flush(self, partition: int, taken: Taken, outcome: Outcome) -> None:
        """Emit and acknowledge, then save the state, then the ledger (the protocol's
        order: the state never claims an emission that did not happen)."""
        windows, ledger = taken.windows, taken.ledger
        kind = windows.kind
        source = self._source(kind, partition)
        position = (ledger.last, -1)
        outputs = Outputs(self.app.producer, AGENT, {source: ledger})
        destination = (self.names.metrics_windows, partition)
        for record in outcome.emitted:
            emission = orjson.dumps(emission_id(record)).decode()
            value = orjson.dumps(record)
            key = record["engine_id"].encode()
            if await outputs.send(source, position, destination, key, value, emission):
                self.emitted += 1
                if record["revision"] > 0:
                    self.late_events += 1
        letters = await outputs.dead_letters(
            self._dead_letters(kind, partition, windows, outcome),
            self.names.dead_letter,
            self.output_partitions[self.names.dead_letter],
            time.time(),
        )
        for letter in letters:
            if letter.reason == TOO_LATE:
                self.too_late += 1
            else:
                self.refused[letter.reason] += 1
        await outputs.acknowledged()
        changed, deleted = windows.take_changes()
        # On the changelog partition of the source partition: the windows, then the
        # ledger with the clock, then the windows past their retention (a window
        # deleted before its ledger is saved would be missed by redelivered events).
        put = self.writer.put
        for window in changed:
            await put(partition, encode_key(window.key).encode(), orjson.dumps(window.to_state()))
        ledger.extra = windows.clock.to_state()
        await self.ledgers.save(source)
        for window_key in deleted:
            await put(partition, encode_key(window_key).encode(), None)

    def _dead_letters(
        self, kind: str, partition: int, windows: PartitionWindows, outcome: Outcome
    ) -> list[DeadLetter]:
        """The dead letters of a batch: events too late, from the future, or whose
        processing raised (`(offset, -1)`: the whole message)."""
        source = self.topic_of_kind[kind]
        event_type = "engine_execution" if kind == EXECUTIONS else "engine_event"
        keep = self.settings.dead_letter_keep_bytes
        letters = []
        for (offset, index), doc in outcome.too_late:
            letters.append(
                DeadLetter(
                    TOO_LATE,
                    f"event time {doc.get('timestamp')} is older than the window retention "
                    f"(watermark {windows.clock.watermark})",
                    Inbound(source, partition, offset, None),
                    orjson.dumps(doc),
                    batch_index=index,
                    event_type=event_type,
                    agent=AGENT,
                )
            )
        skew = self.config.max_future_skew_s
        for (offset, index), doc in outcome.future:
            letters.append(
                DeadLetter(
                    FUTURE_TIMESTAMP,
                    f"event time {doc.get('timestamp')} is more than {skew:g} s past the "
                    "wall clock; it does not move the watermark",
                    Inbound(source, partition, offset, None),
                    orjson.dumps(doc),
                    batch_index=index,
                    event_type=event_type,
                    agent=AGENT,
                )
            )
        for (offset, index), doc, exc in outcome.failed:
            letters.append(processing_error(
                AGENT, exc, Inbound(source, partition, offset, None), doc, keep,
                batch_index=None if index < 0 else index, event_type=event_type,
            ))
        return letters


def register_windows(
    app: faust.App,
    settings: Settings,
    config: WindowConfig,
    names: TopicNames,
    partitions: dict[str, int],
    handoff: Handoff | None = None,
) -> WindowProcessor:
    """Add the window agent, its table and its idle timer to `app`; it takes the
    messages the router of this worker decoded from `handoff`."""
    table = raw_table(
        app, "windows", settings.partitions, "Window aggregates and ledgers of the window agent."
    )
    processor = WindowProcessor(app, settings, config, table, names, partitions, handoff)
    processor.consumer = consume_in_bulk(
        app,
        processor.sources,
        processor.process,
        doing="windowing",
        max_batch=WINDOW_TAKE,
        within_s=settings.batch_within_s,
        name=f"{settings.app_id}.windows",
        on_revoke=processor.revoke,
    )

    @app.page("/windows/stats")
    class WindowStats(View):
        async def get(self, request: Request) -> Response:
            return self.json({"as_of": time.time(), "windows": processor.stats()})

    @app.timer(1.0)
    async def advance_idle_partitions() -> None:
        await processor.tick()

    return processor
