"""Hypothesis strategies for documents that the project's JSON Schemas accept.

Built from the schema files themselves (schemas/v1), for the subset of JSON Schema
they use: types (and type lists), enum, const, numeric bounds, string lengths and
patterns, date-time, arrays, objects with required fields and no others, `anyOf`
of required lists, and the `allOf` of `if`/`then` variants of the multi-variant
events. Every document drawn is checked against jsonschema, so a gap here shows
as a failed health check, never as an invalid document passed off as valid.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from hypothesis import strategies as st
from jsonschema import Draft7Validator

from streams.domain.validation import FORMAT_CHECKER

SCHEMA_DIR = Path(__file__).parents[3] / "schemas" / "v1"

# Strings drawn for free-form fields: the awkward characters included.
TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40
)


def schema(name: str) -> dict[str, Any]:
    """The JSON Schema `schemas/v1/<name>.json`."""
    doc: dict[str, Any] = orjson.loads((SCHEMA_DIR / f"{name}.json").read_bytes())
    return doc


# JSON integers as a Kafka message carries them: orjson reads 64 bits, larger as floats.
INT64 = (-(2**63), 2**63 - 1)


def _number(node: dict[str, Any], integer: bool) -> st.SearchStrategy[Any]:
    low = node.get("minimum")
    high = node.get("maximum")
    exclusive = node.get("exclusiveMaximum")
    if integer:
        top = high if high is not None else (exclusive - 1 if exclusive is not None else None)
        return st.integers(
            min_value=INT64[0] if low is None else low,
            max_value=INT64[1] if top is None else top,
        )
    top = high if high is not None else exclusive
    floats = st.floats(
        min_value=low,
        max_value=top,
        exclude_max=high is None and exclusive is not None,
        allow_nan=False,
        allow_infinity=False,
    )
    ints = st.integers(
        min_value=INT64[0] if low is None else int(low),
        max_value=INT64[1] if top is None else int(top) - (1 if high is None else 0),
    )
    return floats | ints


def _string(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "pattern" in node:
        return st.from_regex(node["pattern"], fullmatch=True)
    if node.get("format") == "date-time":
        return st.datetimes(timezones=st.just(UTC), max_value=datetime(2099, 1, 1)).map(
            lambda moment: moment.isoformat().replace("+00:00", "Z")
        )
    return st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
        min_size=node.get("minLength", 0),
        max_size=min(node.get("maxLength", 40), 40),
    )


def _typed(node: dict[str, Any], kind: str) -> st.SearchStrategy[Any]:
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind in ("number", "integer"):
        return _number(node, kind == "integer")
    if kind == "string":
        return _string(node)
    if kind == "array":
        return st.lists(
            strategy(node.get("items", {})), min_size=node.get("minItems", 0), max_size=4
        )
    if kind == "object":
        return _object(node.get("properties", {}), list(node.get("required", [])), node)
    raise NotImplementedError(f"no strategy for type {kind!r}")


def _object(
    properties: dict[str, Any], required: list[str], node: dict[str, Any]
) -> st.SearchStrategy[Any]:
    if node.get("additionalProperties", True) is not False and not properties:
        return st.dictionaries(TEXT, TEXT, max_size=3)
    if "anyOf" in node:  # one of several required lists (training_sample's sources)
        return st.sampled_from([a["required"] for a in node["anyOf"]]).flatmap(
            lambda extra: _object(
                properties, required + extra, {k: v for k, v in node.items() if k != "anyOf"}
            )
        )
    return st.fixed_dictionaries(
        {name: strategy(properties[name]) for name in required},
        optional={
            name: strategy(sub) for name, sub in properties.items() if name not in required
        },
    )


def _variants(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A multi-variant event: one `if`/`then` clause, with the root's fields."""
    options = []
    for clause in node["allOf"]:
        then = clause["then"]
        properties = {
            name: node["properties"][name] if sub is True else sub
            for name, sub in then["properties"].items()
        }
        required = sorted(set(node.get("required", [])) | set(then.get("required", [])))
        options.append(_object(properties, required, then))
    return st.one_of(options)


def strategy(node: Any) -> st.SearchStrategy[Any]:
    """Documents valid against the schema `node` (a subschema as well)."""
    if node is True or node == {}:
        return TEXT
    if "const" in node:
        return st.just(node["const"])
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if "allOf" in node:
        return _variants(node)
    kinds = node.get("type")
    if isinstance(kinds, list):
        return st.one_of([_typed(node, kind) for kind in kinds])
    if isinstance(kinds, str):
        return _typed(node, kinds)
    raise NotImplementedError(f"no strategy for {sorted(node)}")


@cache
def valid(name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Documents that schemas/v1/<name>.json accepts (checked by jsonschema)."""
    validator = Draft7Validator(schema(name), format_checker=FORMAT_CHECKER)
    return strategy(schema(name)).filter(validator.is_valid)


# Any JSON scalar the parser can produce (64-bit integers, finite floats, short text).
json_scalars: st.SearchStrategy[Any] = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)


def json_values(
    max_size: int, max_leaves: int, leaves: st.SearchStrategy[Any] = json_scalars
) -> st.SearchStrategy[Any]:
    """Arbitrary JSON documents: `leaves` (scalars by default) nested in lists and
    objects of at most `max_size` members, `max_leaves` leaves in all."""
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=max_size)
            | st.dictionaries(st.text(max_size=2 * max_size), children, max_size=max_size)
        ),
        max_leaves=max_leaves,
    )
