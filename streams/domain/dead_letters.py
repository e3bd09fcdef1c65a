"""Dead letters: an event (or a message that is no event) refused, with the reason.

Pure data, no Faust and no I/O. Every agent refuses input the same way: a
`DeadLetter` names where the input was read (`Inbound`), why it was refused, and
keeps the original bytes; `DeadLetter.to_record` is the `dead_letter` document
(schemas/v1/dead_letter.json) written to the dead-letter topic.

Ids are injective: `<topic>/<partition>/<offset>/<index or ->`, prefixed with
`<agent>@` for every agent but the router. Kafka topic names hold only
`[A-Za-z0-9._-]`, so neither `/` nor `@` can come from a topic, and two dead
letters share an id only when the same agent refused the same event twice (a
redelivery), which is what the id is for.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.domain.limits import encode_json
from streams.domain.validation import Violation

# Reasons (schemas/v1/dead_letter.json lists them all).
MALFORMED_JSON = "malformed_json"
DECODE_ERROR = "decode_error"
NOT_AN_OBJECT = "not_an_object"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
SCHEMA_VIOLATION = "schema_violation"
OVERSIZED = "oversized"
CONFIDENTIALITY = "confidentiality"
TOO_DEEP = "too_deep"
FUTURE_TIMESTAMP = "future_timestamp"
TOO_LATE = "too_late"
PROCESSING_ERROR = "processing_error"

# The agent named in the records of dead letters whose id has no agent prefix.
ROUTER = "router"

# How much of an exception's text a processing_error keeps.
ERROR_TEXT_CHARS = 1000


@dataclass(frozen=True, slots=True)
class Inbound:
    """One Kafka message as an agent read it: where, and what."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    timestamp_ms: int | None = None


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
    # The agent that refused it; None for the router (the first to see any input).
    agent: str | None = None
    exception: str | None = None

    @property
    def id(self) -> str:
        """Stable id: who refused it and where it was read, so a redelivery has the
        same id (see the module docstring)."""
        index = "-" if self.batch_index is None else str(self.batch_index)
        where = f"{self.source.topic}/{self.source.partition}/{self.source.offset}/{index}"
        return where if self.agent is None else f"{self.agent}@{where}"

    def to_record(self, now: float) -> dict[str, Any]:
        """The dead letter as a `dead_letter` document (schemas/v1/dead_letter.json)."""
        error: dict[str, Any] = {"message": self.message}
        if self.violation is not None:
            error["rule"] = self.violation.rule
            error["path"] = self.violation.path
            error["schema_path"] = self.violation.schema_path
        error["agent"] = self.agent or ROUTER
        if self.exception is not None:
            error["exception"] = self.exception
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


def is_infrastructure(exc: BaseException) -> bool:
    """Whether `exc` is a fault no input can cause (the machine is out of memory): the
    worker must stop rather than refuse the event (docs/design.md, "Failure policy")."""
    return isinstance(exc, MemoryError)


def _printable(text: str) -> str:
    """`text` as valid UTF-8 (a lone surrogate would make the record unencodable)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def processing_error(
    agent: str | None,
    exc: BaseException,
    source: Inbound,
    original: Any,
    keep_bytes: int,
    batch_index: int | None = None,
    event_type: str | None = None,
) -> DeadLetter:
    """The dead letter of an event whose processing raised `exc` in `agent`: the
    event is refused, the worker goes on (see docs/design.md, "Failure policy").

    `original` is the message's bytes, or the decoded event (encoded here, however
    deep it nests); the first `keep_bytes` are kept, with the full size."""
    body = original if isinstance(original, bytes) else encode_json(original)
    what = _printable(f"{type(exc).__name__}: {exc}")[:ERROR_TEXT_CHARS]
    return DeadLetter(
        PROCESSING_ERROR,
        f"{agent or ROUTER} could not process this event: {what}",
        source,
        body[:keep_bytes],
        batch_index=batch_index,
        event_type=event_type,
        original_size=len(body),
        agent=agent,
        exception=type(exc).__name__,
    )
