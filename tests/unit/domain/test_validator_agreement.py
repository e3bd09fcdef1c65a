"""jsonschema_rs (the registry's verdict) against jsonschema (the reference), where the two
libraries' rules could part.

`SchemaRegistry.check` takes jsonschema_rs's "valid" as it is and hands everything else
to jsonschema, so a false rejection by jsonschema_rs costs time only, and a false
acceptance would let an invalid event through. Hence:

* keyword by keyword (numbers, booleans, big integers, string lengths, uniqueness,
  const/enum equality, regex dialect, formats, what jsonschema_rs cannot read), the
  registry's verdict is the reference's, and jsonschema_rs never accepts a document the
  reference refuses;
* where jsonschema_rs does accept more (`\\s`, a fractional `multipleOf`, its own
  `date-time`), the difference is pinned here and the shipped schemas are shown not to
  use that construct;
* for every shipped schema, valid documents (the fleet's, generated ones) are accepted
  by jsonschema_rs itself: the fast path is the path taken.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator

from streams.domain.validation import SchemaRegistry
from streams.kafka.fleet import Fleet
from tests.unit.domain import schema_strategies as strategies
from tests.unit.domain.schema_files import EXAMPLES_DIR, FORMAT_CHECKER

REGISTRY = SchemaRegistry()
NAMES = sorted(REGISTRY.schemas)

INTEGER = {"type": "integer"}
UP_TO_65535 = {"type": "number", "maximum": 65535}
HEX4 = {"type": "string", "pattern": "^[0-9a-f]{4}$"}
POINTER = {"type": "string", "pattern": "^(/([^~/]|~[01])*)*$"}  # dead_letter's
DATE_TIME = {"type": "string", "format": "date-time"}

# Both say the same; the comment after a value is the verdict.
AGREE: list[tuple[dict[str, Any], Any]] = [
    (INTEGER, 1.0),  # valid: a float with no fraction is an integer (draft 6 on)
    (INTEGER, 1.5),  # invalid
    (INTEGER, True),  # invalid: a boolean is no integer
    (INTEGER, 2**63 - 1),  # valid, and the big ones too
    (INTEGER, 2**64 - 1),
    (INTEGER, 2**64),
    (INTEGER, -(2**70)),
    (INTEGER, 1e300),  # valid
    (INTEGER, math.inf),  # invalid
    (UP_TO_65535, 2**70),  # invalid: no precision lost on the way
    (UP_TO_65535, 65535.0000001),  # invalid
    (UP_TO_65535, math.inf),  # invalid
    (UP_TO_65535, True),  # invalid
    ({"type": "boolean"}, 1),  # invalid
    ({"type": "boolean"}, 0.0),  # invalid
    ({"type": "string", "maxLength": 2}, "e\u0301"),  # valid: code points, not graphemes
    ({"type": "string", "maxLength": 2}, "e\u0301x"),  # invalid
    ({"type": "string", "maxLength": 2}, "😀😀"),  # valid: not UTF-16 units, not bytes
    ({"type": "string", "maxLength": 2}, "😀😀😀"),  # invalid
    ({"type": "string", "minLength": 2}, "😀"),  # invalid
    ({"properties": {"a": {"maxLength": 1}}}, {"a": "\udcff"}),  # valid: a lone surrogate
    ({"properties": {"a": {"maxLength": 1}}}, {"a": "\udcff\ud800"}),  # invalid
    ({"type": "object"}, {"a\ud800": 1}),  # valid: a key it need not read
    ({"uniqueItems": True}, [1, True]),  # valid: 1 and true differ
    ({"uniqueItems": True}, [0, False]),  # valid
    ({"uniqueItems": True}, [[1], [True]]),  # valid
    ({"uniqueItems": True}, [{"a": 1}, {"a": True}]),  # valid
    ({"uniqueItems": True}, [1, 1.0]),  # invalid: 1 and 1.0 are equal
    ({"uniqueItems": True}, [{"a": 1}, {"a": 1.0}]),  # invalid
    ({"uniqueItems": True}, ["a", "a"]),  # invalid
    ({"const": 1}, 1.0),  # valid
    ({"const": 1}, True),  # invalid
    ({"const": True}, 1),  # invalid
    ({"const": [1]}, [1.0]),  # valid
    ({"const": [1]}, [True]),  # invalid
    ({"const": {"a": 0}}, {"a": 0.0}),  # valid
    ({"const": {"a": 0}}, {"a": False}),  # invalid
    ({"enum": [1, "x"]}, 1.0),  # valid
    ({"enum": [1, "x"]}, True),  # invalid
    ({"enum": [False]}, 0),  # invalid
    ({"enum": ["Ok"]}, "ok"),  # invalid
    (HEX4, "abcd"),  # valid
    (HEX4, "ABCD"),  # invalid
    (HEX4, "abcd\r"),  # invalid: only "\n" is special to Python's "$"
    (HEX4, "\nabcd"),  # invalid
    (HEX4, "abcde"),  # invalid
    ({"type": "string", "pattern": "^[a-z]+$"}, "é"),  # invalid
    ({"type": "string", "pattern": "^.$"}, "😀"),  # valid: "." is one code point
    ({"type": "string", "pattern": "^.$"}, "\n"),  # invalid
    ({"type": "string", "pattern": "x"}, "axb"),  # valid: a pattern is a search
    (POINTER, "/a/b~0"),  # valid
    (POINTER, "/a~2"),  # invalid
    (POINTER, "/\n/ü"),  # valid: a negated class takes any character
    ({"type": "object", "additionalProperties": False}, {"é": 1}),  # invalid
    (DATE_TIME, "2023-01-01t00:00:00.5z"),  # valid
    (DATE_TIME, "2016-12-31T23:59:60Z"),  # invalid: the product's check has no leap second
    (DATE_TIME, "2023-04-31T00:00:00Z"),  # invalid
    (DATE_TIME, "2023-01-01T00:00:00+0100"),  # invalid
    (DATE_TIME, 5),  # invalid: type, and the format check passes a non-string
    ({"format": "date-time"}, 5),  # valid
]

# jsonschema_rs refuses, or cannot read, what jsonschema accepts: the registry asks
# jsonschema, and so gives jsonschema's verdict (valid), only later.
RS_STRICTER: list[tuple[dict[str, Any], Any]] = [
    (HEX4, "abcd\n"),  # Python's "$" also matches before a final newline, ECMA's does not
    ({"type": "string", "pattern": "\\d"}, "٣"),  # Python's \d takes any Unicode digit
    ({"type": "string", "pattern": "\\w"}, "é"),  # Python's \w is Unicode too
    ({"type": "string", "pattern": "^.$"}, "\r"),  # ECMA's "." stops at "\r" too
    ({"type": "string", "pattern": "^[^a]$"}, "\udcff"),  # ValueError: a lone surrogate
    ({"type": "object"}, {1: "x"}),  # ValueError: a key that is not a str
    ({"maxLength": 3}, "\udcff"),  # ValueError: a lone surrogate, read or not
    ({"properties": {"a": {"type": "integer"}}}, {"a\ud800": 1}),  # in a key too
    (UP_TO_65535, -math.inf),  # JSON has no infinity; jsonschema compares it
    (UP_TO_65535, math.nan),
    ({"type": "string", "format": "email"}, "nope"),  # jsonschema_rs checks other formats
    ({"type": "string", "format": "uri"}, "nope"),  # (jsonschema's checker: date-time only)
]

# jsonschema_rs accepts what jsonschema refuses. The shipped schemas must not use these
# (test_shipped_schemas_use_only_constructs_shown_to_agree).
RS_LOOSER: list[tuple[dict[str, Any], Any]] = [
    ({"type": "string", "pattern": "^\\s$"}, "\ufeff"),  # Rust's \s takes U+FEFF
    ({"multipleOf": 0.01}, 0.07),  # 0.07 / 0.01 is 7.000000000000001 for Python
    ({"multipleOf": 0.01}, 1e308),
]


def reference(schema: dict[str, Any]) -> Draft7Validator:
    return Draft7Validator(schema, format_checker=FORMAT_CHECKER)


def fast_verdict(registry: SchemaRegistry, name: str, doc: Any) -> bool | str:
    """jsonschema_rs's verdict in `registry`, or the name of the exception it raises."""
    try:
        return registry._fast[name].is_valid(doc)
    except ValueError as exc:
        return type(exc).__name__


