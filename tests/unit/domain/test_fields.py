"""streams.domain.fields: each reader accepts its type and names the field of a bad value."""

from __future__ import annotations

import math
from typing import Any

import pytest

from streams.domain import fields

DOC = {"s": "x", "n": 3, "f": 1.5, "t": 1_700_000_000, "null": None, "flag": True}


def test_readers_return_good_values() -> None:
    assert fields.mapping(DOC, "doc") is DOC
    assert fields.required(DOC, "null", "doc") is None
    assert fields.string(DOC, "s", "doc") == "x"
    assert fields.optional_string(DOC, "null", "doc") is None
    assert fields.optional_string(DOC, "absent", "doc") is None
    assert fields.count(DOC, "n", "doc") == 3
    assert fields.optional_count(DOC, "absent", "doc") is None
    assert fields.non_negative(DOC, "f", "doc") == 1.5
    assert fields.timestamp(DOC, "t", "doc") == 1_700_000_000.0


@pytest.mark.parametrize(
    ("read", "key", "message"),
    [
        (fields.string, "absent", "doc is missing 'absent'"),
        (fields.string, "n", "doc n must be a string, got 3"),
        (fields.optional_string, "n", "doc n must be a string or null"),
        (fields.count, "flag", "doc flag must be an integer >= 0, got True"),
        (fields.count, "f", "doc f must be an integer >= 0"),
        (fields.optional_count, "s", "doc s must be an integer >= 0"),
        (fields.non_negative, "s", "doc s must be a finite number >= 0"),
        (fields.timestamp, "flag", "doc flag must be epoch seconds >= 0"),
    ],
)
def test_bad_values_name_the_field(read: Any, key: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read(DOC, key, "doc")


@pytest.mark.parametrize("value", [-1, -0.5, math.inf, math.nan])
def test_numbers_must_be_finite_and_not_negative(value: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        fields.non_negative({"v": value}, "v", "doc")
    with pytest.raises(ValueError, match="epoch seconds"):
        fields.timestamp({"v": value}, "v", "doc")


def test_mapping_rejects_other_json() -> None:
    with pytest.raises(ValueError, match="doc must be a JSON object, got list"):
        fields.mapping([], "doc")


def test_all_present_names_every_missing_key_in_order() -> None:
    fields.all_present(DOC, ("s", "null"), "doc")
    with pytest.raises(ValueError, match=r"^doc record is missing b, a$"):
        fields.all_present(DOC, ("s", "b", "a"), "doc record")


def test_no_unknown_names_every_stray_key_sorted() -> None:
    fields.no_unknown(DOC, set(DOC) | {"more"}, "doc")
    with pytest.raises(ValueError, match=r"^doc record has unknown field\(s\) flag, t$"):
        fields.no_unknown(DOC, {"s", "n", "f", "null"}, "doc record")
