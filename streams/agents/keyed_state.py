"""A changelog-backed table of JSON records keyed by entity id, fed by one typed topic.

The three state agents (jobs, sessions, engine status) share this shape: a message
of the source topic holds one event or a batch; each event updates the record of
its entity; records are written once per key per batch.

Exactly once by the protocol of streams.durable.exactly_once: dead letters name the
position of their event and are acknowledged before the batch's records are written;
each source partition's ledger is written after its records, on the same changelog
partition. Every record remembers the position of the last event applied to it, so
records saved without their ledger (a crash between the two) are not applied again
when their events come back: the event is skipped (`AlreadyApplied`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, cast

import faust
import orjson
from faust.types import Message

from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.dead_letters import DeadLetter, Inbound, is_infrastructure, processing_error
from streams.domain.validation import Violation
from streams.durable.exactly_once import (
    Destination,
    Ledgers,
    Outputs,
    Position,
    Source,
    SourceLedger,
    TableLedgers,
    TableWriter,
    is_bookkeeping,
)
from streams.kafka.partitioner import partition_for
from streams.runtime.app import raw_table
from streams.runtime.bulk import consume_in_bulk

_UNSTAGED = object()  # nothing was staged for the key
NEVER: Position = (-1, -1)  # the position of a record no event has touched yet
LEGACY_OFFSET = b"\x00offset|"  # applied offsets as versions before ledgers kept them


class AlreadyApplied(Exception):
    """The saved record of the entity already holds the event being applied."""


def encode_record(position: Position, record: dict[str, Any]) -> bytes:
    """A table value: the position of the last event applied, then the record."""
    return b"[%d,%d," % position + orjson.dumps(record) + b"]"


def decode_record(value: bytes) -> tuple[Position, dict[str, Any]]:
    """Inverse of encode_record (a bare record, as versions before positions wrote
    them, has applied nothing anyone remembers)."""
    doc = orjson.loads(value)
    if isinstance(doc, dict):
        return NEVER, doc
    offset, index, record = doc
    return (offset, index), dict(record)


class KeyedState:
    """Records of one entity type, and the batch being applied to them."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        name: str,
        source: str,
    ) -> None:
        self.app = app
        self.settings = settings
        self.source = source
        self.table = raw_table(app, name, settings.partitions, f"{name} records, ledgers")
        self.writer = TableWriter(app, self.table)
        self.ledgers: Ledgers  # set by attach_ledgers
        self.dead_letter_partitions = settings.partitions
        self.lock = asyncio.Lock()
        self.position: Position | None = None  # of the event being applied (None: a timer)
        self._staged: dict[int, dict[bytes, bytes | None]] = {}
        # (partition, key, what was staged before) of each put since `begin`.
        self._undo: list[tuple[int, bytes, object]] = []

    def attach_ledgers(self, dead_letter_topic: str, dead_letter_partitions: int) -> Ledgers:
        """The ledgers of this state's source partitions; its only outputs are dead letters."""
        self.dead_letter_partitions = dead_letter_partitions
        destinations: list[Destination] = [
            (dead_letter_topic, p) for p in range(dead_letter_partitions)
        ]
        self.ledgers = Ledgers(
            self.settings, self.table.name, TableLedgers(self.writer), lambda: destinations
        )
        return self.ledgers

    def _saved(self, raw_key: bytes) -> tuple[Position, dict[str, Any]] | None:
        for staged in self._staged.values():
            if raw_key in staged:
                value = staged[raw_key]
                return None if value is None else decode_record(value)
        raw = self.table.data.get(raw_key)
        return None if raw is None else decode_record(raw)

    def get(self, key: str) -> dict[str, Any] | None:
        """The current record of `key` (staged in this batch, else saved), or None.
        Raises AlreadyApplied when the saved record already holds the current event."""
        found = self._saved(key.encode())
        if found is None:
            return None
        position, record = found
        if self.position is not None and position >= self.position:
            raise AlreadyApplied(key)
        return record

    def put(self, key: str, record: dict[str, Any] | None) -> None:
        """Stage `record` for `key` (None deletes); written by `save`."""
        partition = self.partition_of(key)
        raw_key = key.encode()
        position = self.position
        if position is None:  # a timer's write: the record still holds the same events
            found = self._saved(raw_key)
            position = NEVER if found is None else found[0]
        value = None if record is None else encode_record(position, record)
        staged = self._staged.setdefault(partition, {})
        self._undo.append((partition, raw_key, staged.get(raw_key, _UNSTAGED)))
        staged[raw_key] = value

    def begin(self, position: Position | None = None) -> None:
        """Start applying the event at `position`: remember what `put` replaces, so
        that `rollback` can undo it."""
        self.position = position
        self._undo = []

    def rollback(self) -> None:
        """Undo every `put` since `begin` (an event whose processing failed)."""
        for partition, key, previous in reversed(self._undo):
            staged = self._staged[partition]
            if previous is _UNSTAGED:
                staged.pop(key, None)
            else:
                staged[key] = cast(bytes | None, previous)
        self._undo = []

    def partition_of(self, key: str) -> int:
        """The source (and changelog) partition of an entity id."""
        return partition_for(key.encode(), self.settings.partitions)

    async def save(self) -> None:
        """Write the staged records (the ledgers follow, see `apply_and_save`)."""
        put = self.writer.put
        for partition, staged in self._staged.items():
            for key, value in staged.items():
                await put(partition, key, value)
        self._staged.clear()
        self._undo = []
        self.position = None

    def records(self, owned_only: bool = True) -> list[dict[str, Any]]:
        """Every saved record (of this worker's partitions when `owned_only`)."""
        owned = {
            tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.source
        }
        found = []
        for key, value in list(self.table.data.items()):
            if is_bookkeeping(key) or key.startswith(LEGACY_OFFSET) or value is None:
                continue
            if owned_only and partition_for(key, self.settings.partitions) not in owned:
                continue
            found.append(decode_record(value)[1])
        return found


