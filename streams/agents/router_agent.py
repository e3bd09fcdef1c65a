"""The router agent: read raw messages, route them (streams.domain.router), produce the results,
each exactly once even when the worker is killed mid-batch.

Each source partition's ledger (streams.durable.route_ledger) lives in a changelog table and
is saved once the batch's writes are acknowledged. Every written message carries the
source partition and highest source offset it holds, so a partition rebuilt after a
crash reads the destinations' tails past its ledger and writes, for a message
delivered again, only what is not there yet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

import faust
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.router import DeadLetter, Inbound, RoutedEvent, Router
from streams.durable.route_ledger import SourceLedger, rebuild, source_header
from streams.kafka.admin import client_options
from streams.kafka.packing import pack
from streams.kafka.partitioner import partition_for
from streams.runtime.failfast import or_exit
from streams.runtime.router_counters import RouterCounters

log = logging.getLogger(__name__)

Source = tuple[str, int]
Destination = tuple[str, int]


def ledger_key(source: Source) -> bytes:
    """Table key of a source partition's ledger."""
    return f"{source[0]}|{source[1]}".encode()


class RouterProcessor:
    """Routes batches of raw messages and keeps the ledgers of their source partitions."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        router: Router,
        partitions: dict[str, int],
        counters: RouterCounters,
        table: faust.Table,
    ) -> None:
        self.app = app
        self.settings = settings
        self.router = router
        self.names: TopicNames = router.names
        self.partitions = partitions
        self.counters = counters
        self.table = table
        self.ledgers: dict[Source, SourceLedger] = {}
        outputs = [*self.names.typed.values(), self.names.dead_letter]
        self.destinations: list[Destination] = [
            (topic, p) for topic in outputs for p in range(partitions[topic])
        ]

    async def _ensure(self, sources: set[Source]) -> None:
        """Load (or start) the ledgers of `sources` and rebuild them from the
        destinations' tails; one read of the tails for all of them."""
        missing = [s for s in sources if s not in self.ledgers]
        if not missing:
            return
        loaded: dict[Source, SourceLedger] = {}
        fresh: list[Source] = []
        for source in missing:
            raw = self.table.data.get(ledger_key(source))
            if raw is None:
                fresh.append(source)
            else:
                loaded[source] = SourceLedger.from_state(orjson.loads(raw))
        consumer = AIOKafkaConsumer(**client_options(self.settings), enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(t, p) for t, p in self.destinations]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            for source in fresh:
                # Nothing of this app id was written before: the tails start now. Saved
                # at once, so a crash in the first batch rebuilds from here.
                ledger = SourceLedger(out={(tp.topic, tp.partition): e for tp, e in ends.items()})
                loaded[source] = ledger
                self._save(source, ledger)
            if fresh:
                await self.app.producer.flush()
            starts = {
                tp: min(ledger.out.get((tp.topic, tp.partition), 0) for ledger in loaded.values())
                for tp in tps
            }
            found: list[tuple[Destination, bytes | None, int]] = []
            for tp in tps:
                if starts[tp] >= ends[tp]:
                    continue
                consumer.seek(tp, starts[tp])
                while await consumer.position(tp) < ends[tp]:
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    for record in batch.get(tp, []):
                        header = dict(record.headers or ()).get("es-source")
                        found.append(((tp.topic, tp.partition), header, record.offset))
        finally:
            await consumer.stop()
        for source, ledger in loaded.items():
            rebuild(
                ledger,
                source,
                ((d, header) for d, header, offset in found if offset >= ledger.out.get(d, 0)),
            )
            self.ledgers[source] = ledger

    def _save(self, source: Source, ledger: SourceLedger) -> None:
        key, value = ledger_key(source), orjson.dumps(ledger.to_state())
        self.table.data[key] = value
        self.table.send_changelog(source[1], key, value)

    def revoke(self, tps: set[Any]) -> None:
        """Forget the ledgers of partitions this worker no longer owns."""
        for tp in tps:
            self.ledgers.pop((tp.topic, tp.partition), None)

    async def process(self, events: list[faust.EventT]) -> None:
        """Route a batch of raw messages."""
        by_source: dict[Source, list[Any]] = {}
        for inbound in events:
            message = inbound.message
            by_source.setdefault((message.topic, message.partition), []).append(message)
        await self._ensure(set(by_source))
        producer = self.app.producer
        names = self.names
        dead_partitions = self.partitions[names.dead_letter]
        pending: list[tuple[Source, Destination, Any]] = []
        now = time.time()
        for source, messages in by_source.items():
            ledger = self.ledgers[source]
            routed: list[RoutedEvent] = []
            letters: list[tuple[Destination, DeadLetter]] = []
            top = ledger.last
            for message in messages:
                offset = message.offset
                if offset <= ledger.last:
                    continue  # routed and saved before a restart
                top = max(top, offset)
                self.counters.messages_in[message.topic] += 1
                stamp = message.timestamp
                result = self.router.route(
                    Inbound(
                        message.topic,
                        message.partition,
                        offset,
                        message.value,
                        message.headers or (),
                        int(stamp * 1000) if stamp and stamp > 0 else None,
                    )
                )
                for event in result.events:
                    topic = names.typed[event.event_type]
                    where = (topic, partition_for(event.key.encode(), self.partitions[topic]))
                    if ledger.needs(offset, where):
                        routed.append(event)
                for letter in result.dead_letters:
                    where = (names.dead_letter, partition_for(letter.id.encode(), dead_partitions))
                    if ledger.needs(offset, where):
                        letters.append((where, letter))
            for out in pack(routed, names.typed, self.partitions, self.settings.output_batch_bytes):
                headers = [source_header(*source, out.source_position[0])]
                future = await producer.send(
                    out.topic, out.key, out.value, out.partition, None, headers
                )
                pending.append((source, (out.topic, out.partition), future))
                self.counters.messages_out[out.topic] += 1
            for event in routed:
                self.counters.events_routed[event.event_type] += 1
            for where, letter in letters:
                future = await producer.send(
                    where[0],
                    letter.id.encode(),
                    orjson.dumps(letter.to_record(now)),
                    where[1],
                    None,
                    [source_header(*source, letter.source.offset)],
                )
                pending.append((source, where, future))
                self.counters.dead_letters[letter.reason] += 1
            ledger.routed_through(top)
        results = await asyncio.gather(*(future for _, _, future in pending))
        for (source, destination, _), result in zip(pending, results, strict=True):
            self.ledgers[source].acknowledged(destination, result.offset + 1)
        for source in by_source:
            self._save(source, self.ledgers[source])


def register_router(
    app: faust.App,
    settings: Settings,
    router: Router,
    partitions: dict[str, int],
    counters: RouterCounters,
) -> RouterProcessor:
    """Add the router agent and its ledger table to `app`. `partitions` maps each
    output topic to its partition count as the cluster has it."""
    names: TopicNames = router.names
    table = cast(
        faust.Table,
        app.Table(
            "router-ledger",
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
            help="Per source partition: what the router has written where.",
        ),
    )
    table.key_serializer = "raw"
    table.value_serializer = "raw"
    processor = RouterProcessor(app, settings, router, partitions, counters, table)
    source = app.topic(
        *names.inputs(),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(source, name=f"{settings.app_id}.router")
    async def route(stream: faust.StreamT[Any]) -> None:
        # take_events is on faust's Stream, not on its StreamT protocol.
        async for events in stream.take_events(  # type: ignore[attr-defined]
            settings.router_take, within=settings.router_take_within_s
        ):
            await or_exit(processor.process(events), "routing")

    def forget(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        processor.revoke(revoked)

    app.on_partitions_revoked.connect(forget)  # type: ignore[arg-type]
    return processor
