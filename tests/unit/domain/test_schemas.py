"""JSON Schema contract tests: schemas are valid draft 7, examples say what they claim.

Every schema under ``schemas/v1`` must be a valid draft-7 schema with examples; every
``valid/`` example must pass and every ``invalid/`` example must fail for exactly the
reason its file name gives (the JSON Schema keyword and the instance location listed in
``EXPECTED_FAILURES``); jsonschema and fastjsonschema must agree on every example.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest
from jsonschema import Draft7Validator, ValidationError

from tests.unit.domain.schema_files import (
    EXAMPLES_DIR,
    FORMAT_CHECKER,
    SCHEMA_DIR,
    SCHEMA_NAMES,
)

VARIANT_SCHEMAS = {"engine_event", "session_event", "ml_job_command"}

SEED_LINES = {
    "engine_execution": (
        '{"schema_version":1,"trace_id":"t-123","task_id":"task-1","engine_id":"gpt-x",'
        '"timestamp":1670000000,"input":"hello","output":"hi",'
        '"metrics":{"latency_ms":42,"success":true}}'
    ),
    "comparison_result": (
        '{"comparison_id":"c-1","query":"translate this","candidates":[{"engine_id":"a",'
        '"output":"...","metrics":{"latency_ms":20,"quality_score":0.7}},{"engine_id":"b",'
        '"output":"...","metrics":{"latency_ms":35,"quality_score":0.9}}],'
        '"winner":{"engine_id":"b","score":0.9}}'
    ),
    "training_sample": (
        '{"sample_id":"s-1","created_at":1670000100,"source_trace_id":"t-123","tier":"gold",'
        '"input":"hello","output":"hi","validation":{"quality_score":0.95,"validated":true}}'
    ),
}

# "<schema>/<invalid example stem>": (failing JSON Schema keyword, JSON pointer of the
# failing instance location). Every error jsonschema reports must match both.
EXPECTED_FAILURES: dict[str, tuple[str, str]] = {
    "engine_execution/missing_engine_id": ("required", ""),
    "engine_execution/missing_metrics_success": ("required", "/metrics"),
    "engine_execution/latency_negative": ("minimum", "/metrics/latency_ms"),
    "engine_execution/quality_score_above_1": ("maximum", "/metrics/quality_score"),
    "engine_execution/schema_version_2": ("enum", "/schema_version"),
    "engine_execution/timestamp_negative": ("minimum", "/timestamp"),
    "engine_execution/timestamp_iso_string": ("type", "/timestamp"),
    "engine_execution/empty_trace_id": ("minLength", "/trace_id"),
    "engine_execution/success_not_boolean": ("type", "/metrics/success"),
    "engine_execution/status_too_long": ("maxLength", "/status"),
    "engine_execution/event_type_field": ("additionalProperties", ""),
    "engine_execution/metrics_extra_field": ("additionalProperties", "/metrics"),
    "comparison_result/empty_candidates": ("minItems", "/candidates"),
    "comparison_result/missing_winner": ("required", ""),
    "comparison_result/winner_score_above_1": ("maximum", "/winner/score"),
    "comparison_result/winner_missing_score": ("required", "/winner"),
    "comparison_result/candidate_missing_output": ("required", "/candidates/0"),
    "comparison_result/candidate_latency_negative": ("minimum", "/candidates/1/metrics/latency_ms"),
    "comparison_result/candidate_metrics_extra_field": (
        "additionalProperties",
        "/candidates/0/metrics",
    ),
    "comparison_result/candidates_not_array": ("type", "/candidates"),
    "comparison_result/query_not_string": ("type", "/query"),
    "comparison_result/timestamp_negative": ("minimum", "/timestamp"),
    "comparison_result/extra_top_level_field": ("additionalProperties", ""),
    "training_sample/missing_source": ("anyOf", ""),
    "training_sample/missing_validation": ("required", ""),
    "training_sample/tier_platinum": ("enum", "/tier"),
    "training_sample/validation_missing_validated": ("required", "/validation"),
    "training_sample/quality_score_above_1": ("maximum", "/validation/quality_score"),
    "training_sample/lineage_candidate_count_zero": ("minimum", "/lineage/candidate_count"),
    "training_sample/lineage_extra_field": ("additionalProperties", "/lineage"),
    "training_sample/created_at_negative": ("minimum", "/created_at"),
    "training_sample/empty_sample_id": ("minLength", "/sample_id"),
    "training_sample/source_trace_id_null": ("type", "/source_trace_id"),
    "engine_event/prompt_field": ("additionalProperties", ""),
    "engine_event/completion_field": ("additionalProperties", ""),
    "engine_event/missing_engine_id": ("required", ""),
    "engine_event/missing_event": ("required", ""),
    "engine_event/unknown_event": ("enum", "/event"),
    "engine_event/request_served_missing_status_code": ("required", ""),
    "engine_event/status_code_600": ("maximum", "/status_code"),
    "engine_event/latency_negative": ("minimum", "/latency_ms"),
    "engine_event/latency_float": ("type", "/latency_ms"),
    "engine_event/port_above_65535": ("maximum", "/port"),
    "engine_event/model_loaded_with_port": ("additionalProperties", ""),
    "engine_event/engine_error_missing_kind": ("required", ""),
    "engine_event/route_too_long": ("maxLength", "/route"),
    "engine_event/timestamp_milliseconds_string": ("type", "/timestamp"),
    "session_event/missing_session_id": ("required", ""),
    "session_event/unknown_event": ("enum", "/event"),
    "session_event/started_missing_platform": ("required", ""),
    "session_event/started_missing_device_id": ("required", ""),
    "session_event/hardware_battery_above_100": ("maximum", "/hardware/battery_level"),
    "session_event/hardware_extra_field": ("additionalProperties", "/hardware"),
    "session_event/inference_latency_negative": ("minimum", "/latency_ms"),
    "session_event/inference_missing_version": ("required", ""),
    "session_event/error_missing_message": ("required", ""),
    "session_event/ended_extra_field": ("additionalProperties", ""),
    "session_event/timestamp_negative": ("minimum", "/timestamp"),
    "ml_job_command/job_id_not_hex": ("pattern", "/job_id"),
    "ml_job_command/job_id_uppercase": ("pattern", "/job_id"),
    "ml_job_command/missing_job_id": ("required", ""),
    "ml_job_command/unknown_command": ("enum", "/command"),
    "ml_job_command/submit_missing_kind": ("required", ""),
    "ml_job_command/submit_unknown_kind": ("enum", "/kind"),
    "ml_job_command/submit_empty_target": ("minLength", "/target"),
    "ml_job_command/submit_spec_object": ("type", "/spec"),
    "ml_job_command/progress_above_100": ("maximum", "/progress"),
    "ml_job_command/progress_missing": ("required", ""),
    "ml_job_command/fail_missing_error": ("required", ""),
    "ml_job_command/start_extra_field": ("additionalProperties", ""),
    "dead_letter/unknown_reason": ("enum", "/reason"),
    "dead_letter/missing_original": ("required", ""),
    "dead_letter/source_missing_offset": ("required", "/source"),
    "dead_letter/original_size_negative": ("minimum", "/original_size"),
    "dead_letter/original_not_base64": ("pattern", "/original"),
    "dead_letter/id_without_index": ("pattern", "/id"),
    "dead_letter/error_missing_message": ("required", "/error"),
    "dead_letter/error_path_not_pointer": ("pattern", "/error/path"),
    "dead_letter/error_extra_field": ("additionalProperties", "/error"),
    "dead_letter/rule_number": ("type", "/error/rule"),
    "dead_letter/original_truncated_string": ("type", "/original_truncated"),
    "dead_letter/removed_fields_not_strings": ("type", "/removed_fields/0"),
    "window_stats/success_rate_above_1": ("maximum", "/success_rate"),
    "window_stats/missing_latency_p99_ms": ("required", ""),
    "window_stats/window_size_zero": ("minimum", "/window_size_s"),
    "window_stats/count_negative": ("minimum", "/count"),
    "window_stats/iso_not_date_time": ("format", "/window_start_iso"),
    "window_stats/kind_unknown": ("enum", "/kind"),
    "window_stats/quality_mean_above_1": ("maximum", "/quality_score_mean"),
    "window_stats/status_5xx_negative": ("minimum", "/status_5xx"),
    "window_stats/extra_field": ("additionalProperties", ""),
    "window_stats/window_end_string": ("type", "/window_end"),
}

@cache
def load_schema(name: str) -> dict[str, Any]:
    """Return the parsed JSON Schema ``schemas/v1/<name>.json``."""
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
    return schema


@cache
def validator(name: str) -> Draft7Validator:
    """Return a jsonschema validator (with the date-time format checked) for ``name``."""
    return Draft7Validator(load_schema(name), format_checker=FORMAT_CHECKER)


@cache
def fast_validator(name: str) -> Callable[[Any], Any]:
    """Return the fastjsonschema validator for ``name``."""
    return fastjsonschema.compile(load_schema(name))


def example_files(name: str, kind: str) -> list[Path]:
    """Return the example files of ``name`` under ``valid`` or ``invalid``."""
    return sorted((EXAMPLES_DIR / name / kind).glob("*.json"))


def all_examples(kind: str) -> list[tuple[str, Path]]:
    """Return ``(schema name, path)`` for every example of one kind."""
    return [(name, path) for name in SCHEMA_NAMES for path in example_files(name, kind)]


def _ids(params: list[tuple[str, Path]]) -> list[str]:
    return [f"{name}/{path.stem}" for name, path in params]


def pointer(error: ValidationError) -> str:
    """Return the JSON pointer of the instance location an error is about."""
    parts = (str(p).replace("~", "~0").replace("/", "~1") for p in error.absolute_path)
    return "".join("/" + p for p in parts)


def subschemas(node: Any, conditional: bool = False) -> list[tuple[dict[str, Any], bool]]:
    """Return every schema object inside ``node`` (with itself), flagged when it sits
    inside allOf/anyOf/oneOf/then/else (so its constraints apply only conditionally)."""
    if not isinstance(node, dict):
        return []
    found = [(node, conditional)]
    for prop in node.get("properties", {}).values():
        found += subschemas(prop, conditional)
    if "items" in node:
        found += subschemas(node["items"], conditional)
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in node.get(key, []):
            found += subschemas(sub, True)
    for key in ("then", "else"):  # an "if" is a predicate on the discriminator, not a shape
        found += subschemas(node.get(key), True)
    return found


# ----------------------------------------------------------------- schemas --


def test_every_schema_file_is_listed() -> None:
    assert sorted(p.stem for p in SCHEMA_DIR.glob("*.json")) == sorted(SCHEMA_NAMES)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_is_valid_draft7(name: str) -> None:
    schema = load_schema(name)
    Draft7Validator.check_schema(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["$id"] == f"https://enginestream.dev/schemas/v1/{name}.json"
    assert schema["title"] and schema["description"]
    assert schema["type"] == "object"


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_object_forbids_additional_properties(name: str) -> None:
    schema = load_schema(name)
    for node, _ in subschemas(schema):
        if node is schema and name in VARIANT_SCHEMAS:
            # the top level of a variant schema must stay open: its then-clauses close it
            assert "additionalProperties" not in node
            assert all(c["then"]["additionalProperties"] is False for c in node["allOf"])
        elif node.get("type") == "object" or "properties" in node:
            assert node.get("additionalProperties") is False, node


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_no_event_type_field_and_fields_are_described(name: str) -> None:
    for node, _ in subschemas(load_schema(name)):
        props = node.get("properties", {})
        assert "event_type" not in props or name == "dead_letter"
        for field, sub in props.items():
            if isinstance(sub, dict) and "type" in sub:
                assert sub.get("description"), f"{name}: {field} has no description"


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_timestamps_are_epoch_seconds(name: str) -> None:
    for node, _ in subschemas(load_schema(name)):
        for field, sub in node.get("properties", {}).items():
            if field in {"timestamp", "created_at", "dead_lettered_at"} and sub is not True:
                assert sub["type"] == "number" and sub["minimum"] == 0, (name, field)


@pytest.mark.parametrize("name", sorted(VARIANT_SCHEMAS))
def test_variant_discriminator_covers_every_variant(name: str) -> None:
    schema = load_schema(name)
    disc = "command" if name == "ml_job_command" else "event"
    variants = [c["if"]["properties"][disc]["const"] for c in schema["allOf"]]
    assert sorted(variants) == sorted(schema["properties"][disc]["enum"])
    valid = {json.loads(p.read_text())[disc] for p in example_files(name, "valid")}
    assert valid == set(variants), "every variant needs a valid example"


# ---------------------------------------------------------------- examples --


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_schema_has_examples(name: str) -> None:
    assert len(example_files(name, "valid")) >= 3
    assert len(example_files(name, "invalid")) >= 4


def test_every_example_belongs_to_a_schema() -> None:
    assert sorted(p.name for p in EXAMPLES_DIR.iterdir()) == sorted(SCHEMA_NAMES)


def test_expected_failures_match_invalid_files() -> None:
    listed = set(_ids(all_examples("invalid")))
    assert listed == set(EXPECTED_FAILURES)


@pytest.mark.parametrize(("name", "path"), all_examples("valid"), ids=_ids(all_examples("valid")))
def test_valid_example_validates(name: str, path: Path) -> None:
    errors = [e.message for e in validator(name).iter_errors(json.loads(path.read_text()))]
    assert errors == []


@pytest.mark.parametrize(
    ("name", "path"), all_examples("invalid"), ids=_ids(all_examples("invalid"))
)
def test_invalid_example_fails_for_its_reason(name: str, path: Path) -> None:
    errors = list(validator(name).iter_errors(json.loads(path.read_text())))
    assert errors, "invalid example validates"
    keyword, location = EXPECTED_FAILURES[f"{name}/{path.stem}"]
    assert {(e.validator, pointer(e)) for e in errors} == {(keyword, location)}, [
        e.message for e in errors
    ]


@pytest.mark.parametrize("name", sorted(SEED_LINES))
def test_seed_line_validates_unchanged(name: str) -> None:
    validator(name).validate(json.loads(SEED_LINES[name]))
    fast_validator(name)(json.loads(SEED_LINES[name]))


def test_engine_event_refuses_content_fields_on_every_variant() -> None:
    for path in example_files("engine_event", "valid"):
        event = json.loads(path.read_text())
        for field in ("prompt", "completion", "response", "messages", "text"):
            assert not validator("engine_event").is_valid({**event, field: "secret"})


@pytest.mark.parametrize(
    ("name", "path"),
    all_examples("valid") + all_examples("invalid"),
    ids=_ids(all_examples("valid") + all_examples("invalid")),
)
def test_fastjsonschema_agrees(name: str, path: Path) -> None:
    doc = json.loads(path.read_text())
    expected = validator(name).is_valid(doc)
    try:
        fast_validator(name)(doc)
        fast_ok = True
    except fastjsonschema.JsonSchemaValueException:
        fast_ok = False
    assert fast_ok is expected
    assert expected is (path.parent.name == "valid")
