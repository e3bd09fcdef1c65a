"""Decide where every event of an inbound message goes: its typed topic or a dead letter.

Pure logic, no Faust and no I/O: `Router.route` takes one Kafka message (bytes,
headers, where it was read) and returns the valid events with their keys and the
dead letters with their reasons. Every event of the message, and the message itself
when it holds no event at all, ends up in exactly one of the two lists.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.avro_codec import AvroDecodeError, decode_container, is_avro_container
from streams.topics import EVENT_ROUTES, TopicNames
from streams.validation import SchemaRegistry, Violation

EVENT_TYPE_FIELD = "event_type"
EVENT_TYPE_HEADER = "event-type"
CONTENT_TYPE_HEADER = "content-type"
AVRO_CONTENT_TYPES = (b"application/avro", b"avro/binary")

# Dead-letter reasons the router gives (the schema lists those of later stages too).
MALFORMED_JSON = "malformed_json"
DECODE_ERROR = "decode_error"
NOT_AN_OBJECT = "not_an_object"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
SCHEMA_VIOLATION = "schema_violation"
OVERSIZED = "oversized"
CONFIDENTIALITY = "confidentiality"

# Lifecycle events are confidential: their dead letters never echo values.
CONFIDENTIAL_TYPES = frozenset({"engine_event"})


@dataclass(frozen=True, slots=True)
class Inbound:
    """One Kafka message as the router sees it."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    timestamp_ms: int | None = None


@dataclass(slots=True)
class RoutedEvent:
    """A valid event, bound for the typed topic of its type, keyed by its entity id."""

    event_type: str
    key: str
    doc: dict[str, Any]
    offset: int = -1  # offset of the message it came in


@dataclass(slots=True)
class DeadLetter:
    """An event (or a message that is no event) refused, with the reason."""

    reason: str
    message: str
    source: Inbound
    original: bytes
    batch_index: int | None = None
    event_type: str | None = None
    violation: Violation | None = None
    original_size: int | None = None
    removed_fields: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        """Stable id: where the refused event was read, so a redelivery has the same id."""
        index = "-" if self.batch_index is None else str(self.batch_index)
        return f"{self.source.topic}/{self.source.partition}/{self.source.offset}/{index}"

    def to_record(self, now: float) -> dict[str, Any]:
        """The dead letter as a `dead_letter` document (schemas/v1/dead_letter.json)."""
        error: dict[str, Any] = {"message": self.message}
        if self.violation is not None:
            error["rule"] = self.violation.rule
            error["path"] = self.violation.path
            error["schema_path"] = self.violation.schema_path
        size = len(self.original) if self.original_size is None else self.original_size
        record: dict[str, Any] = {
            "id": self.id,
            "reason": self.reason,
            "error": error,
            "source": {
                "topic": self.source.topic,
                "partition": self.source.partition,
                "offset": self.source.offset,
                "batch_index": self.batch_index,
                "message_timestamp_ms": self.source.timestamp_ms,
            },
            "original": base64.b64encode(self.original).decode("ascii"),
            "original_size": size,
            "original_truncated": size > len(self.original),
            "dead_lettered_at": now,
            "event_type": self.event_type,
        }
        if self.removed_fields:
            record["removed_fields"] = self.removed_fields
        return record


