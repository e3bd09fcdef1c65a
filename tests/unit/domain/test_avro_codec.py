"""Avro wire tests: the .avsc twins match the JSON Schemas and containers round-trip.

Round-trips run over every valid JSON example. Avro cannot tell an absent optional field
from an explicit null (both are the null branch), and the decoder drops None-valued
fields; so an example with explicit nulls comes back without those keys, and the test
checks that this normalised document is still valid against the JSON Schema.
"""

from __future__ import annotations

import io
import json
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
import pytest
from jsonschema import Draft7Validator

from streams.domain.avro_codec import (
    AVRO_DIR,
    AvroDecodeError,
    AvroEncodeError,
    decode_container,
    encode_container,
    is_avro_container,
    load_avro_schemas,
)
from tests.unit.domain.schema_files import EXAMPLES_DIR, SCHEMA_DIR, SCHEMA_NAMES, drop_none

# JSON Schema type -> the Avro types (null branch aside) that carry it
AVRO_TYPES_FOR_JSON = {
    "string": {"string"},
    "integer": {"long"},
    "number": {"long", "double"},
    "boolean": {"boolean"},
    "object": {"record"},
    "array": {"array"},
}

SEED = {
    "schema_version": 1,
    "trace_id": "t-123",
    "task_id": "task-1",
    "engine_id": "gpt-x",
    "timestamp": 1670000000,
    "input": "hello",
    "output": "hi",
    "metrics": {"latency_ms": 42, "success": True},
}


@cache
def load_schema(name: str) -> dict[str, Any]:
    """Return the parsed JSON Schema ``schemas/v1/<name>.json``."""
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
    return schema


def load_avsc(name: str) -> dict[str, Any]:
    """Return the raw (unparsed) Avro schema ``schemas/avro/<name>.avsc``."""
    schema: dict[str, Any] = json.loads((AVRO_DIR / f"{name}.avsc").read_text())
    return schema


def valid_examples() -> list[tuple[str, Path]]:
    """Return ``(schema name, path)`` of every valid JSON example."""
    return [
        (name, path)
        for name in SCHEMA_NAMES
        for path in sorted((EXAMPLES_DIR / name / "valid").glob("*.json"))
    ]




def camel(name: str) -> str:
    """engine_execution -> EngineExecution."""
    return "".join(part.capitalize() for part in name.split("_"))


# --------------------------------------------------------- field paths ------


class FieldInfo:
    """What one dotted field path allows: its types and whether it is always required."""

    def __init__(self) -> None:
        self.types: set[str] = set()
        self.required = False

    def __repr__(self) -> str:
        return f"FieldInfo(types={sorted(self.types)}, required={self.required})"


def json_fields(
    node: Any,
    prefix: str = "",
    out: dict[str, FieldInfo] | None = None,
    conditional: bool = False,
) -> dict[str, FieldInfo]:
    """Collect dotted field paths of a JSON Schema, following properties, items,
    allOf/anyOf/oneOf and then/else. A field counts as required only where the object
    that declares it requires it unconditionally (a variant's fields are optional)."""
    out = {} if out is None else out
    if not isinstance(node, dict):
        return out
    required = set(node.get("required", [])) if not conditional else set()
    for field, sub in node.get("properties", {}).items():
        info = out.setdefault(prefix + field, FieldInfo())
        info.required |= field in required
        if isinstance(sub, dict) and "type" in sub:
            types = sub["type"] if isinstance(sub["type"], list) else [sub["type"]]
            info.types |= {t for t in types if t != "null"}
        json_fields(sub, f"{prefix}{field}.", out)
    if "items" in node:
        json_fields(node["items"], prefix, out, conditional)
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in node.get(key, []):
            json_fields(sub, prefix, out, True)
    for key in ("then", "else"):
        json_fields(node.get(key), prefix, out, True)
    return out


