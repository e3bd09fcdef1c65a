"""Publish a synthetic fleet (streams.kafka.fleet) to `engine.ingest`, in batches, at a rate."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaProducer

from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.kafka.admin import client_options
from streams.kafka.fleet import BAD_MESSAGES, Fleet


@dataclass
class Sent:
    """What a fleet run published."""

    events: int = 0
    messages: int = 0
    bad: int = 0


async def publish_fleet(
    settings: Settings,
    *,
    engines: int,
    rate: float,
    duration: float | None,
    count: int | None,
    batch: int,
    error_rate: float,
    bad_every: int,
    seed: int,
) -> Sent:
    """Send fleet events until `duration` seconds or `count` events (or cancellation)."""
    from streams.kafka.admin import check_broker

    await check_broker(settings)
    topic = TopicNames(settings.topic_prefix).ingest
    fleet = Fleet(rng=random.Random(seed), engines=engines, error_rate=error_rate)
    producer = AIOKafkaProducer(
        **client_options(settings), acks="all", enable_idempotence=True, linger_ms=20
    )
    await producer.start()
    sent = Sent()
    started = time.monotonic()
    pending: dict[str, list[bytes]] = {}
    try:
        for event_type, event in fleet.mixed():
            if count is not None and sent.events >= count:
                break
            if duration is not None and time.monotonic() - started >= duration:
                break
            group = pending.setdefault(event_type, [])
            group.append(orjson.dumps(event))
            sent.events += 1
            if len(group) >= batch:
                await _send(producer, topic, event_type, group, sent)
                group.clear()
                if bad_every and sent.messages % bad_every == 0:
                    value, headers = BAD_MESSAGES[sent.bad % len(BAD_MESSAGES)]
                    await producer.send(topic, value, headers=list(headers.items()))
                    sent.bad += 1
            # Pace to the rate: sleep while ahead of schedule.
            ahead = sent.events / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        for event_type, group in pending.items():
            if group:
                await _send(producer, topic, event_type, group, sent)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def _send(
    producer: AIOKafkaProducer, topic: str, event_type: str, group: list[bytes], sent: Sent
) -> None:
    value = group[0] if len(group) == 1 else b"[" + b",".join(group) + b"]"
    await producer.send(topic, value, headers=[("event-type", event_type.encode())])
    sent.messages += 1
