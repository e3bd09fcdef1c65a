"""JSONL sink agents: one per enabled channel, writing each topic partition to its own
exactly-once files (streams.durable.filesink) under <data dir>/jsonl/.

A take of up to `buffer_size` messages, or what arrived within `auto_flush_seconds`,
is written as one append and fsync per partition; only then does Faust ack the
messages, so its committed offsets never pass what is on disk, and the file's
checkpoint skips whatever is delivered again. Records are also deduplicated by id
(streams.config.channels): the ids already in a partition's files are read back when it is
opened, so the same event published twice is written once.

A message that is not JSON, or a record that is not an object or has no id, is a
`processing_error` dead letter of agent `sink.<channel>`. Exactly once by the protocol
of streams.durable.exactly_once, with the partition's checkpoint as its ledger: dead
letters are acknowledged by the broker before the batch's lines are written, and the
checkpoint that commits the lines also records how far the dead-letter partitions are
accounted for; after a crash in between, the takeover finds the dead letters already
written and does not send them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.types import Message

from streams.config.channels import CHANNELS, Channel, ChannelConfig, canonical_json
from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.dead_letters import DeadLetter, Inbound, is_infrastructure, processing_error
from streams.durable.exactly_once import (
    Destination,
    Ledgers,
    Outputs,
    Source,
    SourceLedger,
    Tails,
    failpoint,
)
from streams.durable.filesink import PartitionFile, PartitionLocked, read_lines
from streams.runtime.bulk import consume_in_bulk
from streams.runtime.handoff import Handoff
from streams.runtime.histogram import Histogram

log = logging.getLogger(__name__)

LOCK_WAIT_S = 60.0

class FileLedgers:
    """The sink's ledgers: the checkpoints of its open partition files."""

    def __init__(self, files: dict[int, PartitionFile]) -> None:
        self.files = files

    def load(self, source: Source) -> SourceLedger | None:
        """The ledger in the partition's checkpoint; None before it was started."""
        checkpoint = self.files[source[1]].checkpoint
        if checkpoint.out is None:
            return None
        return SourceLedger(checkpoint.offset, {(t, p): o for t, p, o in checkpoint.out})

    def start(self, source: Source) -> SourceLedger:
        """The files hold every line up to their checkpoint's offset already."""
        return SourceLedger(self.files[source[1]].last_offset)

    async def save(self, source: Source, ledger: SourceLedger) -> None:
        """Commit the ledger's output offsets in the checkpoint (fsynced)."""
        await asyncio.to_thread(self.files[source[1]].write, [], ledger.last, ledger.out)

    async def durable(self) -> None:
        """Every save is durable when it returns."""


