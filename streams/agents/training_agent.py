"""The training-sample agent: comparison winners become tiered training samples.

Each comparison is decided once (streams.domain.tiering): a sample (gold, silver, bronze),
`below_threshold`, or `winner_not_candidate` (a dead letter). The decision is kept in
a changelog-backed table keyed by comparison id, on the comparison's partition, so a
comparison published twice or delivered again yields one sample. Samples are
validated against their schema before they are written to engine.training-samples.

Exactly once on the topic: like the window agent, the partition's ledger (a table key
written last in each batch) remembers the last comparison offset decided and the next
offset of every output partition accounted for; a partition rebuilt after a crash reads
the samples written since, and does not write them again.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any, cast

import faust
import orjson

from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.dead_letters import DeadLetter, Inbound, is_infrastructure, processing_error
from streams.domain.tiering import Thresholds, make_sample
from streams.domain.validation import default_registry
from streams.durable.tails import written_since
from streams.kafka.partitioner import partition_for
from streams.runtime.failfast import or_exit

WINNER_NOT_CANDIDATE = "winner_not_candidate"
BELOW_THRESHOLD = "below_threshold"
SCHEMA_VIOLATION = "schema_violation"
LEDGER_PREFIX = b"ledger|"
AGENT = "training"


class TrainingProcessor:
    """Decides comparisons of the partitions this worker owns."""

    def __init__(
        self, app: faust.App, settings: Settings, table: faust.Table, names: TopicNames
    ) -> None:
        self.app = app
        self.settings = settings
        self.table = table
        self.names = names
        self.thresholds = Thresholds(
            gold=settings.tier_gold, silver=settings.tier_silver, bronze=settings.tier_bronze
        )
        self.source = names.typed["comparison_result"]
        self.output = names.typed["training_sample"]
        self.registry = default_registry()
        self.ledgers: dict[int, dict[str, Any]] = {}
        self.already: dict[int, set[str]] = {}
        self.lock = asyncio.Lock()

    def _ledger_key(self, partition: int) -> bytes:
        return LEDGER_PREFIX + str(partition).encode()

    async def _ensure(self, partition: int) -> dict[str, Any]:
        ledger = self.ledgers.get(partition)
        if ledger is not None:
            return ledger
        raw = self.table.data.get(self._ledger_key(partition))
        outputs = self.settings.partitions
        ledger = orjson.loads(raw) if raw else {"last": -1, "out": {}}
        offsets = {p: int(ledger["out"].get(str(p), 0)) for p in range(outputs)}
        self.already[partition] = await written_since(
            self.settings,
            self.output,
            offsets,
            lambda doc: doc.get("sample_id") if self._mine(doc, partition) else None,
        )
        self.ledgers[partition] = ledger
        return ledger

    def _mine(self, sample: dict[str, Any], partition: int) -> bool:
        source = sample.get("source_comparison_id")
        return isinstance(source, str) and (
            partition_for(source.encode(), self.settings.partitions) == partition
        )

    def revoke(self, tps: set[Any]) -> None:
        """Forget partitions this worker no longer owns."""
        for tp in tps:
            if tp.topic == self.source:
                self.ledgers.pop(tp.partition, None)
                self.already.pop(tp.partition, None)

    async def process(self, events: list[faust.EventT]) -> None:
        """Decide a batch of comparison messages."""
        async with self.lock:
            by_partition: dict[int, list[faust.EventT]] = {}
            for event in events:
                by_partition.setdefault(event.message.partition, []).append(event)
            for partition, group in by_partition.items():
                await self._process_partition(partition, group)

    async def _process_partition(self, partition: int, events: list[faust.EventT]) -> None:
        ledger = await self._ensure(partition)
        data = self.table.data
        decided: dict[bytes, bytes] = {}
        samples: list[dict[str, Any]] = []
        letters: list[DeadLetter] = []
        first = ledger["last"]
        for event in events:
            message = event.message
            if message.offset <= ledger["last"]:
                continue  # decided before a restart; the ledger was saved after it
            ledger["last"] = message.offset
            where = Inbound(self.source, partition, message.offset, None)
            try:
                value = orjson.loads(message.value) if message.value else None
            except orjson.JSONDecodeError as exc:
                letters.append(processing_error(
                AGENT, exc, where, message.value or b"", self.settings.dead_letter_keep_bytes,
                batch_index=None, event_type="comparison_result",
            ))
                continue
            docs = value if isinstance(value, list) else [value]
            stamp = message.timestamp if message.timestamp and message.timestamp > 0 else 0
            for index, comparison in enumerate(docs):
                batch_index = index if isinstance(value, list) else None
                try:
                    self._decide(comparison, where, batch_index, stamp, decided, samples, letters)
                except Exception as exc:  # this comparison is refused, the worker goes on
                    if is_infrastructure(exc):
                        raise
                    letters.append(processing_error(
                AGENT, exc, where, comparison, self.settings.dead_letter_keep_bytes,
                batch_index=batch_index, event_type="comparison_result",
            ))
        if ledger["last"] == first:
            return  # every message was decided before: nothing to write
        await self._emit(partition, ledger, samples, letters)
        for key, verdict in decided.items():
            data[key] = verdict
            self.table.send_changelog(partition, key, verdict)
        ledger_key = self._ledger_key(partition)
        raw = orjson.dumps(ledger)
        data[ledger_key] = raw
        self.table.send_changelog(partition, ledger_key, raw)

    def _decide(
        self,
        comparison: Any,
        where: Inbound,
        batch_index: int | None,
        stamp: float,
        decided: dict[bytes, bytes],
        samples: list[dict[str, Any]],
        letters: list[DeadLetter],
    ) -> None:
        """Decide one comparison: a sample, below threshold, or a dead letter."""
        if not isinstance(comparison, dict):
            raise TypeError(f"{type(comparison).__name__} is not a comparison object")
        key = str(comparison["comparison_id"]).encode()
        if key in decided or self.table.data.get(key) is not None:
            return  # the same comparison again: one decision, one sample
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
            decided[key] = reason.encode()
            return
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
            decided[key] = SCHEMA_VIOLATION.encode()
            return
        decided[key] = str(decision.sample["tier"]).encode()
        samples.append(decision.sample)

    async def _emit(
        self,
        partition: int,
        ledger: dict[str, Any],
        samples: list[dict[str, Any]],
        letters: list[DeadLetter],
    ) -> None:
        producer = self.app.producer
        already = self.already.get(partition, set())
        pending = []
        for sample in samples:
            if sample["sample_id"] in already:
                continue
            key = str(sample["sample_id"]).encode()
            where = partition_for(key, self.settings.partitions)
            pending.append(
                await producer.send(self.output, key, orjson.dumps(sample), where, None, None)
            )
        now = time.time()
        for letter in letters:
            await producer.send(
                self.names.dead_letter,
                letter.id.encode(),
                orjson.dumps(letter.to_record(now)),
                None,
                None,
                None,
            )
        for result in await asyncio.gather(*pending):
            out = ledger["out"]
            out[str(result.partition)] = max(out.get(str(result.partition), 0), result.offset + 1)

    def counts(self) -> Counter[str]:
        """Decisions of the comparison partitions this worker owns, by outcome."""
        owned = {
            tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.source
        }
        counts: Counter[str] = Counter()
        for key, value in list(self.table.data.items()):
            if key.startswith(LEDGER_PREFIX) or value is None:
                continue
            if partition_for(key, self.settings.partitions) in owned:
                counts[value.decode()] += 1
        return counts


def register_training(app: faust.App, settings: Settings, names: TopicNames) -> TrainingProcessor:
    """Add the training-sample agent and its decisions table to `app`."""
    table = cast(
        faust.Table,
        app.Table(
            "training-decisions",
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
            help="One decision per comparison id, and each partition's emission ledger.",
        ),
    )
    table.key_serializer = "raw"
    table.value_serializer = "raw"
    processor = TrainingProcessor(app, settings, table, names)
    source = app.topic(
        processor.source,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(source, name=f"{settings.app_id}.training")
    async def training(stream: faust.StreamT[Any]) -> None:
        async for events in stream.take_events(  # type: ignore[attr-defined]
            settings.router_take, within=settings.router_take_within_s
        ):
            await or_exit(processor.process(events), "deciding comparisons")

    def forget(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        processor.revoke(revoked)

    app.on_partitions_revoked.connect(forget)  # type: ignore[arg-type]
    return processor
