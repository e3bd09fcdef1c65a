"""What the router tests share: the router under test, the schema examples, an
independent jsonschema check of every dead letter, and small message builders."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft7Validator, ValidationError

from streams.config.topics import EVENT_ROUTES, TopicNames
from streams.domain.router import (
    DeadLetter,
    Inbound,
    Router,
    Routing,
)
from streams.domain.validation import SchemaRegistry
from tests.unit.domain.schema_files import EXAMPLES_DIR, SCHEMA_DIR

NAMES = TopicNames()
REGISTRY = SchemaRegistry()
ROUTER = Router(NAMES, REGISTRY)
NOW = 1_700_000_000.25
ROUTABLE = list(EVENT_ROUTES)
SECRET = "SECRET-PROMPT-TEXT"

SCHEMAS: dict[str, dict[str, Any]] = {
    p.stem: orjson.loads(p.read_bytes()) for p in sorted(SCHEMA_DIR.glob("*.json"))
}
# Independent jsonschema validators (the routable schemas and dead_letter use no formats).
VALIDATORS = {name: Draft7Validator(schema) for name, schema in SCHEMAS.items()}


def example_paths(event_type: str, kind: str) -> list[Path]:
    return sorted((EXAMPLES_DIR / event_type / kind).glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(path.read_bytes())
    return doc


def examples(kind: str) -> list[tuple[str, Path]]:
    return [(t, p) for t in ROUTABLE for p in example_paths(t, kind)]


def ids(params: Iterable[tuple[str, Path]]) -> list[str]:
    return [f"{t}/{p.stem}" for t, p in params]


VALID_DOCS: dict[str, list[dict[str, Any]]] = {
    t: [load(p) for p in example_paths(t, "valid")] for t in ROUTABLE
}
SEED = load(EXAMPLES_DIR / "engine_execution" / "valid" / "seed.json")
REQUEST_SERVED = load(EXAMPLES_DIR / "engine_event" / "valid" / "request_served.json")


def pointer(error: ValidationError) -> str:
    parts = (str(p).replace("~", "~0").replace("/", "~1") for p in error.absolute_path)
    return "".join("/" + p for p in parts)


def strip_type(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "event_type"}




def lifecycle_extras(doc: dict[str, Any]) -> list[str]:
    """Fields an engine_event may not carry, derived from the schema (not the registry)."""
    variants = {
        c["if"]["properties"]["event"]["const"]: set(c["then"]["properties"])
        for c in SCHEMAS["engine_event"]["allOf"]
    }
    variant = doc.get("event")
    allowed = variants.get(variant) if isinstance(variant, str) else None
    if allowed is None:
        allowed = set().union(*variants.values())
    return sorted(k for k in doc if k not in allowed)


def check_dead_letter(dl: DeadLetter) -> dict[str, Any]:
    """The dead letter's record is a valid dead_letter document that says what it holds."""
    record = dl.to_record(NOW)
    assert REGISTRY.check("dead_letter", record) is None, record
    assert VALIDATORS["dead_letter"].is_valid(record), record
    index = "-" if dl.batch_index is None else str(dl.batch_index)
    src = dl.source
    assert record["id"] == f"{src.topic}/{src.partition}/{src.offset}/{index}"
    assert record["reason"] == dl.reason
    assert base64.b64decode(record["original"], validate=True) == dl.original
    assert record["source"] == {
        "topic": src.topic,
        "partition": src.partition,
        "offset": src.offset,
        "batch_index": dl.batch_index,
        "message_timestamp_ms": src.timestamp_ms,
    }
    assert record["original_size"] >= len(dl.original)
    assert record["original_truncated"] is (record["original_size"] > len(dl.original))
    assert record["dead_lettered_at"] == NOW
    return record


def route(
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]] = (),
    topic: str | None = None,
    router: Router = ROUTER,
    offset: int = 1042,
    timestamp_ms: int | None = 1670000000123,
) -> Routing:
    """Route one message and check the invariants every outcome must satisfy."""
    msg = Inbound(topic or NAMES.ingest, 3, offset, value, tuple(headers), timestamp_ms)
    out = router.route(msg)
    for dl in out.dead_letters:
        assert dl.source is msg
        check_dead_letter(dl)
    for event in out.events:
        assert event.event_type in EVENT_ROUTES
        assert "event_type" not in event.doc
        assert VALIDATORS[event.event_type].is_valid(event.doc), event.doc
        key = event.doc[EVENT_ROUTES[event.event_type].key_field]
        assert isinstance(key, str) and event.key == key
    return out


def header(event_type: str) -> list[tuple[str, bytes]]:
    return [("event-type", event_type.encode())]


def only_dead(out: Routing) -> DeadLetter:
    assert out.events == []
    assert len(out.dead_letters) == 1, [d.reason for d in out.dead_letters]
    return out.dead_letters[0]