class DeadLetterFactory:
    """Collects the dead letters of a batch, made where the event was read."""

    def __init__(self, source: str, event_type: str, agent: str, keep_bytes: int) -> None:
        self.source = source
        self.keep_bytes = keep_bytes
        self.event_type = event_type
        self.agent = agent
        self.letters: list[DeadLetter] = []
        self.where: Inbound = Inbound(source, 0, 0, None)
        self.index: int | None = None

    def refuse(
        self, reason: str, message: str, event: dict[str, Any], rule: str | None = None
    ) -> None:
        """Dead-letter the event being applied (`rule`: the rule it broke)."""
        self.letters.append(
            DeadLetter(
                reason,
                message,
                self.where,
                orjson.dumps(event),
                batch_index=self.index,
                event_type=self.event_type,
                violation=None if rule is None else Violation(message, rule, "", ""),
                agent=self.agent,
            )
        )

    def failed(self, exc: Exception, original: Any) -> None:
        """Dead-letter the event being applied, whose processing raised `exc`."""
        self.letters.append(processing_error(
            self.agent, exc, self.where, original, self.keep_bytes, batch_index=self.index,
            event_type=self.event_type,
        ))


EventHandler = Callable[[KeyedState, dict[str, Any], DeadLetterFactory], None]


class Folded(Protocol):
    """An entity record that events are folded into (a session, an engine's status)."""

    def apply(self, event: dict[str, Any]) -> None: ...

    def to_json(self) -> dict[str, Any]: ...


def fold(
    state: KeyedState,
    letters: DeadLetterFactory,
    key: str,
    event: dict[str, Any],
    start: Callable[[dict[str, Any]], Folded],
    resume: Callable[[dict[str, Any]], Folded],
    what: str,
) -> None:
    """Fold one event into the record of entity `key`: `start` makes the record of an
    entity seen for the first time, `resume` reads a saved one. An event the record
    refuses (ValueError) is a `schema_violation` dead letter, the record unchanged."""
    record = state.get(key)
    try:
        if record is None:
            folded = start(event)
        else:
            folded = resume(record)
            folded.apply(event)
    except ValueError as exc:
        letters.refuse("schema_violation", f"{what}: {exc}", event)
        return
    state.put(key, folded.to_json())