def case_ids(cases: list[tuple[dict[str, Any], Any]]) -> list[str]:
    return [f"{orjson.dumps(s).decode()}:{v!r}"[:80] for s, v in cases]


@pytest.fixture(scope="module")
def cases_registry(tmp_path_factory: pytest.TempPathFactory) -> SchemaRegistry:
    """A registry of every schema of the cases above, named by its JSON text's hash."""
    directory = tmp_path_factory.mktemp("schemas")
    for schema, _ in AGREE + RS_STRICTER + RS_LOOSER:
        (directory / f"{case_name(schema)}.json").write_bytes(orjson.dumps(schema))
    return SchemaRegistry(directory)


def case_name(schema: dict[str, Any]) -> str:
    text = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    return "s" + hashlib.sha256(text).hexdigest()[:16]


@pytest.mark.parametrize(("schema", "value"), AGREE, ids=case_ids(AGREE))
def test_both_give_the_same_verdict(
    cases_registry: SchemaRegistry, schema: dict[str, Any], value: Any
) -> None:
    expected = reference(schema).is_valid(value)
    name = case_name(schema)
    assert fast_verdict(cases_registry, name, value) is expected
    assert (cases_registry.check(name, value) is None) is expected


@pytest.mark.parametrize(("schema", "value"), RS_STRICTER, ids=case_ids(RS_STRICTER))
def test_a_stricter_fast_verdict_is_overruled(
    cases_registry: SchemaRegistry, schema: dict[str, Any], value: Any
) -> None:
    assert reference(schema).is_valid(value)
    name = case_name(schema)
    assert fast_verdict(cases_registry, name, value) in (False, "ValueError", "UnicodeEncodeError")
    assert cases_registry.check(name, value) is None


