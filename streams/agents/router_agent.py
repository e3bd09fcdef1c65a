"""The router agent: read raw messages, route them (streams.router), produce the results."""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
import orjson

from streams.counters import RouterCounters
from streams.packing import pack
from streams.router import Inbound, RoutedEvent, Router
from streams.settings import Settings
from streams.topics import TopicNames

log = logging.getLogger(__name__)


def register_router(
    app: faust.App,
    settings: Settings,
    router: Router,
    partitions: dict[str, int],
    counters: RouterCounters,
) -> None:
    """Add the router agent to `app`. `partitions` maps each typed topic to its
    partition count as the cluster has it."""
    names: TopicNames = router.names
    source = app.topic(
        *names.inputs(),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(source, name=f"{settings.app_id}.router")
    async def route(stream: faust.StreamT[Any]) -> None:
        producer = app.producer
        # take_events is on faust's Stream, not on its StreamT protocol.
        async for events in stream.take_events(  # type: ignore[attr-defined]
            settings.router_take, within=settings.router_take_within_s
        ):
            routed: list[RoutedEvent] = []
            dead = []
            for event in events:
                message = event.message
                counters.messages_in[message.topic] += 1
                stamp = message.timestamp
                result = router.route(
                    Inbound(
                        message.topic,
                        message.partition,
                        message.offset,
                        message.value,
                        message.headers or (),
                        int(stamp * 1000) if stamp and stamp > 0 else None,
                    )
                )
                routed.extend(result.events)
                dead.extend(result.dead_letters)
            # Sends are queued in the producer; Faust flushes it before it commits
            # the offsets of these events, so nothing is committed unsent.
            for out in pack(routed, names.typed, partitions, settings.output_batch_bytes):
                await producer.send(out.topic, out.key, out.value, out.partition, None, None)
                counters.messages_out[out.topic] += 1
            for event in routed:
                counters.events_routed[event.event_type] += 1
            now = time.time()
            for letter in dead:
                await producer.send(
                    names.dead_letter,
                    letter.id.encode(),
                    orjson.dumps(letter.to_record(now)),
                    None,
                    None,
                    None,
                )
                counters.dead_letters[letter.reason] += 1
