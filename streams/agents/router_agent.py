"""The router agent: read raw messages, route them (streams.domain.router), produce the results,
each exactly once even when the worker is killed mid-batch.

Exactly once by the protocol of streams.durable.exactly_once: each raw source
partition's ledger lives in the `router-ledger` table and is saved once the batch's
writes are acknowledged; every routed message names the position of the last event it
holds, so a partition taken over after a crash writes, for a message delivered again,
only what is not there yet.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any, cast

import faust
from faust.types import Message

from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.dead_letters import DeadLetter
from streams.domain.router import Inbound, RoutedEvent, Router
from streams.durable.exactly_once import (
    Destination,
    Ledgers,
    Outputs,
    Source,
    TableLedgers,
    TableWriter,
)
from streams.kafka.packing import pack
from streams.kafka.partitioner import partition_for
from streams.runtime.app import raw_table
from streams.runtime.bulk import consume_in_bulk
from streams.runtime.handoff import Handoff
from streams.runtime.router_counters import RouterCounters

log = logging.getLogger(__name__)

AGENT = "router"

# A batch of input is at most this many bytes (about 12,000 events), however many
# events its messages hold: enough to spread the per-batch costs, and small enough that
# the readers downstream find its events in the handoff (streams.runtime.handoff)
# instead of decoding them again.
BATCH_BYTES = 4 * 1024 * 1024


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
        handoff: Handoff | None = None,
    ) -> None:
        self.app = app
        self.handoff = handoff
        self.settings = settings
        self.router = router
        self.names: TopicNames = router.names
        self.partitions = partitions
        self.counters = counters
        outputs = [*self.names.typed.values(), self.names.dead_letter]
        destinations: list[Destination] = [
            (topic, p) for topic in outputs for p in range(partitions[topic])
        ]
        self.ledgers = Ledgers(
            settings, AGENT, TableLedgers(TableWriter(app, table)), lambda: destinations
        )

    def revoke(self, tps: set[Any]) -> None:
        """Forget the ledgers of partitions this worker no longer owns."""
        self.ledgers.forget((tp.topic, tp.partition) for tp in tps)

    async def process(self, messages: list[Message]) -> None:
        """Route a batch of raw messages (each partition's in offset order)."""
        by_source: dict[Source, list[Message]] = {}
        for message in messages:
            by_source.setdefault((message.topic, message.partition), []).append(message)
        ledgers = await self.ledgers.ensure(by_source)
        outputs = Outputs(self.app.producer, AGENT, ledgers)
        names = self.names
        dead_partitions = self.partitions[names.dead_letter]
        now = time.time()
        for source, taken in by_source.items():
            ledger = ledgers[source]
            routed: list[RoutedEvent] = []
            letters: list[DeadLetter] = []
            top = ledger.last
            for message in taken:
                offset = message.offset
                # At or below what is routed: saved before a restart, or the same message
                # delivered twice into this batch (a partition read again across a
                # rebalance). Each partition comes in offset order, so nothing is lost.
                if offset <= top:
                    continue
                top = offset
                self.counters.messages_in[message.topic] += 1
                stamp = message.timestamp
                result = self.router.route(
                    Inbound(
                        message.topic,
                        message.partition,
                        offset,
                        message.value,
                        cast(list[tuple[str, bytes]], message.headers or []),
                        int(stamp * 1000) if stamp and stamp > 0 else None,
                    )
                )
                for event in result.events:
                    topic = names.typed[event.event_type]
                    where = (topic, partition_for(event.key.encode(), self.partitions[topic]))
                    if ledger.needs(where, (offset, event.index), None):
                        routed.append(event)
                letters.extend(result.dead_letters)
            handoff = self.handoff
            for out in pack(routed, names.typed, self.partitions, self.settings.output_batch_bytes):
                written = None
                if handoff is not None and out.docs and handoff.wants(out.topic):
                    written = functools.partial(  # called with the offset
                        handoff.put, out.topic, out.partition, value=out.value, docs=out.docs
                    )
                await outputs.send(
                    source, out.source_position, (out.topic, out.partition), out.key, out.value,
                    on_written=written,
                )  # fmt: skip
                self.counters.messages_out[out.topic] += 1
            for event in routed:
                self.counters.events_routed[event.event_type] += 1
            sent = await outputs.dead_letters(letters, names.dead_letter, dead_partitions, now)
            for letter in sent:
                self.counters.dead_letters[letter.reason] += 1
            ledger.applied_through(top)
        await outputs.acknowledged()
        for source in by_source:
            await self.ledgers.save(source)


def register_router(
    app: faust.App,
    settings: Settings,
    router: Router,
    partitions: dict[str, int],
    counters: RouterCounters,
    handoff: Handoff | None = None,
) -> RouterProcessor:
    """Add the router agent and its ledger table to `app`. `partitions` maps each
    output topic to its partition count as the cluster has it; the decoded events of
    what it writes go to `handoff`, for the readers of the same worker."""
    names: TopicNames = router.names
    table = raw_table(
        app,
        "router-ledger",
        settings.partitions,
        "Per source partition: what the router has applied and written where.",
    )
    processor = RouterProcessor(app, settings, router, partitions, counters, table, handoff)
    consume_in_bulk(
        app,
        names.inputs(),
        processor.process,
        doing="routing",
        max_batch=settings.router_take,
        within_s=settings.batch_within_s,
        name=f"{settings.app_id}.router",
        on_revoke=processor.revoke,
        max_batch_bytes=BATCH_BYTES,
    )
    return processor