@pytest.mark.parametrize(("schema", "value"), RS_LOOSER, ids=case_ids(RS_LOOSER))
def test_where_jsonschema_rs_accepts_more(
    cases_registry: SchemaRegistry, schema: dict[str, Any], value: Any
) -> None:
    """Pinned: if a new jsonschema_rs agrees here, move the case to AGREE."""
    assert not reference(schema).is_valid(value)
    assert fast_verdict(cases_registry, case_name(schema), value) is True


@pytest.mark.parametrize(
    "value",
    [
        "2016-12-31T23:59:60Z",
        "2016-12-31t23:59:60z",
        "2016-12-31T23:59:60+00:00",
    ],
)
def test_builtin_date_time_of_jsonschema_rs_accepts_leap_seconds(value: str) -> None:
    """Why the registry gives jsonschema_rs the product's own date-time check."""
    assert jsonschema_rs.Draft7Validator(DATE_TIME, validate_formats=True).is_valid(value)
    assert not reference(DATE_TIME).is_valid(value)
    assert REGISTRY.check("window_stats", window_stats_at(value)) is not None


def window_stats_at(value: str) -> dict[str, Any]:
    path = EXAMPLES_DIR / "window_stats" / "valid" / "required_only.json"
    doc: dict[str, Any] = orjson.loads(path.read_bytes())
    doc["window_start_iso"] = value
    return doc


# --------------------------------------------------------- shipped schemas --

# Keywords whose semantics the cases above (and test_validation.py) compare; a schema
# using another needs its cases here first.
COMPARED_KEYWORDS = {
    "$schema", "$id", "title", "description",
    "type", "properties", "required", "additionalProperties",
    "enum", "const", "minimum", "maximum", "exclusiveMaximum",
    "minLength", "maxLength", "pattern", "format",
    "items", "minItems", "uniqueItems",
    "allOf", "anyOf", "if", "then",
}  # fmt: skip
SUBSCHEMA_MAPS = ("properties", "definitions", "patternProperties")
SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
SUBSCHEMAS = ("items", "additionalProperties", "if", "then", "else", "not", "contains")
# Outside character classes: ASCII literals, groups, alternation, quantifiers, anchors;
# no ".", no escape; "(?" only as "(?:". Inside a class: ASCII literals and ranges.
CLASS = re.compile(r"\[\^?[ -Z^-~]+\]")  # no "[", "\\" or "]" inside
OUTSIDE = re.compile(r"[ -\-/-Z^-~]*")  # printable ASCII but ".", "[", "\\", "]"


