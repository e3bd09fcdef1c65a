"""The training-sample agent: comparison winners become tiered training samples.

Each comparison is decided once (streams.domain.tiering): a sample (gold, silver, bronze),
`below_threshold`, or `winner_not_candidate` (a dead letter). The decision is kept in
a changelog-backed table keyed by comparison id, on the comparison's partition, so a
comparison published twice or delivered again yields one sample. Samples are
validated against their schema before they are written to engine.training-samples.

Exactly once by the protocol of streams.durable.exactly_once: samples and dead letters
name the position of their comparison, the partition's ledger is the last write of its
batch, and a decision already in the table (saved without its ledger before a crash)
is not made twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import faust
import orjson
from faust.types import Message

from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.dead_letters import DeadLetter, Inbound, is_infrastructure, processing_error
from streams.domain.tiering import Thresholds, make_sample
from streams.domain.validation import default_registry
from streams.durable.exactly_once import (
    Destination,
    Ledgers,
    Outputs,
    Position,
    TableLedgers,
    TableWriter,
    is_bookkeeping,
)
from streams.kafka.partitioner import partition_for
from streams.runtime.app import raw_table
from streams.runtime.bulk import consume_in_bulk

WINNER_NOT_CANDIDATE = "winner_not_candidate"
BELOW_THRESHOLD = "below_threshold"
SCHEMA_VIOLATION = "schema_violation"
AGENT = "training"


class TrainingProcessor:
    """Decides comparisons of the partitions this worker owns."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        table: faust.Table,
        names: TopicNames,
        partitions: dict[str, int],
    ) -> None:
        self.app = app
        self.settings = settings
        self.table = table
        self.names = names
        self.partitions = partitions
        self.thresholds = Thresholds(
            gold=settings.tier_gold, silver=settings.tier_silver, bronze=settings.tier_bronze
        )
        self.source = names.typed["comparison_result"]
        self.output = names.typed["training_sample"]
        self.registry = default_registry()
        self.writer = TableWriter(app, table)
        destinations: list[Destination] = [
            (topic, p) for topic in (self.output, names.dead_letter)
            for p in range(partitions[topic])
        ]
        self.ledgers = Ledgers(settings, AGENT, TableLedgers(self.writer), lambda: destinations)
        self.lock = asyncio.Lock()

    def revoke(self, tps: set[Any]) -> None:
        """Forget partitions this worker no longer owns."""
        self.ledgers.forget((tp.topic, tp.partition) for tp in tps if tp.topic == self.source)

    async def process(self, messages: list[Message]) -> None:
        """Decide a batch of comparison messages (each partition in offset order)."""
        async with self.lock:
            sources = {(self.source, m.partition) for m in messages}
            ledgers = await self.ledgers.ensure(sources)
            outputs = Outputs(self.app.producer, AGENT, ledgers)
            decided: dict[tuple[int, bytes], bytes] = {}
            letters: list[DeadLetter] = []
            for message in messages:
                ledger = ledgers[(self.source, message.partition)]
                if ledger.applied(message.offset):
                    continue  # decided before a restart; the ledger was saved after it
                await self._decide_message(message, outputs, decided, letters)
                ledger.applied_through(message.offset)
            dead = self.names.dead_letter
            await outputs.dead_letters(letters, dead, self.partitions[dead], time.time())
            await outputs.acknowledged()
            for (partition, key), verdict in decided.items():
                await self.writer.put(partition, key, verdict)
            for source in sources:
                await self.ledgers.save(source)

    async def _decide_message(
        self,
        message: Any,
        outputs: Outputs,
        decided: dict[tuple[int, bytes], bytes],
        letters: list[DeadLetter],
    ) -> None:
        partition = message.partition
        where = Inbound(self.source, partition, message.offset, None)
        keep = self.settings.dead_letter_keep_bytes
        try:
            value = orjson.loads(message.value) if message.value else None
        except orjson.JSONDecodeError as exc:
            letters.append(processing_error(
                AGENT, exc, where, message.value or b"", keep,
                batch_index=None, event_type="comparison_result",
            ))
            return
        docs = value if isinstance(value, list) else [value]
        stamp = message.timestamp if message.timestamp and message.timestamp > 0 else 0
        for index, comparison in enumerate(docs):
            batch_index = index if isinstance(value, list) else None
            try:
                sample = self._decide(comparison, where, batch_index, stamp, decided, letters)
            except Exception as exc:  # this comparison is refused, the worker goes on
                if is_infrastructure(exc):
                    raise
                letters.append(processing_error(
                    AGENT, exc, where, comparison, keep,
                    batch_index=batch_index, event_type="comparison_result",
                ))
                continue
            if sample is not None:
                position: Position = (message.offset, -1 if batch_index is None else batch_index)
                key = str(sample["sample_id"]).encode()
                output = (self.output, partition_for(key, self.partitions[self.output]))
                await outputs.send(
                    (self.source, partition), position, output, key, orjson.dumps(sample)
                )

    def _decide(
        self,
        comparison: Any,
        where: Inbound,
        batch_index: int | None,
        stamp: float,
        decided: dict[tuple[int, bytes], bytes],
        letters: list[DeadLetter],
    ) -> dict[str, Any] | None:
        """Decide one comparison: a sample (answered), below threshold, or a dead letter."""
        if not isinstance(comparison, dict):
            raise TypeError(f"{type(comparison).__name__} is not a comparison object")
        key = str(comparison["comparison_id"]).encode()
        slot = (where.partition, key)
        if slot in decided or self.table.data.get(key) is not None:
            return None  # the same comparison again: one decision, one sample
        decision = make_sample(comparison, self.thresholds, created_at=stamp)
        if decision.sample is None:
            reason = decision.reason or BELOW_THRESHOLD
            if reason == WINNER_NOT_CANDIDATE:
                letters.append(
                    DeadLetter(
                        WINNER_NOT_CANDIDATE,
                        f"winner {comparison['winner']['engine_id']!r} is not among "
                        "the candidates",
                        where,
                        orjson.dumps(comparison),
                        batch_index=batch_index,
                        event_type="comparison_result",
                        agent=AGENT,
                    )
                )
            decided[slot] = reason.encode()
            return None
        violation = self.registry.check("training_sample", decision.sample)
        if violation is not None:
            letters.append(
                DeadLetter(
                    SCHEMA_VIOLATION,
                    f"generated sample is invalid: {violation.message}",
                    where,
                    orjson.dumps(decision.sample),
                    batch_index=batch_index,
                    event_type="training_sample",
                    violation=violation,
                    agent=AGENT,
                )
            )
            decided[slot] = SCHEMA_VIOLATION.encode()
            return None
        decided[slot] = str(decision.sample["tier"]).encode()
        return decision.sample

    def counts(self) -> Counter[str]:
        """Decisions of the comparison partitions this worker owns, by outcome."""
        owned = {
            tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.source
        }
        counts: Counter[str] = Counter()
        for key, value in list(self.table.data.items()):
            # A decision is one word; a JSON object is a ledger of a version before
            # ledgers had keys of their own.
            if is_bookkeeping(key) or value is None or value[:1] == b"{":
                continue
            if partition_for(key, self.settings.partitions) in owned:
                counts[value.decode()] += 1
        return counts


def register_training(
    app: faust.App, settings: Settings, names: TopicNames, partitions: dict[str, int]
) -> TrainingProcessor:
    """Add the training-sample agent and its decisions table to `app`."""
    table = raw_table(
        app,
        "training-decisions",
        settings.partitions,
        "One decision per comparison id, and each partition's ledger.",
    )
    processor = TrainingProcessor(app, settings, table, names, partitions)
    consume_in_bulk(
        app,
        [processor.source],
        processor.process,
        doing="deciding comparisons",
        max_batch=settings.state_take,
        within_s=settings.batch_within_s,
        name=f"{settings.app_id}.training",
        on_revoke=processor.revoke,
    )
    return processor
