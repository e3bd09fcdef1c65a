"""Tiering comparison winners into training samples."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft7Validator

from streams.domain.tiering import SampleDecision, Thresholds, make_sample, sample_id_for, tier_for

SCHEMA_DIR = Path(__file__).parents[3] / "schemas" / "v1"
SEED_COMPARISON = (
    '{"comparison_id":"c-1","query":"translate this","candidates":[{"engine_id":"a",'
    '"output":"...","metrics":{"latency_ms":20,"quality_score":0.7}},{"engine_id":"b",'
    '"output":"...","metrics":{"latency_ms":35,"quality_score":0.9}}],'
    '"winner":{"engine_id":"b","score":0.9}}'
)
NOW = 1_700_000_000.5


@cache
def validator(name: str) -> Draft7Validator:
    schema = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def assert_valid_sample(sample: dict[str, Any]) -> None:
    errors = [e.message for e in validator("training_sample").iter_errors(sample)]
    assert errors == [], errors


def comparison(
    score: float,
    candidates: list[tuple[str, float | None]] | None = None,
    winner: str = "b",
    **extra: Any,
) -> dict[str, Any]:
    if candidates is None:
        candidates = [("a", 0.5), ("b", 0.8)]
    doc: dict[str, Any] = {
        "comparison_id": extra.pop("comparison_id", "c-42"),
        "query": "what is 2+2",
        "candidates": [
            {
                "engine_id": engine,
                "output": f"answer from {engine}",
                **({"metrics": {"quality_score": q}} if q is not None else {}),
            }
            for engine, q in candidates
        ],
        "winner": {"engine_id": winner, "score": score},
        **extra,
    }
    errors = [e.message for e in validator("comparison_result").iter_errors(doc)]
    assert errors == [], errors
    return doc


# -- thresholds and tiers ----------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "tier"),
    [
        (1.0, "gold"),
        (0.9, "gold"),
        (0.8999999, "silver"),
        (0.75, "silver"),
        (0.7499999, "bronze"),
        (0.5, "bronze"),
        (0.4999, None),
        (0.0, None),
    ],
)
def test_tier_at_default_thresholds(score: float, tier: str | None) -> None:
    assert tier_for(score, Thresholds()) == tier


def test_custom_thresholds() -> None:
    t = Thresholds(gold=0.8, silver=0.6, bronze=0.2)
    assert tier_for(0.8, t) == "gold"
    assert tier_for(0.79, t) == "silver"
    assert tier_for(0.6, t) == "silver"
    assert tier_for(0.2, t) == "bronze"
    assert tier_for(0.19, t) is None
    equal = Thresholds(gold=0.5, silver=0.5, bronze=0.5)
    assert tier_for(0.5, equal) == "gold"
    assert tier_for(0.49, equal) is None
    everything = Thresholds(gold=1.0, silver=0.0, bronze=0.0)
    assert tier_for(0.0, everything) == "silver"


def test_custom_thresholds_in_make_sample() -> None:
    decision = make_sample(comparison(0.3), Thresholds(0.6, 0.4, 0.2), NOW)
    assert decision.sample is not None
    assert decision.sample["tier"] == "bronze"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"gold": 0.5, "silver": 0.75},  # gold < silver
        {"silver": 0.4, "bronze": 0.5},  # silver < bronze
        {"gold": 1.1},
        {"bronze": -0.1, "silver": 0.5},
        {"gold": float("nan")},
        {"gold": float("inf")},
    ],
)
def test_invalid_thresholds_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Thresholds(**kwargs)


# -- ids ---------------------------------------------------------------------------


def test_sample_ids_are_deterministic() -> None:
    first = sample_id_for("c-1")
    assert first == sample_id_for("c-1")
    assert first.startswith("s-") and len(first) == 34
    int(first[2:], 16)
    assert sample_id_for("c-2") != first
    assert sample_id_for("") != first
    a = make_sample(comparison(0.95, comparison_id="c-7"), Thresholds(), NOW).sample
    b = make_sample(comparison(0.95, comparison_id="c-7"), Thresholds(), NOW + 50).sample
    c = make_sample(comparison(0.95, comparison_id="c-8"), Thresholds(), NOW).sample
    assert a is not None and b is not None and c is not None
    assert a["sample_id"] == b["sample_id"] != c["sample_id"]


# -- decisions -----------------------------------------------------------------------


def test_seed_comparison_gives_a_gold_sample() -> None:
    doc = json.loads(SEED_COMPARISON)
    decision = make_sample(doc, Thresholds(), NOW)
    assert decision.reason is None
    sample = decision.sample
    assert sample == {
        "sample_id": sample_id_for("c-1"),
        "created_at": NOW,
        "source_comparison_id": "c-1",
        "tier": "gold",
        "input": "translate this",
        "output": "...",
        "validation": {"quality_score": 0.9, "validated": True},
        "lineage": {
            "engine_id": "b",
            "candidate_count": 2,
            "score_margin": pytest.approx(0.2),
            "winner_score": 0.9,
        },
    }
    assert_valid_sample(sample)


def test_comparison_timestamp_wins_over_created_at() -> None:
    decision = make_sample(comparison(0.95, timestamp=1670000000), Thresholds(), NOW)
    assert decision.sample is not None
    assert decision.sample["created_at"] == 1670000000
    assert_valid_sample(decision.sample)


def test_winner_not_among_candidates() -> None:
    decision = make_sample(comparison(0.99, winner="zzz"), Thresholds(), NOW)
    assert decision == SampleDecision(None, "winner_not_candidate")


def test_below_threshold() -> None:
    decision = make_sample(comparison(0.4999), Thresholds(), NOW)
    assert decision == SampleDecision(None, "below_threshold")


def test_winner_not_candidate_checked_before_threshold() -> None:
    decision = make_sample(comparison(0.1, winner="zzz"), Thresholds(), NOW)
    assert decision.reason == "winner_not_candidate"


def test_output_and_quality_come_from_the_winning_candidate() -> None:
    doc = comparison(0.8, [("a", 0.6), ("b", 0.77), ("c", None)])
    sample = make_sample(doc, Thresholds(), NOW).sample
    assert sample is not None
    assert sample["output"] == "answer from b"
    assert sample["input"] == "what is 2+2"
    assert sample["tier"] == "silver"
    assert sample["validation"] == {"quality_score": 0.77, "validated": True}
    assert sample["lineage"]["candidate_count"] == 3
    assert_valid_sample(sample)


def test_quality_falls_back_to_winner_score() -> None:
    doc = comparison(0.8, [("a", 0.6), ("b", None)])
    sample = make_sample(doc, Thresholds(), NOW).sample
    assert sample is not None
    assert sample["validation"]["quality_score"] == 0.8


@pytest.mark.parametrize(
    ("candidates", "score", "margin"),
    [
        ([("a", 0.5), ("b", 0.8)], 0.8, 0.3),  # 0.8 - 0.5
        ([("a", 0.5), ("b", 0.8), ("c", 0.7)], 0.8, 0.1),  # best other is 0.7
        ([("a", None), ("b", 0.8)], 0.8, 0.0),  # no other has a quality score
        ([("b", 0.8)], 0.8, 0.0),  # alone
        ([("a", 0.95), ("b", 0.8)], 0.9, 0.0),  # other better than the winner: not negative
        ([("a", 0.2), ("b", None)], 0.9, 0.7),  # the winner's own quality is not used
    ],
)
def test_score_margin(
    candidates: list[tuple[str, float | None]], score: float, margin: float
) -> None:
    sample = make_sample(comparison(score, candidates), Thresholds(), NOW).sample
    assert sample is not None
    assert sample["lineage"]["score_margin"] == pytest.approx(margin)
    assert sample["lineage"]["score_margin"] >= 0
    assert sample["lineage"]["winner_score"] == score
    assert_valid_sample(sample)


def test_duplicate_winner_engine_uses_the_first() -> None:
    doc = comparison(0.9, [("a", 0.5), ("b", 0.6), ("b", 0.85)])
    doc["candidates"][2]["output"] = "second answer from b"
    sample = make_sample(doc, Thresholds(), NOW).sample
    assert sample is not None
    assert sample["output"] == "answer from b"
    assert sample["validation"]["quality_score"] == 0.6
    # the repeated engine is another candidate: 0.9 - 0.85
    assert sample["lineage"]["score_margin"] == pytest.approx(0.05)
    assert sample["lineage"]["candidate_count"] == 3


def test_input_is_not_mutated() -> None:
    doc = comparison(0.95)
    before = copy.deepcopy(doc)
    make_sample(doc, Thresholds(), NOW)
    assert doc == before


# -- every sample is valid ------------------------------------------------------------

quality = st.one_of(st.none(), st.floats(0, 1))
candidate_lists = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "d"]), quality), min_size=1, max_size=6
)


@given(
    candidates=candidate_lists,
    score=st.floats(0, 1),
    winner_pick=st.integers(0, 10),
    timestamp=st.one_of(st.none(), st.floats(0, 2e9), st.integers(0, 2_000_000_000)),
    comparison_id=st.text(min_size=1, max_size=40),
)
def test_every_sample_is_valid(
    candidates: list[tuple[str, float | None]],
    score: float,
    winner_pick: int,
    timestamp: float | None,
    comparison_id: str,
) -> None:
    winner = candidates[winner_pick % len(candidates)][0]
    extra: dict[str, Any] = {"comparison_id": comparison_id}
    if timestamp is not None:
        extra["timestamp"] = timestamp
    doc = comparison(score, candidates, winner, **extra)
    decision = make_sample(doc, Thresholds(), NOW)
    if score < 0.5:
        assert decision == SampleDecision(None, "below_threshold")
        return
    assert decision.reason is None and decision.sample is not None
    assert_valid_sample(decision.sample)
    assert decision.sample["tier"] == tier_for(score, Thresholds())
