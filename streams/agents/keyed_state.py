"""A changelog-backed table of JSON records keyed by entity id, fed by one typed topic.

The three state agents (jobs, sessions, engine status) share this shape: a message
of the source topic holds one event or a batch; each event updates the record of
its entity; records are written once per key per batch; and each source partition's
last applied offset is written after its records. Since all writes of a partition
go to the same changelog partition in order, a saved offset means every record
before it was saved too: a message delivered again after a crash is skipped whole.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import faust
import orjson

from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.dead_letters import DeadLetter, Inbound, is_infrastructure, processing_error
from streams.domain.validation import Violation
from streams.kafka.partitioner import partition_for
from streams.runtime.failfast import or_exit

OFFSET_PREFIX = b"\x00offset|"
_UNSTAGED = object()  # nothing was staged for the key


class KeyedState:
    """Records of one entity type, and the batch being applied to them."""

    def __init__(self, app: faust.App, settings: Settings, name: str, source: str) -> None:
        self.app = app
        self.settings = settings
        self.source = source
        self.table = cast(
            faust.Table,
            app.Table(name, partitions=settings.partitions, key_type=bytes, value_type=bytes),
        )
        # Keys and values are bytes already (ids and orjson); stored as they are.
        self.table.key_serializer = "raw"
        self.table.value_serializer = "raw"
        self.lock = asyncio.Lock()
        self._staged: dict[int, dict[bytes, bytes | None]] = {}
        # (partition, key, what was staged before) of each put since `begin`.
        self._undo: list[tuple[int, bytes, object]] = []

    def get(self, key: str) -> dict[str, Any] | None:
        """The current record of `key` (staged in this batch, else saved), or None."""
        raw_key = key.encode()
        for staged in self._staged.values():
            if raw_key in staged:
                value = staged[raw_key]
                return None if value is None else dict(orjson.loads(value))
        raw = self.table.data.get(raw_key)
        return None if raw is None else dict(orjson.loads(raw))

    def put(self, key: str, record: dict[str, Any] | None) -> None:
        """Stage `record` for `key` (None deletes); written by `save`."""
        partition = self.partition_of(key)
        value = None if record is None else orjson.dumps(record)
        staged = self._staged.setdefault(partition, {})
        raw_key = key.encode()
        self._undo.append((partition, raw_key, staged.get(raw_key, _UNSTAGED)))
        staged[raw_key] = value

    def begin(self) -> None:
        """Start remembering what `put` replaces, so that `rollback` can undo it."""
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

    def applied_offset(self, partition: int) -> int:
        """The last source offset of `partition` whose effects are saved (-1: none)."""
        raw = self.table.data.get(OFFSET_PREFIX + str(partition).encode())
        return -1 if raw is None else int(raw)

    def save(self, offsets: dict[int, int]) -> None:
        """Write the staged records, then each partition's applied offset."""
        data = self.table.data
        for partition, staged in self._staged.items():
            for key, value in staged.items():
                if value is None:
                    data.pop(key, None)
                else:
                    data[key] = value
                self.table.send_changelog(partition, key, value)
        self._staged.clear()
        self._undo = []
        for partition, offset in offsets.items():
            key = OFFSET_PREFIX + str(partition).encode()
            value = str(offset).encode()
            data[key] = value
            self.table.send_changelog(partition, key, value)

    def records(self, owned_only: bool = True) -> list[dict[str, Any]]:
        """Every saved record (of this worker's partitions when `owned_only`)."""
        owned = {
            tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.source
        }
        found = []
        for key, value in list(self.table.data.items()):
            if key.startswith(OFFSET_PREFIX) or value is None:
                continue
            if owned_only and partition_for(key, self.settings.partitions) not in owned:
                continue
            found.append(dict(orjson.loads(value)))
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


def apply_batch(
    state: KeyedState,
    event_type: str,
    handle: EventHandler,
    messages: list[Any],
) -> tuple[DeadLetterFactory, dict[int, int]]:
    """Apply `handle` to every event of `messages` (each partition in offset order)
    not applied before; answer the batch's dead letters and, per partition, the last
    offset applied. An event (or message) whose processing raises is dead-lettered
    as a `processing_error` and the batch goes on; its staged writes are dropped."""
    letters = DeadLetterFactory(
        state.source, event_type, state.table.name, state.settings.dead_letter_keep_bytes
    )
    offsets: dict[int, int] = {}
    for message in messages:
        partition = message.partition
        if message.offset <= offsets.get(partition, state.applied_offset(partition)):
            continue  # already saved before a restart
        letters.where = Inbound(state.source, partition, message.offset, None)
        letters.index = None
        offsets[partition] = message.offset
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
            state.begin()
            try:
                handle(state, doc, letters)
            except Exception as exc:  # this event is refused, the worker goes on
                if is_infrastructure(exc):
                    raise
                state.rollback()
                letters.failed(exc, doc)
    return letters, offsets


def register_keyed_agent(
    app: faust.App,
    settings: Settings,
    names: TopicNames,
    state: KeyedState,
    event_type: str,
    handle: EventHandler,
    after_batch: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Add the agent that applies `handle` to every event of `state.source`."""
    source = app.topic(
        state.source, key_type=bytes, value_type=bytes, key_serializer="raw",
        value_serializer="raw",
    )

    async def apply(events: list[faust.EventT]) -> None:
        async with state.lock:
            letters, offsets = apply_batch(
                state, event_type, handle, [event.message for event in events]
            )
            now = time.time()
            for letter in letters.letters:
                await app.producer.send(
                    names.dead_letter, letter.id.encode(),
                    orjson.dumps(letter.to_record(now)), None, None, None,
                )
            state.save(offsets)
        if after_batch is not None:
            await after_batch()

    @app.agent(source, name=f"{settings.app_id}.{state.table.name}")
    async def keyed_agent(stream: faust.StreamT[Any]) -> None:
        async for events in stream.take_events(  # type: ignore[attr-defined]
            settings.router_take, within=settings.router_take_within_s
        ):
            await or_exit(apply(events), f"applying {event_type} events")
