"""The exactly-once protocol: one ledger per source partition, kept the same way by
every agent, so that a worker killed at any step neither loses nor repeats an output.

Words. A *source* is one input partition of one agent, (topic, partition). A
*position* is where one input sits in it: (offset, index of the event in its message;
-1 when the message is the event). A *destination* is one output partition. An
*output* is any message an agent writes to Kafka: routed events, window records,
training samples, dead letters.

The rules, which docs/exactly-once.md explains with a diagram:

1. Delivery order. Each agent sees each source partition strictly in offset order
   (streams.runtime guarantees it, also across seeks, rebalances and flow control).
2. Every output carries a `SOURCE_HEADER`: the agent, its source and the position of
   the last input it holds. Outputs of one source to one destination are sent in
   position order by one idempotent producer, and each batch's outputs are
   acknowledged before the next batch sends any: so on every destination, the
   highest position found is a boundary — every output of that source up to it is
   there, none past it.
3. An output that is not decided by its input position alone (a window closed by the
   wall clock while its partition is idle) also carries an `ID_HEADER`, and is
   recognised by that id instead.
4. The ledger of a source (`SourceLedger`) holds `last`, the last source offset whose
   inputs are applied, whose outputs are acknowledged and whose state is saved, and
   `out`, the next offset of every destination it has accounted for. An agent saves
   it after the batch's outputs are acknowledged and after the batch's state, on the
   same changelog partition: a saved ledger implies saved state. State of the whole
   source that must not run ahead of `last` (the window clock) is saved inside it.
5. State is idempotent per input position: each window, entity record and decision
   remembers what it has applied, so state saved without its ledger (the worker
   died between the two writes) is not applied twice when its inputs come again.
6. Takeover. A worker that gains a source loads its ledger (or, for a source that
   has none, starts one at the destinations' current ends and saves it before the
   first output), then reads every destination from `out` to its end once, for all
   the sources it gained together (`Ledgers.ensure`), and folds what it finds into
   the ledger: per destination, the highest position and the ids of this source.
7. Redelivery. Inputs at or below `last` are skipped whole; an output of an input
   past it is sent only if the ledger does not find it already written (`needs`).

Bookkeeping keys (the ledgers, with the window clocks inside them) start with the byte
0xFF, which no UTF-8 text contains: no key taken from an event (an engine, job, session
or comparison id) can reach them.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from streams.config.settings import Settings
from streams.domain.dead_letters import DeadLetter
from streams.kafka.partitioner import partition_for
from streams.kafka.readback import KafkaTails

# The fault tests' way to kill a worker between two steps (see `failpoint`); unset in
# production.
FAILPOINT = os.environ.get("ENGINESTREAM_FAILPOINT", "")

SOURCE_HEADER = "es-source"
ID_HEADER = "es-id"
BOOKKEEPING = b"\xff"

Source = tuple[str, int]  # (topic, partition)
Destination = tuple[str, int]  # (topic, partition)
Position = tuple[int, int]  # (offset, index in the message; -1: the message is the event)
BEFORE_ANY: Position = (-1, -1)


async def failpoint(
    agent: str, step: str, durable: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Kill this process with SIGKILL when ENGINESTREAM_FAILPOINT is `<agent>:<step>`:
    `written` (a batch's outputs are acknowledged, its state and ledger not saved) or
    `saved` (its ledger is durable, its source offsets not committed). The tests that
    kill a worker at each step of the protocol set it; nothing else does."""
    if f"{agent}:{step}" != FAILPOINT:
        return
    if durable is not None:
        await durable()
    os.kill(os.getpid(), signal.SIGKILL)


def bookkeeping_key(name: str) -> bytes:
    """A table key no event-derived key can equal (it is not UTF-8)."""
    return BOOKKEEPING + name.encode()


def is_bookkeeping(key: bytes) -> bool:
    """Whether a table key is a ledger or a clock rather than an entity's record."""
    return key[:1] == BOOKKEEPING


def ledger_key(source: Source) -> bytes:
    """Table key of a source partition's ledger."""
    return bookkeeping_key(f"ledger|{source[0]}|{source[1]}")


def parse_ledger_key(key: bytes) -> Source | None:
    """The source whose ledger `key` is; None for any other key."""
    prefix = ledger_key(("", 0))[: -len("|0")]
    if not key.startswith(prefix):
        return None
    topic, _, partition = key[len(prefix):].decode().rpartition("|")
    return topic, int(partition)


def source_header(agent: str, source: Source, position: Position) -> tuple[str, bytes]:
    """The header of an output of `agent` holding inputs of `source` up to `position`."""
    return SOURCE_HEADER, f"{agent}|{source[0]}|{source[1]}|{position[0]}|{position[1]}".encode()


