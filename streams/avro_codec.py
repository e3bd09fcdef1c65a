"""Avro object-container codec for enginestream events (the binary wire format).

A Kafka message on the binary wire is one Avro object container file (OCF) holding a
batch of events of one type. The writer schemas live in ``schemas/avro/<name>.avsc``;
each is the Avro twin of the JSON Schema ``schemas/v1/<name>.json`` with the same field
names. Optional JSON fields are ``["null", ...]`` unions in Avro, so decoding removes
every ``None``-valued field again and hands back plain JSON documents that the router
validates against the JSON Schemas exactly as it validates JSON messages.

This module is pure: no Faust, no Kafka, no I/O beyond reading the schema files.
"""

from __future__ import annotations

import io
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.validation import ValidationError as _FastavroValidationError

__all__ = [
    "AVRO_DIR",
    "AVRO_MAGIC",
    "AvroDecodeError",
    "AvroEncodeError",
    "decode_container",
    "encode_container",
    "event_type_for_record_name",
    "is_avro_container",
    "load_avro_schemas",
]

AVRO_DIR = Path(__file__).resolve().parent.parent / "schemas" / "avro"
"""Directory holding one ``<event type>.avsc`` writer schema per event type."""

AVRO_MAGIC = b"Obj\x01"
"""The four bytes every Avro object container file starts with."""


class AvroDecodeError(ValueError):
    """Raised when bytes are not a readable Avro object container of records."""


class AvroEncodeError(ValueError):
    """Raised when events cannot be written with their event type's Avro schema."""


@lru_cache(maxsize=1)
def load_avro_schemas() -> dict[str, Any]:
    """Return the parsed Avro schema of every event type, keyed by event type name.

    The key is the file stem (``engine_execution`` for ``engine_execution.avsc``); the
    value is the result of :func:`fastavro.parse_schema`. ``doc`` attributes are dropped
    before parsing: every container carries its writer schema in its header, and the docs
    would double the size of that header. The result is cached; treat it as read-only.
    """
    schemas: dict[str, Any] = {}
    for path in sorted(AVRO_DIR.glob("*.avsc")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        schemas[path.stem] = fastavro.parse_schema(_strip_docs(raw))
    return schemas


def _strip_docs(node: Any) -> Any:
    """Return a copy of a raw Avro schema without its ``doc`` attributes."""
    if isinstance(node, dict):
        return {k: _strip_docs(v) for k, v in node.items() if k != "doc"}
    if isinstance(node, list):
        return [_strip_docs(v) for v in node]
    return node


@lru_cache(maxsize=1)
def _types_by_record_name() -> dict[str, str]:
    """Map each schema's full record name (``enginestream.v1.EngineExecution``) to its type."""
    return {schema["name"]: name for name, schema in load_avro_schemas().items()}


def event_type_for_record_name(record_name: str) -> str | None:
    """Return the event type whose Avro record has this full name, or None if unknown."""
    return _types_by_record_name().get(record_name)


def is_avro_container(data: bytes) -> bool:
    """Tell whether ``data`` starts like an Avro object container file (``Obj\\x01``)."""
    return data[:4] == AVRO_MAGIC


def encode_container(event_type: str, events: list[dict[str, Any]]) -> bytes:
    """Write ``events`` of ``event_type`` as one Avro object container file (codec null).

    Missing optional fields are written as null. A field the schema does not name, a
    missing required field or a value of the wrong type raises :class:`AvroEncodeError`
    rather than being dropped or coerced silently; in particular a float (even ``3.0``)
    in a ``long`` field is refused, since fastavro would otherwise truncate it.
    """
    schemas = load_avro_schemas()
    try:
        schema = schemas[event_type]
    except KeyError:
        raise AvroEncodeError(
            f"unknown event type {event_type!r}; known: {', '.join(sorted(schemas))}"
        ) from None
    buf = io.BytesIO()
    try:
        fastavro.writer(
            buf, schema, events, codec="null", validator=True, strict_allow_default=True
        )
    except (
        _FastavroValidationError,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        OverflowError,
    ) as exc:
        raise AvroEncodeError(f"cannot encode {event_type} events as Avro: {exc}") from exc
    return buf.getvalue()


def decode_container(data: bytes) -> tuple[str | None, list[dict[str, Any]]]:
    """Read an Avro object container file and return ``(event type, records)``.

    The event type comes from the writer schema's full record name (for example
    ``enginestream.v1.EngineExecution`` gives ``engine_execution``) and is None when the
    name is not one of ours. Every ``None``-valued field is removed from the records,
    recursively, so they are JSON documents again.

    Raises :class:`AvroDecodeError` when the bytes are not a complete, readable container
    or its records are not Avro records.
    """
    if not is_avro_container(data):
        raise AvroDecodeError("not an Avro object container file (missing magic b'Obj\\x01')")
    try:
        reader = fastavro.reader(io.BytesIO(data))
        writer_schema = reader.writer_schema
        records = list(reader)
    except Exception as exc:  # fastavro raises many types on corrupt input
        raise AvroDecodeError(f"corrupt Avro container: {type(exc).__name__}: {exc}") from exc
    if not isinstance(writer_schema, dict) or writer_schema.get("type") != "record":
        raise AvroDecodeError("Avro container does not hold records")
    record_name = writer_schema.get("name")
    if not isinstance(record_name, str):  # pragma: no cover - a record always has a name
        raise AvroDecodeError("Avro container's record schema has no name")
    out: list[dict[str, Any]] = []
    for record in records:
        if not isinstance(record, dict):  # pragma: no cover - guaranteed by a record schema
            raise AvroDecodeError("Avro container holds a non-record value")
        out.append(_drop_none(record))
    return event_type_for_record_name(record_name), out


def _drop_none(value: Any) -> Any:
    """Return ``value`` with every None-valued dict entry removed, recursively."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value
