"""JSON Schema validation of events, with jsonschema's semantics and a fast path.

The verdict comes from `jsonschema_rs` (Rust, each schema compiled once), the fastest
validator that agrees with jsonschema on every example and on the generated documents
of the tests. A rejection is always confirmed and explained by jsonschema itself (which
rule, at which path), so the verdict that counts is jsonschema's: jsonschema_rs may
refuse more (Python's `$` also matches before a final newline, ECMA's does not; it
raises ValueError on a lone surrogate, a key that is not a str, bytes) and that only
costs time, but it must never accept what jsonschema refuses. Where it would (`\\s`
taking U+FEFF, a fractional `multipleOf`, its own `date-time` taking a leap second),
tests/unit/domain/test_validator_agreement.py pins the difference and proves the
shipped schemas do not use that construct; `date-time` is checked by `is_date_time`
below in both validators.

Cost of the verdict on a valid event (`python -m bench.validation.run`; AMD EPYC, 2
CPUs shared with other work, Python 3.11, best pass): jsonschema_rs 0.8-1.7 µs by type
(3.8 µs for window_stats: mostly its calls of the Python `is_date_time`), against
4.8-18.7 µs for fastjsonschema, the verdict before: 4.8-13.5x faster (3.2x for
window_stats); jsonschema itself takes 130-270 µs. On the fleet's mix, `check` takes
1.6 µs (~630,000 events/s), 11.2 µs (~89,000/s) with fastjsonschema. jsonschema_rs
0.61 validates Python objects, not JSON text, so the router's orjson.loads (1.7 µs
on the mix) stays.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
from jsonschema import Draft7Validator, FormatChecker
from jsonschema.exceptions import best_match

from streams.domain.schema_location import schema_root

SCHEMA_DIR = schema_root() / "v1"

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
    has its own default (jsonschema none without rfc3339-validator, jsonschema_rs one that
    accepts a leap second, 23:59:60, which `datetime` refuses), and they must give the
    same verdict."""
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
        self._fast: dict[str, jsonschema_rs.Validator] = {}
        self._full: dict[str, Draft7Validator] = {}
        self._variants: dict[str, dict[str, frozenset[str]]] = {}
        for path in sorted(schema_dir.glob("*.json")):
            name = path.stem
            schema = orjson.loads(path.read_bytes())
            Draft7Validator.check_schema(schema)
            self.schemas[name] = schema
            self._fast[name] = jsonschema_rs.Draft7Validator(
                schema, formats={"date-time": is_date_time}, validate_formats=True
            )
            self._full[name] = Draft7Validator(schema, format_checker=FORMAT_CHECKER)
            self._variants[name] = _variant_fields(schema)
        if not self.schemas:
            raise FileNotFoundError(f"no JSON schemas found in {schema_dir}")

    def __contains__(self, event_type: object) -> bool:
        return event_type in self.schemas

    def check(self, event_type: str, doc: Any) -> Violation | None:
        """None when `doc` is a valid `event_type`, else the violation jsonschema reports.

        Only jsonschema_rs's "valid" is taken as it is; its "invalid", and the ValueError
        it raises for what it cannot read (a key that is not a str, a str with a lone
        surrogate, bytes, a set), go to jsonschema, whose verdict counts."""
        fast = self._fast[event_type]
        try:
            if fast.is_valid(doc):
                return None
        except ValueError:
            pass
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
