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

import bz2
import io
import json
import lzma
import zlib
from functools import lru_cache
from typing import Any

import fastavro
from fastavro.validation import ValidationError as _FastavroValidationError

from streams.domain.schema_location import schema_root

__all__ = [
    "AVRO_DIR",
    "AVRO_MAGIC",
    "AvroDecodeError",
    "AvroEncodeError",
    "AvroTooLarge",
    "decode_container",
    "encode_container",
    "event_type_for_record_name",
    "is_avro_container",
    "load_avro_schemas",
]

AVRO_DIR = schema_root() / "avro"
"""Directory holding one ``<event type>.avsc`` writer schema per event type."""

AVRO_MAGIC = b"Obj\x01"
"""The four bytes every Avro object container file starts with."""


class AvroDecodeError(ValueError):
    """Raised when bytes are not a readable Avro object container of records."""


class AvroTooLarge(AvroDecodeError):
    """Raised when a container expands past the size limit (a compression bomb, or
    just too much): `size` is how far decoding got before stopping."""

    def __init__(self, size: int, limit: int, what: str = "bytes") -> None:
        super().__init__(f"Avro container expands to more than {limit} {what}")
        self.size = size


# At most this many events in one container, whatever their size: a record of a
# schema without fields takes no bytes at all.
MAX_CONTAINER_EVENTS = 100_000


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


def decode_container(
    data: bytes, max_bytes: int | None = None
) -> tuple[str | None, list[dict[str, Any]]]:
    """Read an Avro object container file and return ``(event type, records)``.

    The event type comes from the writer schema's full record name (for example
    ``enginestream.v1.EngineExecution`` gives ``engine_execution``) and is None when the
    name is not one of ours. Every ``None``-valued field is removed from the records,
    so they are JSON documents again.

    With ``max_bytes``, compressed blocks are expanded in a stream that stops as soon
    as the container's data passes ``max_bytes`` (:class:`AvroTooLarge`), before that
    much memory is taken; so is a container of more than ``MAX_CONTAINER_EVENTS``
    records. Codecs: null, deflate, bzip2 and xz.

    Raises :class:`AvroDecodeError` when the bytes are not a complete, readable container
    or its records are not Avro records.
    """
    if not is_avro_container(data):
        raise AvroDecodeError("not an Avro object container file (missing magic b'Obj\\x01')")
    if max_bytes is not None:
        data = _expanded(data, max_bytes)
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
        _drop_none(record)
        out.append(record)
    return event_type_for_record_name(record_name), out


# --- the container format, read by hand to bound what compressed blocks expand to ---


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    """An Avro long (zig-zag varint) at `pos`: (value, position after it)."""
    shift = result = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise AvroDecodeError("corrupt Avro container: truncated or overlong number")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), pos


def _read_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    size, pos = _read_long(data, pos)
    if size < 0 or pos + size > len(data):
        raise AvroDecodeError("corrupt Avro container: truncated bytes")
    return data[pos : pos + size], pos + size


def _write_long(value: int) -> bytes:
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag & ~0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


def _write_bytes(value: bytes) -> bytes:
    return _write_long(len(value)) + value


def _inflate(codec: bytes, block: bytes, budget: int) -> bytes:
    """`block` decompressed, stopping past `budget` bytes (AvroTooLarge)."""
    limit = budget + 1
    if codec == b"null":
        out = block
    elif codec == b"deflate":
        inflater = zlib.decompressobj(-15)
        try:
            out = inflater.decompress(block, limit)
        except zlib.error as exc:
            raise AvroDecodeError(f"corrupt Avro container: deflate: {exc}") from exc
    elif codec in (b"bzip2", b"xz"):
        decompressor = bz2.BZ2Decompressor() if codec == b"bzip2" else lzma.LZMADecompressor()
        try:
            out = decompressor.decompress(block, max_length=limit)
        except (OSError, EOFError, lzma.LZMAError) as exc:
            raise AvroDecodeError(f"corrupt Avro container: {codec.decode()}: {exc}") from exc
    else:
        name = codec.decode("utf-8", "replace")[:40]
        raise AvroDecodeError(
            f"Avro codec {name!r} is not supported (use null, deflate, bzip2 or xz)"
        )
    if len(out) > budget:
        raise AvroTooLarge(len(out), budget)
    return out


def _expanded(data: bytes, max_bytes: int) -> bytes:
    """The container with every block decompressed (codec null), or AvroTooLarge
    when its data would pass `max_bytes`."""
    pos = len(AVRO_MAGIC)
    meta: dict[bytes, bytes] = {}
    while True:
        count, pos = _read_long(data, pos)
        if count == 0:
            break
        if count < 0:  # a block with its byte size first
            count = -count
            _, pos = _read_long(data, pos)
        for _ in range(count):
            key, pos = _read_bytes(data, pos)
            meta[key], pos = _read_bytes(data, pos)
    sync = data[pos : pos + 16]
    if len(sync) != 16:
        raise AvroDecodeError("corrupt Avro container: truncated header")
    pos += 16
    codec = meta.get(b"avro.codec", b"null") or b"null"
    blocks: list[bytes] = []
    used = events = 0
    while pos < len(data):
        count, pos = _read_long(data, pos)
        block, pos = _read_bytes(data, pos)
        if data[pos : pos + 16] != sync:
            raise AvroDecodeError("corrupt Avro container: block without its sync marker")
        pos += 16
        if count < 0:
            raise AvroDecodeError("corrupt Avro container: negative record count")
        events += count
        if events > MAX_CONTAINER_EVENTS:
            raise AvroTooLarge(events, MAX_CONTAINER_EVENTS, "events")
        raw = _inflate(codec, block, max_bytes - used)
        used += len(raw)
        blocks.append(_write_long(count) + _write_bytes(raw) + sync)
    meta[b"avro.codec"] = b"null"
    header = [AVRO_MAGIC, _write_long(len(meta))]
    header += [_write_bytes(k) + _write_bytes(v) for k, v in meta.items()]
    header += [_write_long(0), sync]
    return b"".join(header + blocks)


def _drop_none(record: dict[str, Any]) -> None:
    """Remove every None-valued dict entry of `record`, at any depth, in place; a
    loop, not a call per level (a writer schema may nest records without end)."""
    stack: list[Any] = [record]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in [k for k, v in node.items() if v is None]:
                del node[key]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
