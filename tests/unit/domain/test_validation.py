"""SchemaRegistry tests: the fast verdict (jsonschema_rs) and the explained one (jsonschema)
agree on every example and on generated documents, and a Violation says where and why.

The reference is an independent jsonschema Draft7Validator with an RFC 3339 `date-time`
check (as in test_schemas.py): an invalid example must be refused by all three verdicts.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator, ValidationError
from jsonschema.exceptions import best_match

from streams.domain.validation import SchemaRegistry, Violation, default_registry
from tests.unit.domain import schema_strategies as strategies
from tests.unit.domain.schema_files import (
    EXAMPLES_DIR,
    FORMAT_CHECKER,
    SCHEMA_DIR,
    is_date_time,
    property_names,
)

REGISTRY = SchemaRegistry()
NAMES = sorted(REGISTRY.schemas)

REFERENCE = {
    name: Draft7Validator(schema, format_checker=FORMAT_CHECKER)
    for name, schema in REGISTRY.schemas.items()
}
POINTER = re.compile(r"^(/([^~/]|~[01])*)*$")  # dead_letter.json's error.path pattern


def examples(kind: str) -> list[tuple[str, Path]]:
    return [(n, p) for n in NAMES for p in sorted((EXAMPLES_DIR / n / kind).glob("*.json"))]


ALL_EXAMPLES = examples("valid") + examples("invalid")
IDS = [f"{n}/{p.parent.name}/{p.stem}" for n, p in ALL_EXAMPLES]


def pointer(error: ValidationError) -> str:
    parts = (str(p).replace("~", "~0").replace("/", "~1") for p in error.absolute_path)
    return "".join("/" + p for p in parts)


def fast_ok(name: str, doc: Any) -> bool:
    """jsonschema_rs's verdict; False when it cannot read `doc` (the registry asks
    jsonschema then)."""
    try:
        return REGISTRY._fast[name].is_valid(doc)
    except ValueError:
        return False


def resolve(doc: Any, path: str) -> Any:
    """The value at JSON pointer `path` in `doc` (KeyError/IndexError if it is not there)."""
    node = doc
    for part in path.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def assert_verdicts_agree(name: str, doc: Any) -> bool:
    """jsonschema_rs, the registry and the reference agree; returns the verdict."""
    expected = REFERENCE[name].is_valid(doc)
    assert fast_ok(name, doc) is expected, (name, doc)
    violation = REGISTRY.check(name, doc)
    assert (violation is None) is expected, (name, doc, violation)
    assert (REGISTRY.explain(name, doc) is None) is expected
    if violation is not None:
        errors = list(REFERENCE[name].iter_errors(doc))
        best = best_match(errors)
        assert best is not None
        assert violation.rule == best.validator
        assert violation.path == pointer(best)
        assert violation.message == best.message
        assert violation.schema_path == "".join(
            "/" + str(p).replace("~", "~0").replace("/", "~1") for p in best.absolute_schema_path
        )
        assert (violation.rule, violation.path) in {(e.validator, pointer(e)) for e in errors}
        assert POINTER.match(violation.path)
        resolve(doc, violation.path)  # the path names a location that exists
    return expected


# ------------------------------------------------------------------ examples --


@pytest.mark.parametrize(("name", "path"), ALL_EXAMPLES, ids=IDS)
def test_verdicts_agree_on_every_example(name: str, path: Path) -> None:
    doc = orjson.loads(path.read_bytes())
    assert assert_verdicts_agree(name, doc) is (path.parent.name == "valid")


def test_every_schema_is_loaded() -> None:
    assert sorted(p.stem for p in SCHEMA_DIR.glob("*.json")) == NAMES
    assert len(examples("invalid")) > 50
    for name in NAMES:
        assert name in REGISTRY
    assert "nope" not in REGISTRY
    assert None not in REGISTRY


@pytest.mark.parametrize(
    ("name", "stem", "rule", "path"),
    [
        ("engine_execution", "missing_metrics_success", "required", "/metrics"),
        ("engine_execution", "missing_engine_id", "required", ""),
        (
            "comparison_result",
            "candidate_latency_negative",
            "minimum",
            "/candidates/1/metrics/latency_ms",
        ),
        ("comparison_result", "candidate_missing_output", "required", "/candidates/0"),
        ("training_sample", "tier_platinum", "enum", "/tier"),
        ("engine_event", "status_code_600", "maximum", "/status_code"),
        ("session_event", "hardware_extra_field", "additionalProperties", "/hardware"),
        ("ml_job_command", "job_id_uppercase", "pattern", "/job_id"),
        ("dead_letter", "removed_fields_not_strings", "type", "/removed_fields/0"),
        ("window_stats", "iso_not_date_time", "format", "/window_start_iso"),
    ],
)
def test_violation_names_rule_and_location(name: str, stem: str, rule: str, path: str) -> None:
    doc = orjson.loads((EXAMPLES_DIR / name / "invalid" / f"{stem}.json").read_bytes())
    violation = REGISTRY.check(name, doc)
    assert violation is not None
    assert (violation.rule, violation.path) == (rule, path)
    assert violation.schema_path.endswith(f"/{rule}")
    assert violation.message


@pytest.mark.parametrize(
    "value",
    [
        "2023-01-01T00:00:00Z",
        "2023-01-01t00:00:00.123z",
        "2024-02-29T23:59:59+01:00",
        "2023-02-29T00:00:00Z",
        "2023-01-01T24:00:00Z",
        "2023-01-01T00:00:60Z",
        "2016-12-31T23:59:60Z",
        "2016-12-31t23:59:60z",
        "2023-04-31T00:00:00Z",
        "2023-01-01T00:00:00.000001-23:59",
        "2023-01-01T00:00:00+24:00",
        "2023-01-01T00:00:00+0100",
        "2023-01-01 00:00:00Z",
        "2023-01-01T00:00:00",
        "2023-01-01T00:00:00Z\n",
        "2023-13-01T00:00:00Z",
        "",
    ],
)
def test_date_time_format_agrees(value: str) -> None:
    doc = orjson.loads(
        (EXAMPLES_DIR / "window_stats" / "valid" / "required_only.json").read_bytes()
    )
    doc["window_start_iso"] = value
    assert assert_verdicts_agree("window_stats", doc) is is_date_time(value)


# ----------------------------------------------------------------- pointers --


def test_violation_path_is_an_escaped_json_pointer(tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "properties": {"xs": {"type": "array", "items": {"type": "integer"}}},
        "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer"}},
    }
    (tmp_path / "thing.json").write_bytes(orjson.dumps(schema))
    registry = SchemaRegistry(tmp_path)
    cases: list[tuple[dict[str, Any], str, Any]] = [
        ({"xs": [1, 2, "3"]}, "/xs/2", "3"),
        ({"a/b": {"c~d": "x"}}, "/a~1b/c~0d", "x"),
        ({"~1": {"/": None}}, "/~01/~1", None),
        ({"": {"": "x"}}, "//", "x"),
    ]
    for doc, path, value in cases:
        violation = registry.check("thing", doc)
        assert violation is not None
        assert violation.path == path
        assert POINTER.match(violation.path)
        assert resolve(doc, violation.path) == value


# ---------------------------------------------------------- allowed fields --

ENVELOPE = {"event", "engine_id", "timestamp"}


@pytest.mark.parametrize(
    ("variant", "fields"),
    [
        ("EngineStarted", {"model", "port"}),
        ("ModelLoaded", {"model"}),
        ("WarmUpComplete", {"model"}),
        ("RequestServed", {"route", "model", "provider", "latency_ms", "status_code"}),
        ("EngineError", {"kind"}),
        ("EngineStopping", {"model"}),
    ],
)
def test_allowed_fields_of_lifecycle_variants(variant: str, fields: set[str]) -> None:
    allowed = REGISTRY.allowed_fields("engine_event", {"event": variant, "prompt": "x"})
    assert allowed == frozenset(ENVELOPE | fields)


@pytest.mark.parametrize("variant", ["Unknown", None, 5, ["RequestServed"], {"a": 1}])
def test_allowed_fields_of_unknown_variant_is_every_variant(variant: Any) -> None:
    doc = {} if variant is None else {"event": variant}
    allowed = REGISTRY.allowed_fields("engine_event", doc)
    assert allowed == frozenset(
        ENVELOPE | {"model", "port", "route", "provider", "latency_ms", "status_code", "kind"}
    )
    assert "prompt" not in allowed


def test_allowed_fields_of_other_types() -> None:
    assert REGISTRY.allowed_fields("engine_execution", {"engine_id": "x"}) is None
    assert REGISTRY.allowed_fields("dead_letter", {}) is None
    submit = REGISTRY.allowed_fields("ml_job_command", {"command": "submit"})
    assert submit == frozenset({"command", "job_id", "timestamp", "kind", "target", "spec"})
    ended = REGISTRY.allowed_fields("session_event", {"event": "session_ended"})
    assert ended == frozenset({"event", "session_id", "timestamp"})


def test_allowed_fields_match_the_schema_for_every_valid_example() -> None:
    for name in ("engine_event", "session_event", "ml_job_command"):
        for path in sorted((EXAMPLES_DIR / name / "valid").glob("*.json")):
            doc = orjson.loads(path.read_bytes())
            allowed = REGISTRY.allowed_fields(name, doc)
            assert allowed is not None and set(doc) <= allowed
            for extra in sorted(allowed - set(doc)):
                # every allowed field that is absent really is a property of this variant
                assert any(
                    extra in clause["then"]["properties"]
                    for clause in REGISTRY.schemas[name]["allOf"]
                    if clause["if"]["properties"][
                        "command" if name == "ml_job_command" else "event"
                    ]["const"]
                    == doc["command" if name == "ml_job_command" else "event"]
                )


# ----------------------------------------------------------------- loading --


def test_empty_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SchemaRegistry(tmp_path)
    (tmp_path / "notes.txt").write_text("not a schema")
    with pytest.raises(FileNotFoundError):
        SchemaRegistry(tmp_path)
    with pytest.raises(FileNotFoundError):
        SchemaRegistry(tmp_path / "missing")


def test_default_registry_is_loaded_once() -> None:
    assert default_registry() is default_registry()
    assert sorted(default_registry().schemas) == NAMES


def test_violation_is_immutable() -> None:
    violation = Violation("m", "type", "/a", "/properties/a/type")
    with pytest.raises(AttributeError):
        violation.path = "/b"  # type: ignore[misc]


# -------------------------------------------------------------- properties --

VALID: dict[str, list[dict[str, Any]]] = {
    name: [
        orjson.loads(p.read_bytes()) for p in sorted((EXAMPLES_DIR / name / "valid").glob("*.json"))
    ]
    for name in NAMES
}


FIELD_NAMES = sorted(set().union(*(property_names(s) for s in REGISTRY.schemas.values())))

json_values = strategies.json_values(max_size=4, max_leaves=12)
INTERESTING: st.SearchStrategy[Any] = st.sampled_from(
    [
        "2023-01-01T00:00:00Z", "2023-02-29T00:00:00Z", "2024-02-29T00:00:00+01:00",
        "2023-01-01T00:00:60Z", "2023-01-01T00:00:00+0100", "2023-01-01t00:00:00z",
        "0123456789abcdef0123456789abcdef", "0123456789ABCDEF0123456789ABCDEF",
        "engine.ingest/0/0/-", "engine.ingest/0/0/x", "eyJ0cmFjZV9pZCI6InQtMSJ9", "abc",
        "", "x" * 300, 0, -1, 1, 100, 101, 599, 600, 65535, 65536, 0.0, 0.5, 1.0, 1.5, 100.0,
        True, False, None, [], {}, ["a", "a"], [1, True], [0, False], ["a", ""],
    ]
)  # fmt: skip


def swapped(value: Any) -> st.SearchStrategy[Any]:
    """Values of a neighbouring type: int -> float -> bool -> str -> int, and containers."""
    if isinstance(value, bool):
        return st.sampled_from([str(value).lower(), int(value), float(value), None, [value]])
    if isinstance(value, int):
        return st.sampled_from([float(value), value + 0.5, value != 0, str(value), -1])
    if isinstance(value, float):
        whole = int(value) if math.isfinite(value) else 0
        return st.sampled_from([value > 0, whole, str(value), -value, value * 1e6])
    if isinstance(value, str):
        return st.sampled_from([len(value), value != "", "", value.upper(), value + "~/", [value]])
    if isinstance(value, list):
        return st.sampled_from([[], value[:1], value + value[:1], {}, None])
    if isinstance(value, dict):
        return st.sampled_from([[], [value], {}, "{}", None])
    return st.sampled_from([0, "", False, [], {}])


def containers(node: Any) -> list[Any]:
    found: list[Any] = []
    if isinstance(node, (dict, list)):
        found.append(node)
        for value in node.values() if isinstance(node, dict) else node:
            found += containers(value)
    return found


@st.composite
def mutated(draw: st.DrawFn, name: str) -> Any:
    """A valid example of schema `name` with up to four values dropped, replaced, swapped
    or added, anywhere in the document (objects and arrays alike)."""
    doc = copy.deepcopy(draw(st.sampled_from(VALID[name])))
    for _ in range(draw(st.integers(0, 4))):
        target = draw(st.sampled_from(containers(doc)))
        op = draw(st.sampled_from(["drop", "replace", "swap", "add"]))
        new = json_values | INTERESTING
        if isinstance(target, dict):
            if op != "add" and target:
                key = draw(st.sampled_from(sorted(target)))
                if op == "drop":
                    del target[key]
                    continue
                new = swapped(target[key]) if op == "swap" else new
            else:
                key = draw(st.sampled_from(FIELD_NAMES) | st.text(max_size=8))
            target[key] = copy.deepcopy(draw(new))
        elif op != "add" and target:
            index = draw(st.integers(0, len(target) - 1))
            if op == "drop":
                del target[index]
                continue
            new = swapped(target[index]) if op == "swap" else new
            target[index] = copy.deepcopy(draw(new))
        else:
            target.append(copy.deepcopy(draw(new)))
    return doc


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_verdicts_agree_on_mutated_documents(name: str, data: st.DataObject) -> None:
    assert_verdicts_agree(name, data.draw(mutated(name)))


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=50, deadline=None)
@given(doc=json_values)
def test_verdicts_agree_on_arbitrary_json(name: str, doc: Any) -> None:
    assert_verdicts_agree(name, doc)
