"""The router's baseline: a plain asyncio loop, in a child process, doing the router's
job on the same input. aiokafka consumer -> orjson.loads -> validation (jsonschema, or
the router's own validator, named fastjsonschema after the one it used when this
benchmark was written) -> aiokafka producer, one output message per event."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from jsonschema import Draft7Validator
from jsonschema.exceptions import best_match

from bench.common.baseline import InputReader, mark
from bench.common.kafka import MAX_BYTES
from bench.router.stamp import STAMP_ENV, write_stamp
from streams.config.settings import Settings
from streams.config.topics import EVENT_ROUTES, EVENT_TYPES, TopicNames
from streams.domain.validation import SCHEMA_DIR, default_registry
from streams.kafka.admin import client_options

Validators = dict[str, Callable[[dict[str, Any]], str | None]]


def _dead_letter(
    rec_topic: str,
    partition: int,
    offset: int,
    index: int | None,
    reason: str,
    message: str,
    original: bytes,
    event_type: str | None,
) -> bytes:
    """A dead-letter record of the same shape as the router's (schemas/v1/dead_letter)."""
    index_part = "-" if index is None else str(index)
    return orjson.dumps(
        {
            "id": f"{rec_topic}/{partition}/{offset}/{index_part}",
            "reason": reason,
            "error": {"message": message},
            "source": {
                "topic": rec_topic,
                "partition": partition,
                "offset": offset,
                "batch_index": index,
            },
            "original": base64.b64encode(original).decode("ascii"),
            "original_size": len(original),
            "original_truncated": False,
            "dead_lettered_at": time.time(),
            "event_type": event_type,
        }
    )


def _validators(kind: str) -> Validators:
    """Per event type: doc -> None when valid, else jsonschema's best error message."""
    out: Validators = {}
    if kind == "fastjsonschema":
        registry = default_registry()
        for event_type in EVENT_TYPES:

            def fast(doc: dict[str, Any], t: str = event_type) -> str | None:
                violation = registry.check(t, doc)
                return None if violation is None else violation.message

            out[event_type] = fast
        return out
    for event_type in EVENT_TYPES:
        validator = Draft7Validator(orjson.loads((SCHEMA_DIR / f"{event_type}.json").read_bytes()))

        def full(doc: dict[str, Any], v: Draft7Validator = validator) -> str | None:
            if v.is_valid(doc):
                return None
            error = best_match(v.iter_errors(doc))
            return "invalid" if error is None else error.message

        out[event_type] = full
    return out


async def baseline_main(
    bootstrap: str, in_topic: str, out_prefix: str, partitions: int, kind: str
) -> None:
    """The plain loop: read `in_topic` from the beginning to its current end, validate
    every event, send each valid one to its typed topic (keyed by its entity id) and
    each invalid one to the dead-letter topic; print READY <epoch> once positioned."""
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    names = TopicNames(out_prefix)
    validators = _validators(kind)
    producer = AIOKafkaProducer(**client_options(settings), acks="all", max_request_size=MAX_BYTES)
    async with InputReader(bootstrap, in_topic, partitions) as reader:
        await producer.start()
        try:
            mark("READY")
            stamp = partial(write_stamp, os.environ.get(STAMP_ENV))
            async for records in reader.batches(first=stamp):
                for rec in records:
                    await _baseline_message(producer, names, validators, rec)
            await producer.flush()
        finally:
            await producer.stop()


async def _baseline_message(
    producer: AIOKafkaProducer, names: TopicNames, validators: Validators, rec: Any
) -> None:
    header_type: str | None = None
    for key, value in rec.headers or ():
        if key == "event-type":
            header_type = value.decode()
    raw: bytes = rec.value or b""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        dead = _dead_letter(
            rec.topic, rec.partition, rec.offset, None, "malformed_json", str(exc), raw, None
        )
        await producer.send(names.dead_letter, dead)
        return
    batch = isinstance(parsed, list)
    docs: Iterable[Any] = parsed if batch else [parsed]
    for index, doc in enumerate(docs):
        position = index if batch else None
        if not isinstance(doc, dict):
            dead = _dead_letter(
                rec.topic,
                rec.partition,
                rec.offset,
                position,
                "not_an_object",
                "not an object",
                orjson.dumps(doc),
                None,
            )
            await producer.send(names.dead_letter, dead)
            continue
        event_type = doc.pop("event_type", None) or header_type
        check = validators.get(event_type) if isinstance(event_type, str) else None
        error = "unknown event type" if check is None else check(doc)
        if error is None and isinstance(event_type, str):
            route = EVENT_ROUTES[event_type]
            await producer.send(
                names.typed[event_type], orjson.dumps(doc), key=doc[route.key_field].encode()
            )
        else:
            dead = _dead_letter(
                rec.topic,
                rec.partition,
                rec.offset,
                position,
                "schema_violation",
                error or "invalid",
                orjson.dumps(doc),
                event_type,
            )
            await producer.send(names.dead_letter, dead)