def avro_fields(
    node: Any,
    prefix: str = "",
    out: dict[str, FieldInfo] | None = None,
    named: dict[str, Any] | None = None,
) -> dict[str, FieldInfo]:
    """Collect dotted field paths of a raw Avro schema (records, arrays, unions, names)."""
    out = {} if out is None else out
    named = {} if named is None else named
    for record in _avro_records(node, named):
        for field in record["fields"]:
            info = out.setdefault(prefix + field["name"], FieldInfo())
            branches = field["type"] if isinstance(field["type"], list) else [field["type"]]
            info.required = "null" not in branches
            info.types |= {_avro_kind(b, named) for b in branches if b != "null"}
            avro_fields(field["type"], f"{prefix}{field['name']}.", out, named)
    return out


def _avro_records(node: Any, named: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the record schemas reachable from a type without crossing a record field."""
    if isinstance(node, str):
        return _avro_records(named[node], named) if node in named else []
    if isinstance(node, list):
        return [r for branch in node for r in _avro_records(branch, named)]
    if node["type"] == "array":
        return _avro_records(node["items"], named)
    if node["type"] == "record":
        ns = node.get("namespace", "enginestream.v1")
        named[node["name"]] = named[f"{ns}.{node['name']}"] = node
        return [node]
    return []


def _avro_kind(branch: Any, named: dict[str, Any]) -> str:
    """Return the Avro type name of one union branch (a named type resolves to its kind)."""
    if isinstance(branch, str):
        return str(named[branch]["type"]) if branch in named else branch
    return str(branch["type"])


# ------------------------------------------------------------------ tests ---


def test_every_avro_schema_is_loaded() -> None:
    assert sorted(load_avro_schemas()) == sorted(SCHEMA_NAMES)
    assert sorted(p.stem for p in AVRO_DIR.glob("*.avsc")) == sorted(SCHEMA_NAMES)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_record_name_and_namespace(name: str) -> None:
    avsc = load_avsc(name)
    assert avsc["type"] == "record"
    assert avsc["name"] == camel(name)
    assert avsc["namespace"] == "enginestream.v1"
    assert load_avro_schemas()[name]["name"] == f"enginestream.v1.{camel(name)}"


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_json_and_avro_name_the_same_fields(name: str) -> None:
    assert set(json_fields(load_schema(name))) == set(avro_fields(load_avsc(name)))


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_json_and_avro_agree_on_types_and_optionality(name: str) -> None:
    json_info = json_fields(load_schema(name))
    avro_info = avro_fields(load_avsc(name))
    for path, info in json_info.items():
        expected = set().union(*(AVRO_TYPES_FOR_JSON[t] for t in info.types))
        assert avro_info[path].types == expected, path
        assert avro_info[path].required is info.required, path


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_optional_avro_fields_default_to_null(name: str) -> None:
    def check(node: Any) -> None:
        if isinstance(node, list):
            for branch in node:
                check(branch)
        elif isinstance(node, dict) and node.get("type") == "array":
            check(node["items"])
        elif isinstance(node, dict) and node.get("type") == "record":
            for field in node["fields"]:
                if isinstance(field["type"], list) and "null" in field["type"]:
                    assert field["type"][0] == "null" and field["default"] is None, field
                check(field["type"])

    check(load_avsc(name))


@pytest.mark.parametrize(
    ("name", "path"),
    valid_examples(),
    ids=[f"{name}/{path.stem}" for name, path in valid_examples()],
)
def test_valid_example_round_trips(name: str, path: Path) -> None:
    event = json.loads(path.read_text())
    data = encode_container(name, [event])
    assert is_avro_container(data)
    event_type, records = decode_container(data)
    assert event_type == name
    assert records == [drop_none(event)]
    # null and absent mean the same to the JSON Schema: the decoded document stays valid
    assert list(Draft7Validator(load_schema(name)).iter_errors(records[0])) == []
    if drop_none(event) == event:
        assert records == [event]


def test_numbers_keep_int_or_float() -> None:
    event = {**SEED, "timestamp": 1670000000.25, "metrics": {"latency_ms": 3, "success": True}}
    _, [decoded] = decode_container(encode_container("engine_execution", [event]))
    assert type(decoded["timestamp"]) is float and decoded["timestamp"] == 1670000000.25
    assert type(decoded["metrics"]["latency_ms"]) is int


def test_batch_of_500_round_trips() -> None:
    events: list[dict[str, Any]] = []
    for i in range(500):
        event: dict[str, Any] = {
            **SEED,
            "trace_id": f"t-{i}",
            "engine_id": f"engine-{i % 7}",
            "timestamp": 1670000000 + i if i % 2 else 1670000000 + i / 3,
            "input": "in " * (i % 13),
            "output": f"out {i} \u00e9\u4e2d",
            "metrics": {"latency_ms": i * 1.5, "success": i % 5 != 0},
        }
        if i % 3 == 0:
            event["metrics"]["quality_score"] = (i % 100) / 100
            event["status"] = "ok"
        if i % 4 == 0:
            event["engine_instance_id"] = f"pod-{i % 3}"
        events.append(event)
    event_type, decoded = decode_container(encode_container("engine_execution", events))
    assert event_type == "engine_execution"
    assert decoded == events


def test_empty_batch_round_trips() -> None:
    assert decode_container(encode_container("window_stats", [])) == ("window_stats", [])


def test_is_avro_container() -> None:
    assert is_avro_container(encode_container("engine_execution", [SEED]))
    assert not is_avro_container(json.dumps(SEED).encode())
    assert not is_avro_container(b"")
    assert not is_avro_container(b"Obj")


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda d: d[: len(d) - 5], id="truncated_tail"),
        pytest.param(lambda d: d[:20], id="truncated_header"),
        pytest.param(lambda d: b"Obj\x01" + b"\xff" * 40, id="garbage_after_magic"),
        pytest.param(lambda d: d[:-16] + bytes(16), id="bad_sync_marker"),
        pytest.param(lambda d: b'{"not": "avro"}', id="json_bytes"),
        pytest.param(lambda d: b"", id="empty"),
    ],
)
def test_corrupt_container_raises(corrupt: Any) -> None:
    data = encode_container("engine_execution", [SEED, {**SEED, "trace_id": "t-2"}])
    with pytest.raises(AvroDecodeError):
        decode_container(corrupt(data))


def test_avro_decode_error_is_value_error() -> None:
    assert issubclass(AvroDecodeError, ValueError)
    assert issubclass(AvroEncodeError, ValueError)


def test_unknown_record_name_decodes_with_type_none() -> None:
    schema = {
        "type": "record",
        "name": "Other",
        "namespace": "elsewhere",
        "fields": [{"name": "a", "type": ["null", "long"], "default": None}],
    }
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), [{"a": 1}, {"a": None}])
    assert decode_container(buf.getvalue()) == (None, [{"a": 1}, {}])


def test_container_of_non_records_raises() -> None:
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema("string"), ["a", "b"])
    with pytest.raises(AvroDecodeError):
        decode_container(buf.getvalue())


def test_encode_refuses_unknown_type_extra_and_missing_fields() -> None:
    with pytest.raises(AvroEncodeError):
        encode_container("no_such_event", [SEED])
    served = {
        "event": "RequestServed",
        "engine_id": "e",
        "timestamp": 1,
        "route": "/v1/chat",
        "model": "m",
        "provider": "p",
        "latency_ms": 5,
        "status_code": 200,
    }
    encode_container("engine_event", [served])
    with pytest.raises(AvroEncodeError, match="prompt"):
        encode_container("engine_event", [{**served, "prompt": "secret"}])
    with pytest.raises(AvroEncodeError):
        encode_container("engine_execution", [{k: v for k, v in SEED.items() if k != "input"}])


def test_encode_refuses_float_in_long_field() -> None:
    # fastavro alone would truncate 1.5 to 1 in a long field
    with pytest.raises(AvroEncodeError):
        encode_container("engine_execution", [{**SEED, "schema_version": 1.5}])
