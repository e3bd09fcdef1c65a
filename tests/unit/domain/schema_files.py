"""What the schema, validation, Avro and router tests share about the schema files:
where they are, their names, and an independent date-time check for jsonschema (which
skips `format: date-time` without rfc3339-validator, while the product checks it;
written apart from the product's own check, so that the tests compare two)."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from jsonschema import FormatChecker

SCHEMA_DIR = Path(__file__).parents[3] / "schemas" / "v1"
EXAMPLES_DIR = SCHEMA_DIR / "examples"

SCHEMA_NAMES = [
    "engine_execution",
    "comparison_result",
    "training_sample",
    "engine_event",
    "session_event",
    "ml_job_command",
    "dead_letter",
    "window_stats",
]

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
FORMAT_CHECKER = FormatChecker(formats=())


@FORMAT_CHECKER.checks("date-time")
def is_date_time(value: object) -> bool:
    """RFC 3339 date-time; anything that is not a string is another keyword's concern."""
    if not isinstance(value, str):
        return True
    if not _RFC3339.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value.upper())
    except ValueError:
        return False
    return True


def property_names(node: Any) -> set[str]:
    """Every property name a schema (or any schema inside it) declares."""
    names: set[str] = set()
    if isinstance(node, dict):
        names |= set(node.get("properties", {}))
        for value in node.values():
            names |= property_names(value)
    elif isinstance(node, list):
        for value in node:
            names |= property_names(value)
    return names


def drop_none(value: Any) -> Any:
    """`value` without None-valued object members, recursively (the Avro wire has no
    absent field, only null)."""
    if isinstance(value, dict):
        return {k: drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_none(v) for v in value]
    return value
