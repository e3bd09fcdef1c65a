"""What the SDK refuses before an event ever leaves the engine.

Two checks, in this order:

1. **Confidentiality** (always, even with validation off): a lifecycle
   `engine_event` carries structure only. A field its variant does not name
   (`prompt`, `completion`, `messages`, ...) is refused with `ConfidentialityError`,
   which names the fields and never their values.
2. **Schema** (on by default): the event must match `schemas/v1/<type>.json`;
   otherwise `InvalidEvent`, naming the rule and the path. The message quotes
   jsonschema only for rules whose message names fields (`required`,
   `additionalProperties`): other messages echo the offending value, and values
   can be prompt text. The full `Violation` stays available on the exception.

Both are programming errors on the engine's side, so they raise (a typed helper
from `streams.client.events` builds valid events by construction). Broker trouble
never raises: see `streams.client.publisher`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.config.topics import EVENT_ROUTES, EVENT_TYPES
from streams.domain.validation import DISCRIMINATORS, SchemaRegistry, Violation, default_registry

LIFECYCLE = "engine_event"

# jsonschema rules whose messages name fields but never quote values.
_FIELD_NAMING_RULES = frozenset({"required", "additionalProperties"})
_MAX_NAME = 64


class InvalidEvent(ValueError):
    """An event the SDK will not send: unknown type, not an object, or off-schema.

    `event_type` is the type it was published as, `violation` the schema rule that
    failed (None when the problem is not a schema rule)."""

    def __init__(
        self, message: str, *, event_type: str, violation: Violation | None = None
    ) -> None:
        super().__init__(message)
        self.event_type = event_type
        self.violation = violation


class ConfidentialityError(InvalidEvent):
    """A lifecycle event carrying fields beyond its variant's structure (content).

    `fields` names the refused fields; their values appear nowhere in the error."""

    def __init__(self, message: str, *, event_type: str, fields: tuple[str, ...]) -> None:
        super().__init__(message, event_type=event_type)
        self.fields = fields


def _name(value: object) -> str:
    text = str(value)
    return text if len(text) <= _MAX_NAME else text[: _MAX_NAME - 3] + "..."


def as_document(event_type: str, event: object) -> dict[str, Any]:
    """`event` as a plain dict (what the validators and the encoder take), or
    InvalidEvent when the type is unknown or the event is not a mapping."""
    if event_type not in EVENT_ROUTES:
        raise InvalidEvent(
            f"unknown event type {_name(event_type)!r}; one of: {', '.join(EVENT_TYPES)}",
            event_type=str(event_type),
        )
    if isinstance(event, dict):
        return event
    if isinstance(event, Mapping):
        return dict(event)
    raise InvalidEvent(
        f"a {event_type} must be a JSON object (a mapping), not {type(event).__name__}",
        event_type=event_type,
    )


def refuse_content_fields(doc: dict[str, Any], registry: SchemaRegistry) -> None:
    """ConfidentialityError when a lifecycle event has fields beyond its variant's."""
    allowed = registry.allowed_fields(LIFECYCLE, doc)
    if allowed is None:  # pragma: no cover - engine_event always has variants
        return
    extra = sorted(_name(k) for k in doc if k not in allowed)
    if not extra:
        return
    variant = doc.get(DISCRIMINATORS[LIFECYCLE])
    # Name the variant only when it is one of the schema's (else it could be anything).
    known = isinstance(variant, str) and variant in _variant_names(registry)
    what = f"a {variant} event" if known else "a lifecycle event"
    raise ConfidentialityError(
        f"engine_event refused: {what} carries structure only (route, model, provider, "
        f"latency, status), never content; fields not allowed: {', '.join(extra)} "
        "(values withheld)",
        event_type=LIFECYCLE,
        fields=tuple(extra),
    )


def _variant_names(registry: SchemaRegistry) -> frozenset[str]:
    prop = registry.schemas[LIFECYCLE]["properties"][DISCRIMINATORS[LIFECYCLE]]
    return frozenset(prop.get("enum", ()))


def describe(event_type: str, violation: Violation) -> str:
    """A message for `violation` that never quotes a value from the event."""
    where = violation.path or "/"
    text = (
        f"{event_type} does not match schemas/v1/{event_type}.json: rule "
        f"{violation.rule!r} failed at {where} (schema {violation.schema_path})"
    )
    if violation.rule in _FIELD_NAMING_RULES:
        text += f": {violation.message}"
    return text


def check_event(
    event_type: str,
    event: object,
    *,
    validate: bool = True,
    registry: SchemaRegistry | None = None,
) -> dict[str, Any]:
    """Check `event` as the SDK does before sending it; answer it as a dict.

    Raises ConfidentialityError (always checked) or InvalidEvent (schema checked only
    when `validate`)."""
    registry = registry or default_registry()
    doc = as_document(event_type, event)
    if event_type == LIFECYCLE:
        refuse_content_fields(doc, registry)
    if validate:
        violation = registry.check(event_type, doc)
        if violation is not None:
            raise InvalidEvent(
                describe(event_type, violation), event_type=event_type, violation=violation
            )
    return doc


def entity_key(event_type: str, doc: Mapping[str, Any]) -> bytes | None:
    """The event's entity id (what its typed topic is partitioned by), as key bytes."""
    value = doc.get(EVENT_ROUTES[event_type].key_field)
    return value.encode("utf-8") if isinstance(value, str) else None