def parse_source_header(value: bytes) -> tuple[str, Source, Position] | None:
    """(agent, source, position) of a source header; None if it is not one."""
    try:
        agent, topic, partition, offset, index = value.decode().split("|")
        return agent, (topic, int(partition)), (int(offset), int(index))
    except (UnicodeDecodeError, ValueError):
        return None


@dataclass
class SourceLedger:
    """What one agent has applied of one source partition, and written where."""

    last: int = -1  # every offset up to here: applied, acknowledged, saved
    out: dict[Destination, int] = field(default_factory=dict)  # next offset accounted for
    # State of the whole source that must be saved with `last`, not before it (the
    # window agent's clock: a watermark saved ahead of its ledger would make
    # redelivered events late).
    extra: Any = None
    # Found past `out` by the last takeover (never saved: below `last` once saved again).
    written: dict[Destination, Position] = field(default_factory=dict)
    ids: dict[Destination, set[str]] = field(default_factory=dict)

    def applied(self, offset: int) -> bool:
        """Whether the input at `offset` was applied and saved before (skip it whole)."""
        return offset <= self.last

    def needs(self, destination: Destination, position: Position, output_id: str | None) -> bool:
        """Whether an output must be sent: it was not found on `destination`."""
        if output_id is not None:
            return output_id not in self.ids.get(destination, ())
        return position > self.written.get(destination, BEFORE_ANY)

    def found(self, destination: Destination, position: Position, output_id: str | None) -> None:
        """Record an output of this source read back from `destination`."""
        if output_id is not None:
            self.ids.setdefault(destination, set()).add(output_id)
        elif position > self.written.get(destination, BEFORE_ANY):
            self.written[destination] = position

    def acknowledged(self, destination: Destination, next_offset: int) -> None:
        """The broker acknowledged writes to `destination` below `next_offset`."""
        if next_offset > self.out.get(destination, 0):
            self.out[destination] = next_offset

    def applied_through(self, offset: int) -> None:
        """Every input up to `offset` is applied and its outputs acknowledged."""
        self.last = max(self.last, offset)

    def to_bytes(self) -> bytes:
        """The saved form (what a takeover found is not saved, see `written`)."""
        state: dict[str, Any] = {
            "last": self.last, "out": [[t, p, o] for (t, p), o in sorted(self.out.items())]
        }
        if self.extra is not None:
            state["extra"] = self.extra
        return orjson.dumps(state)

    @classmethod
    def from_bytes(cls, raw: bytes) -> SourceLedger:
        """Inverse of to_bytes."""
        state = orjson.loads(raw)
        out = {(str(t), int(p)): int(o) for t, p, o in state["out"]}
        return cls(int(state["last"]), out, extra=state.get("extra"))


class LedgerStore(Protocol):
    """Where an agent keeps its ledgers: a changelog-backed table, or a file checkpoint."""

    def load(self, source: Source) -> SourceLedger | None:
        """The saved ledger of `source`, None if it has none."""

    def start(self, source: Source) -> SourceLedger:
        """The ledger of a source that has none yet (its `out` is set by the takeover)."""

    async def save(self, source: Source, ledger: SourceLedger) -> None:
        """Save `ledger`, after the state of the inputs it names."""

    async def durable(self) -> None:
        """Wait until everything saved so far survives a crash."""


class TableWriter:
    """Writes keys of a Faust table: its in-memory data, and its changelog partition
    straight through the producer (what `Table.send_changelog` does, without its
    per-message buffer task; Faust flushes the producer before it commits offsets)."""

    def __init__(self, app: Any, table: Any) -> None:
        self.app = app
        self.table = table
        self.data: dict[bytes, bytes] = table.data
        self._topic: str | None = None

    @property
    def changelog_topic(self) -> str:
        """Name of the table's changelog topic."""
        if self._topic is None:
            self._topic = self.table.changelog_topic.get_topic_name()
        return self._topic

    async def put(self, partition: int, key: bytes, value: bytes | None) -> Awaitable[Any]:
        """Write (None: delete) `key` on changelog `partition`; answer the send's future."""
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value
        future: Awaitable[Any] = await self.app.producer.send(
            self.changelog_topic, key, value, partition, None, None
        )
        return future


