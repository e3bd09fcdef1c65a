"""JSON Schema validation of events, with jsonschema's semantics and a fast path.

`fastjsonschema` compiles each schema to Python and gives the verdict for the common
case (a valid event) several times faster than jsonschema. A rejection is always
confirmed and explained by jsonschema itself (which rule, at which path), so the
verdict that counts is jsonschema's; tests prove both agree on every example and on
generated documents.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson
from jsonschema import Draft7Validator, FormatChecker
from jsonschema.exceptions import best_match

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "v1"

# The field that names the variant of a multi-variant event.
DISCRIMINATORS: dict[str, str] = {
    "engine_event": "event",
    "session_event": "event",
    "ml_job_command": "command",
}


@dataclass(frozen=True, slots=True)
class Violation:
    """Why a document fails its schema: jsonschema's message, rule and locations."""

    message: str
    rule: str | None
    path: str
    schema_path: str


def _pointer(parts: Any) -> str:
    """RFC 6901 JSON pointer: '~' and '/' inside a key are escaped as '~0' and '~1'."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def is_date_time(value: object) -> bool:
    """The `date-time` format (RFC 3339, a real calendar time), for both validators: each
    has its own default (jsonschema none without rfc3339-validator, fastjsonschema a looser
    regex), and they must give the same verdict."""
    if not isinstance(value, str):
        return True
    if _DATE_TIME.fullmatch(value) is None:
        return False
    try:
        datetime.fromisoformat(value.upper())
    except ValueError:
        return False
    return True


FORMAT_CHECKER = FormatChecker(formats=())
FORMAT_CHECKER.checks("date-time")(is_date_time)


def _variant_fields(schema: dict[str, Any]) -> dict[str, frozenset[str]]:
    """For an if/then variant schema: variant name -> the fields that variant allows."""
    variants: dict[str, frozenset[str]] = {}
    for clause in schema.get("allOf", []):
        condition = clause.get("if", {}).get("properties", {})
        then = clause.get("then", {})
        for prop in condition.values():
            if "const" in prop:
                variants[prop["const"]] = frozenset(then.get("properties", {}))
    return variants


class SchemaRegistry:
    """The schemas of `schemas/v1`, compiled once, by event type name."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR) -> None:
        self.schemas: dict[str, dict[str, Any]] = {}
        self._fast: dict[str, Callable[[Any], Any]] = {}
        self._full: dict[str, Draft7Validator] = {}
        self._variants: dict[str, dict[str, frozenset[str]]] = {}
        for path in sorted(schema_dir.glob("*.json")):
            name = path.stem
            schema = orjson.loads(path.read_bytes())
            Draft7Validator.check_schema(schema)
            self.schemas[name] = schema
            self._fast[name] = fastjsonschema.compile(schema, formats={"date-time": is_date_time})
            self._full[name] = Draft7Validator(schema, format_checker=FORMAT_CHECKER)
            self._variants[name] = _variant_fields(schema)
        if not self.schemas:
            raise FileNotFoundError(f"no JSON schemas found in {schema_dir}")

    def __contains__(self, event_type: object) -> bool:
        return event_type in self.schemas

    def check(self, event_type: str, doc: Any) -> Violation | None:
        """None when `doc` is a valid `event_type`, else the violation jsonschema reports."""
        try:
            self._fast[event_type](doc)
            return None
        except fastjsonschema.JsonSchemaException:
            return self.explain(event_type, doc)

    def explain(self, event_type: str, doc: Any) -> Violation | None:
        """jsonschema's verdict and its most relevant error (None when valid)."""
        error = best_match(self._full[event_type].iter_errors(doc))
        if error is None:
            return None
        return Violation(
            message=error.message,
            rule=str(error.validator) if error.validator is not None else None,
            path=_pointer(error.absolute_path),
            schema_path=_pointer(error.absolute_schema_path),
        )

    def allowed_fields(self, event_type: str, doc: dict[str, Any]) -> frozenset[str] | None:
        """The fields `doc` may carry: its variant's, or every variant's when the
        variant is unknown. None when the type has no variants (no restriction here:
        its schema's additionalProperties rules apply)."""
        variants = self._variants.get(event_type)
        if not variants:
            return None
        variant = doc.get(DISCRIMINATORS.get(event_type, ""))
        if isinstance(variant, str) and variant in variants:
            return variants[variant]
        return frozenset().union(*variants.values())


@functools.cache
def default_registry() -> SchemaRegistry:
    """The registry of the schemas shipped with the project, loaded once."""
    return SchemaRegistry()
