"""Depth measured on bytes and on documents agrees with the true depth; encoding never
recurses. Property tests over arbitrary JSON, strings full of brackets and escapes."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain.limits import encode_json, json_depth_exceeds, non_finite_path

TRICKY_TEXT = st.text(alphabet='[]{}"\\/ab\n\u00e9\u2603', max_size=12)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | TRICKY_TEXT
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TRICKY_TEXT, inner, max_size=4),
    max_leaves=40,
)  # fmt: skip


def true_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((true_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((true_depth(v) for v in value), default=0)
    return 0


@settings(max_examples=400, deadline=None)
@given(JSON_VALUES, st.integers(0, 8))
def test_depth_on_bytes_is_the_true_depth(value: Any, limit: int) -> None:
    raw = orjson.dumps(value)
    expected = true_depth(value) > limit
    assert json_depth_exceeds(raw, limit) is expected
    # Whitespace and escapes of another encoder change nothing.
    pretty = json.dumps(value, indent=2).encode()
    assert json_depth_exceeds(pretty, limit) is expected


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_encode_json_is_orjson_for_what_orjson_encodes(value: Any) -> None:
    assert encode_json(value) == orjson.dumps(value)


@pytest.mark.parametrize("depth", [256, 1000])
def test_encode_json_keeps_documents_deeper_than_orjson_can(depth: int) -> None:
    value: Any = {"leaf": ["a\"]", 1.5, None]}
    for level in range(depth):
        value = [value] if level % 2 else {"k": value, "n": level}
    encoded = encode_json(value)
    decoded = orjson.loads(encoded)  # orjson parses 1024 levels, encodes 255
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10 * depth)  # Python's own == recurses per level
    try:
        assert decoded == value
    finally:
        sys.setrecursionlimit(limit)
    assert json_depth_exceeds(encoded, depth) is True
    assert json_depth_exceeds(encoded, depth + 3) is False


def test_encode_json_takes_bytes_as_base64() -> None:
    assert orjson.loads(encode_json({"b": b"\x00\xff"})) == {"b": "AP8="}


def test_depth_check_of_a_hundred_thousand_levels_does_not_recurse() -> None:
    value: Any = 1
    for _ in range(100_000):
        value = [value]
    assert json_depth_exceeds(encode_json(value), 32) is True
    assert json_depth_exceeds(b"[" * 100_000 + b"]" * 100_000, 32) is True


def test_non_finite_path_names_the_field() -> None:
    assert non_finite_path({"a": [1.0, {"b/c": math.nan}]}) == "/a/1/b~1c"
    assert non_finite_path({"x": -math.inf}) == "/x"
    assert non_finite_path({"x": 1e308, "y": [0.0]}) is None