def apply_batch(
    state: KeyedState,
    event_type: str,
    handle: EventHandler,
    messages: list[Any],
    ledgers: Mapping[Source, SourceLedger],
) -> tuple[DeadLetterFactory, set[Source]]:
    """Apply `handle` to every event of `messages` (each partition in offset order)
    not applied before; answer the batch's dead letters and its sources. An event (or
    message) whose processing raises is dead-lettered as a `processing_error` and the
    batch goes on; its staged writes are dropped."""
    letters = DeadLetterFactory(
        state.source, event_type, state.table.name, state.settings.dead_letter_keep_bytes
    )
    sources: set[Source] = set()
    for message in messages:
        partition = message.partition
        source = (state.source, partition)
        sources.add(source)
        ledger = ledgers[source]
        if ledger.applied(message.offset):
            continue  # saved before a restart
        ledger.applied_through(message.offset)
        letters.where = Inbound(state.source, partition, message.offset, None)
        letters.index = None
        try:
            value = orjson.loads(message.value) if message.value else None
        except orjson.JSONDecodeError as exc:
            letters.failed(exc, message.value or b"")
            continue
        docs = value if isinstance(value, list) else [value]
        for index, doc in enumerate(docs):
            letters.index = index if isinstance(value, list) else None
            if not isinstance(doc, dict):
                letters.failed(TypeError(f"{type(doc).__name__} is not an event object"), doc)
                continue
            state.begin((message.offset, -1 if letters.index is None else letters.index))
            try:
                handle(state, doc, letters)
            except AlreadyApplied:
                state.rollback()  # its record was saved before a crash, its ledger not
            except Exception as exc:  # this event is refused, the worker goes on
                if is_infrastructure(exc):
                    raise
                state.rollback()
                letters.failed(exc, doc)
    state.position = None
    return letters, sources


async def apply_and_save(
    state: KeyedState,
    event_type: str,
    handle: EventHandler,
    messages: list[Any],
    dead_letter_topic: str,
) -> None:
    """One batch of the protocol: apply, send and acknowledge the dead letters, write
    the records, then the ledgers."""
    ledgers = await state.ledgers.ensure((state.source, m.partition) for m in messages)
    letters, sources = apply_batch(state, event_type, handle, messages, ledgers)
    outputs = Outputs(state.app.producer, state.table.name, ledgers)
    await outputs.dead_letters(
        letters.letters, dead_letter_topic, state.dead_letter_partitions, time.time()
    )
    await outputs.acknowledged()
    await state.save()
    for source in sources:
        await state.ledgers.save(source)


def register_keyed_agent(
    app: faust.App,
    settings: Settings,
    names: TopicNames,
    state: KeyedState,
    event_type: str,
    handle: EventHandler,
    partitions: dict[str, int],
    after_batch: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Add the agent that applies `handle` to every event of `state.source`."""
    dead = names.dead_letter
    state.attach_ledgers(dead, partitions[dead])

    async def apply(messages: list[Message]) -> None:
        async with state.lock:
            await apply_and_save(state, event_type, handle, messages, dead)
        if after_batch is not None:
            await after_batch()

    def forget(revoked: set[Any]) -> None:
        state.ledgers.forget(
            (tp.topic, tp.partition) for tp in revoked if tp.topic == state.source
        )

    consume_in_bulk(
        app,
        [state.source],
        apply,
        doing=f"applying {event_type} events",
        max_batch=settings.state_take,
        within_s=settings.batch_within_s,
        name=f"{settings.app_id}.{state.table.name}",
        on_revoke=forget,
    )