class ChannelSink:
    """The open partition files of one channel on this worker."""

    def __init__(
        self,
        app: Any,
        settings: Settings,
        channel: Channel,
        config: ChannelConfig,
        directory: Path,
        topic: str,
        dead_letters: tuple[str, int],
        tails: Callable[[], Tails] | None = None,
        handoff: Handoff | None = None,
    ) -> None:
        self.app = app
        self.handoff = handoff
        if handoff is not None:
            handoff.reads(topic)
        self.channel = channel
        self.config = config
        self.directory = directory
        self.topic = topic
        self.agent = f"sink.{channel.name}"
        self.dead_letter_topic, self.dead_letter_partitions = dead_letters
        self.keep_bytes = settings.dead_letter_keep_bytes
        destinations: list[Destination] = [
            (self.dead_letter_topic, p) for p in range(self.dead_letter_partitions)
        ]
        self.files: dict[int, PartitionFile] = {}
        self.ledgers = Ledgers(
            settings, self.agent, FileLedgers(self.files), lambda: destinations, tails
        )
        self.seen: dict[int, set[Hashable]] = {}
        self.refused = 0
        self.lock = asyncio.Lock()
        self.lines_written = 0
        self.duplicates = 0
        self.bytes_written = 0
        # One observation per partition flush: the append, fsync and checkpoint replace.
        self.flush_seconds = Histogram()

    async def _open(self, partition: int, wait_s: float = LOCK_WAIT_S) -> PartitionFile:
        found = self.files.get(partition)
        if found is not None:
            return found
        part = PartitionFile(self.directory, self.config, partition)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            try:
                await asyncio.to_thread(part.open)
                break
            except PartitionLocked:
                # The previous owner is still shutting down (or a stale process holds it).
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.1)
        lines = await asyncio.to_thread(read_lines, self.directory, self.config, partition)
        record_id = self.channel.record_id
        self.seen[partition] = {record_id(orjson.loads(line)) for line in lines}
        self.files[partition] = part
        return part

    async def write(self, messages: Iterable[Message]) -> None:
        """Write the records of `messages` (of this channel's topic, each partition in
        offset order): dead letters first, acknowledged, then the lines and the
        checkpoint that is the partition's ledger."""
        by_partition: dict[int, list[Message]] = {}
        for message in messages:
            by_partition.setdefault(message.partition, []).append(message)
        async with self.lock:
            for partition in by_partition:
                await self._open(partition)
            ledgers = await self.ledgers.ensure((self.topic, p) for p in by_partition)
            batches: list[tuple[PartitionFile, list[tuple[int, bytes]], set[Hashable], int]] = []
            letters: list[DeadLetter] = []
            for partition, taken in by_partition.items():
                ledger = ledgers[(self.topic, partition)]
                seen = self.seen[partition]
                fresh: set[Hashable] = set()
                lines: list[tuple[int, bytes]] = []
                for message in taken:
                    if ledger.applied(message.offset):
                        continue
                    where = Inbound(self.topic, partition, message.offset, None)
                    handed = None if self.handoff is None else self.handoff.take(
                        self.topic, partition, message.offset, message.value
                    )
                    self._lines(where, message.value, seen, fresh, lines, letters, handed)
                    ledger.applied_through(message.offset)
                batches.append((self.files[partition], lines, fresh, ledger.last))
            outputs = Outputs(self.app.producer, self.agent, ledgers)
            sent = await outputs.dead_letters(
                letters, self.dead_letter_topic, self.dead_letter_partitions, time.time()
            )
            self.refused += len(sent)
            await outputs.acknowledged()
            for part, lines, fresh, through in batches:
                ledger = ledgers[(self.topic, part.partition)]
                started = time.perf_counter()
                written = await asyncio.to_thread(part.write, lines, through, ledger.out)
                if lines:
                    self.flush_seconds.observe(time.perf_counter() - started)
                self.lines_written += written
                self.bytes_written += sum(len(line) + 1 for _, line in lines)
                self.seen[part.partition] |= fresh
            if letters or any(lines for _, lines, _, _ in batches):
                await failpoint(self.agent, "saved")  # the checkpoint is the ledger

    def _lines(
        self,
        where: Inbound,
        value: bytes | None,
        seen: set[Hashable],
        fresh: set[Hashable],
        lines: list[tuple[int, bytes]],
        letters: list[DeadLetter],
        handed: list[Any] | None = None,
    ) -> None:
        """The new lines of one message; what cannot be a line becomes a dead letter.
        `handed`: its records as the router of this worker decoded them, if it did."""
        doc: Any
        if handed:  # a single record was written as itself, several as a JSON array
            doc = handed if value and value[:1] == b"[" else handed[0]
        else:
            try:
                doc = orjson.loads(value) if value else None
            except orjson.JSONDecodeError as exc:
                letters.append(processing_error(
                    self.agent, exc, where, value or b"", self.keep_bytes,
                    batch_index=None, event_type=self.channel.event_type,
                ))
                return
        records = doc if isinstance(doc, list) else [doc]
        record_id = self.channel.record_id
        canonical = self.channel.canonical
        for index, record in enumerate(records):
            batch_index = index if isinstance(doc, list) else None
            rid: Hashable
            try:
                if not isinstance(record, dict):
                    raise TypeError(f"{type(record).__name__} is not a record object")
                if canonical:  # the id is the line's hash (Channel.canonical)
                    line = canonical_json(record)
                    rid = hashlib.sha256(line).digest()
                else:
                    rid = record_id(record)
                    line = orjson.dumps(record)
            except Exception as exc:  # this record is refused, the worker goes on
                if is_infrastructure(exc):
                    raise
                letters.append(processing_error(
                self.agent, exc, where, record, self.keep_bytes,
                batch_index=batch_index, event_type=self.channel.event_type,
            ))
                continue
            if rid in seen or rid in fresh:
                self.duplicates += 1
                continue
            fresh.add(rid)
            lines.append((where.offset, line))

    async def open_all(self, partitions: Iterable[int]) -> None:
        """Open the files of `partitions`, recovering them to their checkpoints. Runs
        inside the rebalance, so it never waits for a lock: a partition whose previous
        owner still holds it is opened by its next write instead."""
        async with self.lock:
            for partition in partitions:
                with contextlib.suppress(PartitionLocked):
                    await self._open(partition, wait_s=0.0)

    async def close(self, partitions: Iterable[int] | None = None) -> None:
        """Close (and unlock) the files of `partitions` (all when None)."""
        async with self.lock:
            for partition in list(self.files if partitions is None else partitions):
                part = self.files.pop(partition, None)
                self.seen.pop(partition, None)
                self.ledgers.forget([(self.topic, partition)])
                if part is not None:
                    part.close()


def register_sinks(
    app: faust.App,
    settings: Settings,
    names: TopicNames,
    partitions: dict[str, int],
    handoff: Handoff | None = None,
) -> list[ChannelSink]:
    """Add a sink agent for every enabled channel; each takes the messages the router
    of this worker decoded from `handoff`."""
    directory = settings.data_dir / "jsonl"
    sinks = []
    configs = {c.name: c for c in settings.sinks}
    for channel in CHANNELS:
        config = configs[channel.name]
        if config.enabled:
            sinks.append(_register(
                app, settings, channel, config, directory, names, partitions, handoff
            ))  # fmt: skip
    return sinks


def _register(
    app: faust.App,
    settings: Settings,
    channel: Channel,
    config: ChannelConfig,
    directory: Path,
    names: TopicNames,
    partitions: dict[str, int],
    handoff: Handoff | None,
) -> ChannelSink:
    topic_name = channel.topic(names)
    dead = names.dead_letter
    sink = ChannelSink(
        app, settings, channel, config, directory, topic_name, (dead, partitions[dead]),
        handoff=handoff,
    )  # fmt: skip

    async def release(revoked: set[Any]) -> None:
        await sink.close(tp.partition for tp in revoked if tp.topic == topic_name)

    consume_in_bulk(
        app,
        [topic_name],
        sink.write,
        doing=f"writing {channel.name} files",
        max_batch=config.buffer_size,
        within_s=config.auto_flush_seconds,
        name=f"{settings.app_id}.sink.{channel.name}",
        on_revoke=release,
    )

    async def recover(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        # Open (and so recover: cut torn tails) every assigned partition's files now,
        # not when its next record arrives: a partition may get no more records.
        await sink.open_all(tp.partition for tp in assigned if tp.topic == topic_name)

    app.on_partitions_assigned.connect(recover)  # type: ignore[arg-type]
    return sink