class TableLedgers:
    """Ledgers kept in a changelog-backed table, on their source's partition."""

    def __init__(self, writer: TableWriter) -> None:
        self.writer = writer
        # The latest ledger write of each changelog partition: the producer keeps a
        # partition's order, so once it is acknowledged every earlier write is too.
        self._latest: dict[int, Awaitable[Any]] = {}

    def load(self, source: Source) -> SourceLedger | None:
        """The saved ledger of `source`, None if it has none."""
        raw = self.writer.data.get(ledger_key(source))
        return None if raw is None else SourceLedger.from_bytes(raw)

    def start(self, source: Source) -> SourceLedger:
        """A table's source without a ledger has applied nothing."""
        return SourceLedger()

    async def save(self, source: Source, ledger: SourceLedger) -> None:
        """Write the ledger after everything written before it on its partition."""
        future = await self.writer.put(source[1], ledger_key(source), ledger.to_bytes())
        self._latest[source[1]] = future

    async def durable(self) -> None:
        """Wait for the broker to acknowledge every ledger written so far."""
        latest, self._latest = self._latest, {}
        await asyncio.gather(*latest.values())


class Tails(Protocol):
    """How a takeover reads the destinations (Kafka; a stub log in unit tests)."""

    async def __aenter__(self) -> Tails: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def end_offsets(self, destinations: list[Destination]) -> dict[Destination, int]:
        """The next offset of each destination."""

    def records(
        self, destination: Destination, start: int, end: int
    ) -> AsyncIterator[tuple[int, list[tuple[str, bytes]]]]:
        """(offset, headers) of each record of `destination` in [start, end)."""


async def read_back(
    tails: Tails,
    agent: str,
    ledgers: Mapping[Source, SourceLedger],
    fresh: set[Source],
    destinations: list[Destination],
) -> None:
    """The takeover read: start the `fresh` ledgers at the destinations' current ends,
    then read every destination once from the lowest `out` of `ledgers` to its end and
    fold the outputs of `agent` from those sources into them."""
    async with tails as reader:
        ends = await reader.end_offsets(destinations)
        for source in fresh:
            ledgers[source].out = dict(ends)
        for where in destinations:
            start = min(ledger.out.get(where, 0) for ledger in ledgers.values())
            if start >= ends[where]:
                continue
            async for offset, headers in reader.records(where, start, ends[where]):
                _fold(agent, ledgers, where, offset, headers)


def _fold(
    agent: str,
    ledgers: Mapping[Source, SourceLedger],
    where: Destination,
    offset: int,
    headers: Iterable[tuple[str, bytes]],
) -> None:
    found = dict(headers)
    header = found.get(SOURCE_HEADER)
    parsed = None if header is None else parse_source_header(header)
    if parsed is None or parsed[0] != agent:
        return
    ledger = ledgers.get(parsed[1])
    if ledger is None or offset < ledger.out.get(where, 0):
        return
    raw_id = found.get(ID_HEADER)
    ledger.found(where, parsed[2], None if raw_id is None else raw_id.decode())


Destinations = Callable[[], list[Destination]]


class Ledgers:
    """The ledgers of one agent's sources on this worker."""

    def __init__(
        self,
        settings: Settings,
        agent: str,
        store: LedgerStore,
        destinations: Destinations,
        tails: Callable[[], Tails] | None = None,
    ) -> None:
        self.tails = tails or (lambda: KafkaTails(settings))
        self.agent = agent
        self.store = store
        self.destinations = destinations
        self.by_source: dict[Source, SourceLedger] = {}
        self._saved: dict[Source, bytes] = {}  # as last saved or loaded
        # Forgets per source: a takeover that sees one happen under it does not keep the
        # ledger it loaded (see `ensure`).
        self._forgotten: Counter[Source] = Counter()

    def __getitem__(self, source: Source) -> SourceLedger:
        return self.by_source[source]

    def get(self, source: Source) -> SourceLedger | None:
        """The ledger of `source` if it is taken over already."""
        return self.by_source.get(source)

    async def ensure(self, sources: Iterable[Source]) -> dict[Source, SourceLedger]:
        """Take over `sources` not taken yet: load or start their ledgers, read back the
        destinations once for all of them (rule 6). Answers the ledgers of `sources`:
        a batch keeps using them even if a rebalance revokes a source meanwhile. One
        revoked while it was taken over is not kept: its batch's `save` then leaves it
        alone, and a later takeover of the source loads it again, with what its owner
        did in between, instead of taking this copy as it is."""
        wanted = set(sources)
        found = {s: self.by_source[s] for s in wanted if s in self.by_source}
        missing = [s for s in wanted if s not in found]
        if not missing:
            return found
        forgotten_before = {s: self._forgotten[s] for s in missing}
        loaded: dict[Source, SourceLedger] = {}
        fresh: set[Source] = set()
        for source in missing:
            ledger = self.store.load(source)
            if ledger is None:
                fresh.add(source)
                ledger = self.store.start(source)
            loaded[source] = ledger
        await read_back(self.tails(), self.agent, loaded, fresh, self.destinations())
        # A fresh ledger is saved before its first output, so that a crash in its first
        # batch reads back from here and not from the current end of a later takeover.
        for source in fresh:
            await self.store.save(source, loaded[source])
        if fresh:
            await self.store.durable()
        for source, ledger in loaded.items():
            if self._forgotten[source] == forgotten_before[source]:
                self.by_source[source] = ledger
                self._saved[source] = ledger.to_bytes()
        return found | loaded

    def forgets(self, source: Source) -> int:
        """How many times `source` was forgotten: a caller that reads it before a wait
        and after sees whether a rebalance revoked the source meanwhile."""
        return self._forgotten[source]

    def forget(self, sources: Iterable[Source]) -> None:
        """Drop the ledgers of sources this worker no longer owns."""
        for source in sources:
            self.by_source.pop(source, None)
            self._saved.pop(source, None)
            self._forgotten[source] += 1

    async def save(self, source: Source) -> None:
        """Save the ledger of `source` (after the state of its batch), unless it is
        unchanged since it was last saved or loaded, or the source was revoked (its
        next owner reads back from the ledger saved before, which is as safe)."""
        ledger = self.by_source.get(source)
        if ledger is None:
            return
        state = ledger.to_bytes()
        if self._saved.get(source) != state:
            await self.store.save(source, ledger)
            self._saved[source] = state
            await failpoint(self.agent, "saved", self.store.durable)


