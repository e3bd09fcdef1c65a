"""Decide where every event of an inbound message goes: its typed topic or a dead letter.

Pure logic, no Faust and no I/O: `Router.route` takes one Kafka message (bytes,
headers, where it was read) and returns the valid events with their keys and the
dead letters with their reasons. Every event of the message, and the message itself
when it holds no event at all, ends up in exactly one of the two lists.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.config.topics import EVENT_ROUTES, TopicNames
from streams.domain.avro_codec import (
    AvroDecodeError,
    AvroTooLarge,
    decode_container,
    is_avro_container,
)
from streams.domain.dead_letters import (
    CONFIDENTIALITY,
    DECODE_ERROR,
    FUTURE_TIMESTAMP,
    MALFORMED_JSON,
    NOT_AN_OBJECT,
    OVERSIZED,
    SCHEMA_VIOLATION,
    TOO_DEEP,
    UNKNOWN_EVENT_TYPE,
    DeadLetter,
    Inbound,
    is_infrastructure,
    processing_error,
)
from streams.domain.limits import (
    DEFAULT_MAX_DEPTH,
    encode_json,
    json_depth_exceeds,
    non_finite_path,
)
from streams.domain.validation import SchemaRegistry, Violation

__all__ = [
    "CONFIDENTIALITY",
    "DECODE_ERROR",
    "FUTURE_TIMESTAMP",
    "MALFORMED_JSON",
    "NOT_AN_OBJECT",
    "OVERSIZED",
    "SCHEMA_VIOLATION",
    "TOO_DEEP",
    "UNKNOWN_EVENT_TYPE",
    "DeadLetter",
    "Inbound",
    "RoutedEvent",
    "Router",
    "Routing",
]

EVENT_TYPE_FIELD = "event_type"
EVENT_TYPE_HEADER = "event-type"
CONTENT_TYPE_HEADER = "content-type"
AVRO_CONTENT_TYPES = (b"application/avro", b"avro/binary")

# Lifecycle events are confidential: their dead letters never echo values.
CONFIDENTIAL_TYPES = frozenset({"engine_event"})

# The field that holds each event type's event time (epoch seconds).
EVENT_TIME_FIELDS: dict[str, str] = {
    "engine_execution": "timestamp",
    "comparison_result": "timestamp",
    "training_sample": "created_at",
    "engine_event": "timestamp",
    "session_event": "timestamp",
    "ml_job_command": "timestamp",
}
# Default of ENGINESTREAM_MAX_FUTURE_SKEW: how far past the wall clock an event time
# may be before the event is refused (clocks of engines and devices drift).
DEFAULT_MAX_FUTURE_SKEW_S = 300.0


@dataclass(slots=True)
class RoutedEvent:
    """A valid event, bound for the typed topic of its type, keyed by its entity id."""

    event_type: str
    key: str
    doc: dict[str, Any]
    offset: int = -1  # offset of the message it came in
    body: bytes | None = None  # `doc` as JSON when already encoded
    index: int = -1  # index in the message's batch (-1: the message is the event)
    # Whether it came from a binary (Avro) wire: then `doc` may hold what JSON cannot
    # (bytes), and only `body` is its JSON form.
    binary: bool = False


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
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_future_skew_s: float = DEFAULT_MAX_FUTURE_SKEW_S,
    ) -> None:
        self.names = names
        self.registry = registry
        self.max_message_bytes = max_message_bytes
        self.dead_letter_keep_bytes = dead_letter_keep_bytes
        self.max_depth = max_depth
        self.max_future_skew_s = max_future_skew_s

    def route(self, msg: Inbound, now: float | None = None) -> Routing:
        """Route every event of `msg`; never raises on any input.

        `now` (epoch seconds, default the wall clock) is what event times are
        compared with. An error while routing one event refuses that event as a
        `processing_error`; one outside any event refuses the whole message."""
        out = Routing()
        try:
            self._route_message(msg, time.time() if now is None else now, out)
        except Exception as exc:
            if is_infrastructure(exc):
                raise
            out = Routing(dead_letters=[
                processing_error(None, exc, msg, msg.value or b"", self.dead_letter_keep_bytes)
            ])
        return out

    def _route_message(self, msg: Inbound, now: float, out: Routing) -> None:
        value = msg.value or b""
        if len(value) > self.max_message_bytes:
            out.dead_letters.append(self._oversized(msg, value, len(value), "message"))
            return
        fixed_type = self.names.type_of_raw.get(msg.topic)
        header_type = _header(msg.headers, EVENT_TYPE_HEADER)
        default_type = fixed_type or (
            header_type.decode("utf-8", "replace") if header_type else None
        )
        content_type = _header(msg.headers, CONTENT_TYPE_HEADER)
        if is_avro_container(value) or content_type in AVRO_CONTENT_TYPES:
            try:
                avro_type, docs = decode_container(value, max_bytes=self.max_message_bytes)
            except AvroTooLarge as exc:
                out.dead_letters.append(self._oversized(msg, value, exc.size, "decompressed"))
                return
            except AvroDecodeError as exc:
                out.dead_letters.append(DeadLetter(DECODE_ERROR, str(exc), msg, value))
                return
            default_type = fixed_type or avro_type or default_type
            for index, doc in enumerate(docs):
                with self._refused_alone(msg, doc, index, out):
                    self._route_event(msg, doc, index, default_type, None, now, out, binary=True)
            if not docs:
                out.dead_letters.append(
                    DeadLetter(NOT_AN_OBJECT, "empty Avro container: no event", msg, value)
                )
            return
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            if "depth limit" in str(exc):
                out.dead_letters.append(
                    DeadLetter(TOO_DEEP, f"not routed: {exc}", msg, value)
                )
                return
            reason = "empty message" if not value else f"not valid JSON: {exc}"
            out.dead_letters.append(DeadLetter(MALFORMED_JSON, reason, msg, value))
            return
        if isinstance(parsed, dict):
            with self._refused_alone(msg, value, None, out):
                self._route_event(msg, parsed, None, default_type, value, now, out)
        elif isinstance(parsed, list) and parsed:
            for index, doc in enumerate(parsed):
                with self._refused_alone(msg, doc, index, out):
                    self._route_event(msg, doc, index, default_type, None, now, out)
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

    def _oversized(self, msg: Inbound, value: bytes, size: int, what: str) -> DeadLetter:
        digest = hashlib.sha256(value).hexdigest()
        detail = (
            f"message of {size} bytes"
            if what == "message"
            else f"Avro container of {len(value)} bytes that expands to more than {size} bytes"
        )
        return DeadLetter(
            OVERSIZED,
            f"{detail} exceeds the limit of {self.max_message_bytes} bytes (sha256 {digest})",
            msg,
            value[: self.dead_letter_keep_bytes],
            original_size=len(value),
        )

    @contextmanager
    def _refused_alone(
        self, msg: Inbound, original: Any, index: int | None, out: Routing
    ) -> Iterator[None]:
        """Around routing one event: an error while doing so refuses that event alone,
        as a processing_error holding `original` (its raw bytes, else its document),
        and takes back what it had already added to `out`."""
        routed, refused = len(out.events), len(out.dead_letters)
        try:
            yield
        except Exception as exc:
            if is_infrastructure(exc):
                raise
            del out.events[routed:], out.dead_letters[refused:]
            out.dead_letters.append(processing_error(
                None, exc, msg, original, self.dead_letter_keep_bytes, batch_index=index,
            ))

    def _route_event(
        self,
        msg: Inbound,
        doc: Any,
        index: int | None,
        default_type: str | None,
        raw: bytes | None,
        now: float,
        out: Routing,
        binary: bool = False,
    ) -> None:
        # A batch member's original is its own JSON, event_type included; encoded
        # once, here, and reused as the routed body when nothing is taken out of it.
        original = raw if raw is not None else encode_json(doc)
        # Before anything that recurses (validation, its explanations, encoding).
        if json_depth_exceeds(original, self.max_depth):
            out.dead_letters.append(
                DeadLetter(
                    TOO_DEEP,
                    f"event nests deeper than {self.max_depth} levels",
                    msg,
                    original,
                    batch_index=index,
                )
            )
            return
        if not isinstance(doc, dict):
            out.dead_letters.append(
                DeadLetter(
                    NOT_AN_OBJECT,
                    f"batch element is {type(doc).__name__}, not an event object",
                    msg,
                    original,
                    batch_index=index,
                )
            )
            return
        named = doc.get(EVENT_TYPE_FIELD)
        body: bytes | None = original if raw is None else None
        if EVENT_TYPE_FIELD in doc:
            doc = {k: v for k, v in doc.items() if k != EVENT_TYPE_FIELD}
            body = None
        fixed_type = self.names.type_of_raw.get(msg.topic)
        if named is not None and fixed_type is not None and named != fixed_type:
            out.dead_letters.append(
                DeadLetter(
                    SCHEMA_VIOLATION,
                    f"event_type {str(named)[:100]!r} does not match topic {msg.topic!r} "
                    f"which carries {fixed_type!r}",
                    msg,
                    original,
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
                DeadLetter(UNKNOWN_EVENT_TYPE, message, msg, original, batch_index=index)
            )
            return
        confidential = event_type in CONFIDENTIAL_TYPES
        if confidential:
            allowed = self.registry.allowed_fields(event_type, doc)
            extra = sorted(k for k in doc if allowed is not None and k not in allowed)
            if extra:
                out.dead_letters.append(self._content_refused(msg, doc, extra, index, event_type))
                return
            # Never echo values: the stored copy is the event without anything removed,
            # re-encoded, so that it holds nothing the schema does not allow.
            original = encode_json(doc)
        violation = self._violation(event_type, doc, binary)
        if violation is not None:
            message = violation.message
            if confidential:
                message = (
                    f"{violation.path or '/'}: fails the '{violation.rule}' rule "
                    "(value not shown: lifecycle events are confidential)"
                )
            out.dead_letters.append(
                DeadLetter(
                    SCHEMA_VIOLATION,
                    message,
                    msg,
                    original,
                    batch_index=index,
                    event_type=event_type,
                    violation=violation,
                )
            )
            return
        time_field = EVENT_TIME_FIELDS[event_type]
        event_time = doc.get(time_field)
        if event_time is not None and event_time > now + self.max_future_skew_s:
            out.dead_letters.append(
                DeadLetter(
                    FUTURE_TIMESTAMP,
                    f"{time_field} {event_time} is {event_time - now:.0f} s ahead of the "
                    f"wall clock; at most {self.max_future_skew_s:g} s are allowed "
                    "(event times are epoch seconds)",
                    msg,
                    original,
                    batch_index=index,
                    event_type=event_type,
                    violation=Violation(
                        f"{time_field} is in the future", "maximum", f"/{time_field}", ""
                    ),
                )
            )
            return
        key = doc[EVENT_ROUTES[event_type].key_field]
        out.events.append(
            RoutedEvent(
                event_type, key, doc, msg.offset, body, -1 if index is None else index, binary
            )
        )

    def _violation(self, event_type: str, doc: dict[str, Any], binary: bool) -> Violation | None:
        """The schema's verdict; a binary wire can also carry NaN and infinities,
        which no range rule of a schema catches."""
        if binary:
            path = non_finite_path(doc)
            if path is not None:
                return Violation(
                    f"{path or '/'} is not a finite number", "type", path, ""
                )
        return self.registry.check(event_type, doc)

    def _content_refused(
        self,
        msg: Inbound,
        doc: dict[str, Any],
        extra: list[str],
        index: int | None,
        event_type: str,
    ) -> DeadLetter:
        """A lifecycle event carrying fields its variant does not allow: refused, and
        stored without them (a value could be prompt text in the wrong field)."""
        kept = {k: v for k, v in doc.items() if k not in extra}
        return DeadLetter(
            CONFIDENTIALITY,
            "lifecycle events carry structure only; refused fields: "
            + ", ".join(k or '""' for k in extra),
            msg,
            encode_json(kept),
            batch_index=index,
            event_type=event_type,
            # dead_letter.json names removed fields with non-empty strings only
            removed_fields=[k for k in extra if k],
        )