@dataclass(slots=True)
class Routing:
    """The outcome for one inbound message."""

    events: list[RoutedEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


def _header(headers: Sequence[tuple[str, bytes]], name: str) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


class Router:
    """Validates and routes inbound messages; see the module docstring."""

    def __init__(
        self,
        names: TopicNames,
        registry: SchemaRegistry,
        max_message_bytes: int = 1_000_000,
        dead_letter_keep_bytes: int = 65_536,
    ) -> None:
        self.names = names
        self.registry = registry
        self.max_message_bytes = max_message_bytes
        self.dead_letter_keep_bytes = dead_letter_keep_bytes

    def route(self, msg: Inbound) -> Routing:
        """Route every event of `msg`; never raises on any input."""
        out = Routing()
        value = msg.value or b""
        if len(value) > self.max_message_bytes:
            digest = hashlib.sha256(value).hexdigest()
            out.dead_letters.append(
                DeadLetter(
                    OVERSIZED,
                    f"message of {len(value)} bytes exceeds the limit of "
                    f"{self.max_message_bytes} bytes (sha256 {digest})",
                    msg,
                    value[: self.dead_letter_keep_bytes],
                    original_size=len(value),
                )
            )
            return out
        fixed_type = self.names.type_of_raw.get(msg.topic)
        header_type = _header(msg.headers, EVENT_TYPE_HEADER)
        default_type = fixed_type or (
            header_type.decode("utf-8", "replace") if header_type else None
        )
        content_type = _header(msg.headers, CONTENT_TYPE_HEADER)
        if is_avro_container(value) or content_type in AVRO_CONTENT_TYPES:
            try:
                avro_type, docs = decode_container(value)
            except AvroDecodeError as exc:
                out.dead_letters.append(DeadLetter(DECODE_ERROR, str(exc), msg, value))
                return out
            default_type = fixed_type or avro_type or default_type
            for index, doc in enumerate(docs):
                self._route_event(msg, doc, index, default_type, None, out)
            if not docs:
                out.dead_letters.append(
                    DeadLetter(NOT_AN_OBJECT, "empty Avro container: no event", msg, value)
                )
            return out
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            reason = "empty message" if not value else f"not valid JSON: {exc}"
            out.dead_letters.append(DeadLetter(MALFORMED_JSON, reason, msg, value))
            return out
        if isinstance(parsed, dict):
            self._route_event(msg, parsed, None, default_type, value, out)
        elif isinstance(parsed, list) and parsed:
            for index, doc in enumerate(parsed):
                self._route_event(msg, doc, index, default_type, None, out)
        else:
            what = "an empty batch" if isinstance(parsed, list) else type(parsed).__name__
            out.dead_letters.append(
                DeadLetter(
                    NOT_AN_OBJECT,
                    f"a message must hold an event object or a batch of them, not {what}",
                    msg,
                    value,
                )
            )
        return out

    def _route_event(
        self,
        msg: Inbound,
        doc: Any,
        index: int | None,
        default_type: str | None,
        raw: bytes | None,
        out: Routing,
    ) -> None:
        received = doc  # a batch member's original is its own JSON, event_type included

        def original() -> bytes:
            return raw if raw is not None else orjson.dumps(received)

        if not isinstance(doc, dict):
            out.dead_letters.append(
                DeadLetter(
                    NOT_AN_OBJECT,
                    f"batch element is {type(doc).__name__}, not an event object",
                    msg,
                    original(),
                    batch_index=index,
                )
            )
            return
        named = doc.get(EVENT_TYPE_FIELD)
        if EVENT_TYPE_FIELD in doc:
            doc = {k: v for k, v in doc.items() if k != EVENT_TYPE_FIELD}
        fixed_type = self.names.type_of_raw.get(msg.topic)
        if named is not None and fixed_type is not None and named != fixed_type:
            out.dead_letters.append(
                DeadLetter(
                    SCHEMA_VIOLATION,
                    f"event_type {named!r} does not match topic {msg.topic!r} "
                    f"which carries {fixed_type!r}",
                    msg,
                    original(),
                    batch_index=index,
                    event_type=fixed_type,
                )
            )
            return
        event_type = named if named is not None else default_type
        if not isinstance(event_type, str) or event_type not in EVENT_ROUTES:
            message = (
                "no event type: set the event_type field or the event-type header"
                if event_type is None
                else f"unknown event type {str(event_type)[:100]!r}; "
                f"known: {', '.join(EVENT_ROUTES)}"
            )
            out.dead_letters.append(
                DeadLetter(UNKNOWN_EVENT_TYPE, message, msg, original(), batch_index=index)
            )
            return
        if event_type in CONFIDENTIAL_TYPES:
            self._route_confidential(msg, doc, index, event_type, out)
            return
        violation = self.registry.check(event_type, doc)
        if violation is not None:
            out.dead_letters.append(
                DeadLetter(
                    SCHEMA_VIOLATION,
                    violation.message,
                    msg,
                    original(),
                    batch_index=index,
                    event_type=event_type,
                    violation=violation,
                )
            )
            return
        key = doc[EVENT_ROUTES[event_type].key_field]
        out.events.append(RoutedEvent(event_type, key, doc, msg.offset))

    def _route_confidential(
        self, msg: Inbound, doc: dict[str, Any], index: int | None, event_type: str, out: Routing
    ) -> None:
        """Lifecycle events: extra fields are refused and never stored; errors never
        quote values, since a value could be prompt text in the wrong field."""
        allowed = self.registry.allowed_fields(event_type, doc)
        extra = sorted(k for k in doc if allowed is not None and k not in allowed)
        if extra:
            kept = {k: v for k, v in doc.items() if k not in extra}
            out.dead_letters.append(
                DeadLetter(
                    CONFIDENTIALITY,
                    "lifecycle events carry structure only; refused fields: "
                    + ", ".join(k or '""' for k in extra),
                    msg,
                    orjson.dumps(kept),
                    batch_index=index,
                    event_type=event_type,
                    # dead_letter.json names removed fields with non-empty strings only
                    removed_fields=[k for k in extra if k],
                )
            )
            return
        violation = self.registry.check(event_type, doc)
        if violation is not None:
            out.dead_letters.append(
                DeadLetter(
                    SCHEMA_VIOLATION,
                    f"{violation.path or '/'}: fails the '{violation.rule}' rule "
                    "(value not shown: lifecycle events are confidential)",
                    msg,
                    orjson.dumps(doc),
                    batch_index=index,
                    event_type=event_type,
                    violation=violation,
                )
            )
            return
        key = doc[EVENT_ROUTES[event_type].key_field]
        out.events.append(RoutedEvent(event_type, key, doc, msg.offset))