@dataclass(slots=True)
class _Pending:
    ledger: SourceLedger
    destination: Destination
    future: Awaitable[Any]
    on_written: Callable[[int], None] | None = None


class Outputs:
    """The outputs of one batch of one agent: each sent only if its source's ledger
    needs it, all acknowledged together before the batch's state is saved."""

    def __init__(
        self, producer: Any, agent: str, ledgers: Mapping[Source, SourceLedger]
    ) -> None:
        self.producer = producer
        self.agent = agent
        self.ledgers = ledgers  # of the batch's sources (see Ledgers.ensure)
        self.pending: list[_Pending] = []
        self.skipped = 0

    async def send(
        self,
        source: Source,
        position: Position,
        destination: Destination,
        key: bytes | None,
        value: bytes,
        output_id: str | None = None,
        on_written: Callable[[int], None] | None = None,
    ) -> bool:
        """Send one output unless it is written already; answer whether it was sent.
        `on_written` is called with the output's offset as soon as the broker
        acknowledges it (not at all if it fails)."""
        ledger = self.ledgers[source]
        if not ledger.needs(destination, position, output_id):
            self.skipped += 1
            return False
        headers = [source_header(self.agent, source, position)]
        if output_id is not None:
            headers.append((ID_HEADER, output_id.encode()))
        future = await self.producer.send(
            destination[0], key, value, destination[1], None, headers
        )
        if on_written is not None and asyncio.isfuture(future):
            # At once, not after the whole batch: a reader in this worker may get the
            # message from the broker before the batch's last acknowledgement.
            future.add_done_callback(_call_with_offset(on_written))
            on_written = None
        self.pending.append(_Pending(ledger, destination, future, on_written))
        return True

    async def acknowledged(self) -> int:
        """Wait for the broker to acknowledge every output sent; record in each ledger
        how far its destinations are accounted for. Answers how many were sent."""
        pending, self.pending = self.pending, []
        results = await asyncio.gather(*(p.future for p in pending))
        for sent, result in zip(pending, results, strict=True):
            sent.ledger.acknowledged(sent.destination, result.offset + 1)
            if sent.on_written is not None:
                sent.on_written(result.offset)
        if pending:
            await failpoint(self.agent, "written")
        return len(pending)

    async def dead_letters(
        self, letters: Iterable[DeadLetter], topic: str, partitions: int, now: float
    ) -> list[DeadLetter]:
        """Send dead letters, each to the partition of its id, in position order (rule
        2); answer those sent. Their source is the one each letter names."""
        sent = []
        for letter in sorted(letters, key=letter_position):
            key = letter.id.encode()
            source = (letter.source.topic, letter.source.partition)
            destination = (topic, partition_for(key, partitions))
            value = orjson.dumps(letter.to_record(now))
            if await self.send(source, letter_position(letter), destination, key, value):
                sent.append(letter)
        return sent


def _call_with_offset(on_written: Callable[[int], None]) -> Callable[[Any], None]:
    def done(future: Any) -> None:
        if not future.cancelled() and future.exception() is None:
            on_written(future.result().offset)

    return done


def letter_position(letter: DeadLetter) -> Position:
    """The source position of a dead letter (index -1: the whole message)."""
    index = letter.batch_index
    return letter.source.offset, -1 if index is None else index
