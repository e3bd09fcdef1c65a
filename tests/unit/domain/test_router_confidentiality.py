"""A lifecycle event's content never reaches a dead letter, whatever the variant or field."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from streams.domain.router import (
    CONFIDENTIALITY,
    SCHEMA_VIOLATION,
    DeadLetter,
)
from tests.unit.domain.router_cases import (
    NAMES,
    NOW,
    REQUEST_SERVED,
    SECRET,
    header,
    only_dead,
    route,
)

# ---------------------------------------------------------- confidentiality --


def _assert_secret_absent(dl: DeadLetter) -> None:
    record = dl.to_record(NOW)
    assert SECRET.encode() not in orjson.dumps(record)
    assert SECRET.encode() not in base64.b64decode(record["original"])
    assert SECRET not in dl.message


@pytest.mark.parametrize(
    ("extra", "removed"),
    [
        ({"prompt": SECRET}, ["prompt"]),
        ({"messages": [{"role": "user", "content": SECRET}]}, ["messages"]),
        (
            {"completion": SECRET, "prompt": SECRET, "text": [SECRET]},
            ["completion", "prompt", "text"],
        ),
        ({"response": {"body": SECRET}}, ["response"]),
    ],
)
@pytest.mark.parametrize("shape", ["single", "batch", "raw_topic", "field"])
def test_lifecycle_content_is_never_stored(
    extra: dict[str, Any], removed: list[str], shape: str
) -> None:
    doc = {**REQUEST_SERVED, **extra}
    if shape == "single":
        out = route(orjson.dumps(doc), headers=header("engine_event"))
    elif shape == "batch":
        out = route(orjson.dumps([REQUEST_SERVED, doc]), headers=header("engine_event"))
    elif shape == "raw_topic":
        out = route(orjson.dumps(doc), topic=NAMES.raw["engine_event"])
    else:
        out = route(orjson.dumps({**doc, "event_type": "engine_event"}))
    assert len(out.dead_letters) == 1
    dl = out.dead_letters[0]
    assert dl.reason == CONFIDENTIALITY
    assert dl.removed_fields == removed
    assert dl.to_record(NOW)["removed_fields"] == removed
    assert dl.event_type == "engine_event"
    assert orjson.loads(dl.original) == REQUEST_SERVED
    _assert_secret_absent(dl)
    assert [e.doc for e in out.events] == ([REQUEST_SERVED] if shape == "batch" else [])


@pytest.mark.parametrize("variant", ["ModelLoaded", "EngineError", "Unknown", None])
def test_lifecycle_content_refused_on_every_variant(variant: str | None) -> None:
    doc = dict(REQUEST_SERVED, event=variant, prompt=SECRET)
    if variant is None:
        del doc["event"]
    dl = only_dead(route(orjson.dumps(doc), headers=header("engine_event")))
    assert dl.reason == CONFIDENTIALITY
    assert "prompt" in dl.removed_fields
    _assert_secret_absent(dl)


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("status_code", SECRET, "type"),
        ("latency_ms", SECRET, "type"),
        ("route", [SECRET], "type"),
        ("model", {"text": SECRET}, "type"),
        ("provider", SECRET * 20, "maxLength"),
        ("event", SECRET, "enum"),
        ("engine_id", 7, "type"),
    ],
)
def test_lifecycle_violation_does_not_quote_values(field: str, value: Any, rule: str) -> None:
    doc = {**REQUEST_SERVED, field: value}
    dl = only_dead(route(orjson.dumps(doc), headers=header("engine_event")))
    assert dl.reason == SCHEMA_VIOLATION
    assert dl.violation is not None
    assert dl.violation.rule == rule
    if field != "event":
        assert dl.violation.path == f"/{field}"
    shown = dl.to_record(NOW)["error"]
    assert SECRET not in dl.message
    assert SECRET not in orjson.dumps(shown).decode()
    assert str(value) not in dl.message


@pytest.mark.parametrize(
    ("extra", "removed"),
    [({"": SECRET}, []), ({"": SECRET, "prompt": SECRET}, ["prompt"])],
)
def test_lifecycle_field_with_empty_name(extra: dict[str, Any], removed: list[str]) -> None:
    """A field named '' is removed too; dead_letter.json cannot name it in removed_fields."""
    dl = only_dead(route(orjson.dumps({**REQUEST_SERVED, **extra}), headers=header("engine_event")))
    assert dl.reason == CONFIDENTIALITY
    assert dl.removed_fields == removed
    assert '""' in dl.message
    assert orjson.loads(dl.original) == REQUEST_SERVED
    _assert_secret_absent(dl)