def subschemas(node: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(node, dict):
        return
    yield node
    for key, value in node.items():
        if key in SUBSCHEMA_MAPS:
            for sub in value.values():
                yield from subschemas(sub)
        elif key in SUBSCHEMA_LISTS or (key == "items" and isinstance(value, list)):
            for sub in value:
                yield from subschemas(sub)
        elif key in SUBSCHEMAS:
            yield from subschemas(value)


def pattern_is_plain(pattern: str) -> bool:
    """A pattern both dialects read alike, but for "$" before a final newline (Python's
    also matches there: a stricter fast verdict, which jsonschema overrules)."""
    rest = CLASS.sub("", pattern)
    return OUTSIDE.fullmatch(rest) is not None and "(?" not in rest.replace("(?:", "")


@pytest.mark.parametrize("name", NAMES)
def test_shipped_schemas_use_only_constructs_shown_to_agree(name: str) -> None:
    nodes = list(subschemas(REGISTRY.schemas[name]))
    assert set().union(*(set(node) for node in nodes)) <= COMPARED_KEYWORDS
    for node in nodes:
        assert "pattern" not in node or pattern_is_plain(node["pattern"]), node["pattern"]
        assert node.get("format", "date-time") == "date-time"


@pytest.mark.parametrize(
    ("pattern", "plain"),
    [
        ("^[0-9a-f]{32}$", True),
        ("^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$", True),
        ("^(/([^~/]|~[01])*)*$", True),
        ("^([a-z][a-z0-9._-]*@)?[A-Za-z0-9._-]+/[0-9]+/[0-9]+/([0-9]+|-)$", True),
        ("^\\s$", False),
        ("^\\d+$", False),
        ("[\\w]", False),
        ("^a.b$", False),
        ("^é$", False),
        ("(?i)abc", False),
        ("a(?=b)", False),
    ],
)
def test_pattern_is_plain(pattern: str, plain: bool) -> None:
    assert pattern_is_plain(pattern) is plain


# ------------------------------------------------- the fast path is taken --

FLEET = list(itertools.islice(Fleet().mixed(), 3000))


@pytest.mark.parametrize("name", sorted({t for t, _ in FLEET}))
def test_jsonschema_rs_accepts_the_fleet_events(name: str) -> None:
    docs = [doc for t, doc in FLEET if t == name]
    assert docs
    for doc in docs:
        assert REGISTRY._fast[name].is_valid(doc), doc


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_jsonschema_rs_accepts_generated_valid_documents(name: str, data: st.DataObject) -> None:
    doc = data.draw(strategies.valid(name))
    assert REGISTRY._fast[name].is_valid(doc)
    assert REGISTRY.check(name, doc) is None


@pytest.mark.parametrize("name", NAMES)
def test_no_schema_descends_into_free_nesting(name: str) -> None:
    """Every member of a valid example, and an extra member of each of its objects, set
    to a list nested 10,000 deep: refused at once (jsonschema_rs recurses on the native
    stack: a schema that took free nesting would have to stop it before that does)."""
    deep: list[Any] = []
    node = deep
    for _ in range(10_000):
        node.append([])
        node = node[0]
    for path in sorted((EXAMPLES_DIR / name / "valid").glob("*.json")):
        doc = orjson.loads(path.read_bytes())
        for holder, key in members(doc):
            kept = holder[key]
            holder[key] = deep
            assert REGISTRY._fast[name].is_valid(doc) is False, (path.name, key)
            holder[key] = kept
        for holder in [doc] + [h[k] for h, k in members(doc) if isinstance(h[k], dict | list)]:
            if isinstance(holder, dict):
                holder["zz-extra"] = deep
            else:
                holder.append(deep)
            assert REGISTRY._fast[name].is_valid(doc) is False, path.name
            holder.pop("zz-extra") if isinstance(holder, dict) else holder.pop()


def members(node: Any) -> Iterator[tuple[Any, Any]]:
    """(container, key) of every member of `node`, depth first."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in list(items):
        yield node, key
        if isinstance(value, dict | list):
            yield from members(value)
