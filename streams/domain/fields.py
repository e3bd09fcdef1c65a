"""Typed reads of a decoded JSON document's fields, each failing with a ValueError that
names the document, the field and the value (the state folds' input checks)."""

from __future__ import annotations

import math
from collections.abc import Container, Iterable, Mapping
from typing import Any, cast

__all__ = [
    "all_present",
    "count",
    "mapping",
    "no_unknown",
    "non_negative",
    "optional_count",
    "optional_string",
    "required",
    "string",
    "timestamp",
]


def mapping(value: object, what: str) -> Mapping[str, Any]:
    """`value` as a JSON object."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a JSON object, got {type(value).__name__}")
    return cast(Mapping[str, Any], value)


def required(doc: Mapping[str, Any], key: str, what: str) -> Any:
    """`doc[key]`, which must be present."""
    if key not in doc:
        raise ValueError(f"{what} is missing {key!r}")
    return doc[key]


def all_present(doc: Mapping[str, Any], keys: Iterable[str], what: str) -> None:
    """Every one of `keys` is in `doc` (a stored record's check before it is read);
    the error names all the missing keys at once, in the order of `keys`."""
    missing = [key for key in keys if key not in doc]
    if missing:
        raise ValueError(f"{what} is missing {', '.join(missing)}")


def no_unknown(doc: Mapping[str, Any], keys: Container[str], what: str) -> None:
    """No key of `doc` is outside `keys`: a strict record refuses a stray field rather
    than drop it silently; the error names them all, sorted."""
    unknown = sorted(str(key) for key in doc if key not in keys)
    if unknown:
        raise ValueError(f"{what} has unknown field(s) {', '.join(unknown)}")


def string(doc: Mapping[str, Any], key: str, what: str) -> str:
    """A required string."""
    value = required(doc, key, what)
    if not isinstance(value, str):
        raise ValueError(f"{what} {key} must be a string, got {value!r}")
    return value


def optional_string(doc: Mapping[str, Any], key: str, what: str) -> str | None:
    """A string, or None when absent or null."""
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{what} {key} must be a string or null, got {value!r}")
    return value


def count(doc: Mapping[str, Any], key: str, what: str) -> int:
    """A required integer >= 0 (a JSON boolean is not one)."""
    value = required(doc, key, what)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} {key} must be an integer >= 0, got {value!r}")
    return value


def optional_count(doc: Mapping[str, Any], key: str, what: str) -> int | None:
    """An integer >= 0, or None when absent or null."""
    if doc.get(key) is None:
        return None
    return count(doc, key, what)


def _finite_non_negative(value: object) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and value >= 0
    )


def non_negative(doc: Mapping[str, Any], key: str, what: str) -> float:
    """A required finite number >= 0."""
    value = required(doc, key, what)
    if not _finite_non_negative(value):
        raise ValueError(f"{what} {key} must be a finite number >= 0, got {value!r}")
    return float(value)


def timestamp(doc: Mapping[str, Any], key: str, what: str) -> float:
    """Required epoch seconds >= 0."""
    value = required(doc, key, what)
    if not _finite_non_negative(value):
        raise ValueError(f"{what} {key} must be epoch seconds >= 0, got {value!r}")
    return float(value)
