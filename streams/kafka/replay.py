"""Stream a JSONL file of events into Kafka: batched by type, optionally rate-limited.

A line that is not a JSON object, or names no known event type, is reported with its
line number and skipped; the caller gets the counts at the end. Events go to
engine.ingest, where the router validates them like any others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streams.config.settings import Settings
from streams.config.topics import EVENT_ROUTES, TopicNames
from streams.kafka.admin import check_broker, client_options


@dataclass
class ReplayReport:
    """What a replay did."""

    lines: int = 0
    events: int = 0
    messages: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)


def parse_lines(
    lines: Iterator[bytes], default_type: str | None
) -> Iterator[tuple[int, str | None, dict[str, Any] | None, str]]:
    """(line number, event type, event, why-skipped) for every non-blank line."""
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            yield number, None, None, f"not JSON: {exc}"
            continue
        if not isinstance(doc, dict):
            yield number, None, None, "not a JSON object"
            continue
        event_type = doc.get("event_type", default_type)
        if event_type not in EVENT_ROUTES:
            why = "no event type (give --type or an event_type field)"
            if event_type is not None:
                why = f"unknown event type {str(event_type)[:60]!r}"
            yield number, None, None, why
            continue
        yield number, str(event_type), doc, ""


async def replay(
    settings: Settings,
    path: Path,
    *,
    default_type: str | None = None,
    rate: float | None = None,
    batch: int = 500,
    on_line: Callable[[int, int], None] | None = None,
) -> ReplayReport:
    """Publish every event of `path`; `rate` caps events per second."""
    await check_broker(settings)
    topic = TopicNames(settings.topic_prefix).ingest
    producer = AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_request_size=8 * 1024 * 1024,
    )
    await producer.start()
    report = ReplayReport()
    pending: dict[str, list[bytes]] = {}
    started = time.monotonic()

    async def send(event_type: str, group: list[bytes]) -> None:
        value = group[0] if len(group) == 1 else b"[" + b",".join(group) + b"]"
        await producer.send(topic, value, headers=[("event-type", event_type.encode())])
        report.messages += 1

    try:
        with open(path, "rb") as f:
            for number, event_type, doc, why in parse_lines(iter(f), default_type):
                report.lines = number
                if doc is None or event_type is None:
                    report.skipped.append((number, why))
                    continue
                group = pending.setdefault(event_type, [])
                group.append(orjson.dumps(doc))
                report.events += 1
                if len(group) >= batch:
                    await send(event_type, group)
                    pending[event_type] = []
                if on_line is not None:
                    on_line(number, f.tell())
                if rate:
                    ahead = report.events / rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
        for event_type, group in pending.items():
            if group:
                await send(event_type, group)
        await producer.flush()
    finally:
        await producer.stop()
    return report
