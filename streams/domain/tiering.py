"""Training samples from comparison results: tier the winner, keep its lineage.

A `comparison_result` (schemas/v1/comparison_result.json) whose winner scores at or
above the bronze threshold becomes one `training_sample`
(schemas/v1/training_sample.json): the query as input, the winning candidate's output
as output, tiered gold/silver/bronze by ``winner.score``. The sample id is derived
from the comparison id, so a redelivered comparison yields the same sample (and
deduplicates downstream).

The comparison is assumed valid against its schema (the router validated it).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Literal

Tier = Literal["gold", "silver", "bronze"]
Reason = Literal["winner_not_candidate", "below_threshold"]

SAMPLE_ID_NAMESPACE = "enginestream/v1/"


@dataclass(frozen=True)
class Thresholds:
    """Lowest winner score of each tier; 0 <= bronze <= silver <= gold <= 1."""

    gold: float = 0.9
    silver: float = 0.75
    bronze: float = 0.5

    def __post_init__(self) -> None:
        for name in ("gold", "silver", "bronze"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} threshold must be a number, got {value!r}")
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} threshold must be within 0..1, got {value!r}")
        if not self.gold >= self.silver >= self.bronze:
            raise ValueError(
                f"thresholds must satisfy gold >= silver >= bronze, got "
                f"{self.gold}, {self.silver}, {self.bronze}"
            )


@dataclass(frozen=True)
class SampleDecision:
    """What became of one comparison: a sample, or the reason there is none."""

    sample: dict[str, Any] | None
    reason: Reason | None


def tier_for(score: float, thresholds: Thresholds) -> Tier | None:
    """The tier of a winner `score`, or None below bronze (NaN is below everything)."""
    if score >= thresholds.gold:
        return "gold"
    if score >= thresholds.silver:
        return "silver"
    if score >= thresholds.bronze:
        return "bronze"
    return None


def sample_id_for(comparison_id: str) -> str:
    """The deterministic id of the sample made from comparison `comparison_id`."""
    digest = hashlib.sha256((SAMPLE_ID_NAMESPACE + comparison_id).encode("utf-8")).hexdigest()
    return "s-" + digest[:32]


def make_sample(
    comparison: dict[str, Any], thresholds: Thresholds, created_at: float
) -> SampleDecision:
    """Turn a comparison result into a training sample, or say why not.

    `created_at` is used when the comparison has no ``timestamp`` of its own. If the
    winner's engine appears more than once among the candidates, the first such
    candidate is the winning one; every other candidate (a repeat of the same engine
    included) counts as "other" for the score margin.
    """
    candidates: list[dict[str, Any]] = comparison["candidates"]
    winner: dict[str, Any] = comparison["winner"]
    winner_engine: str = winner["engine_id"]
    winner_score = winner["score"]

    index = next((i for i, c in enumerate(candidates) if c.get("engine_id") == winner_engine), None)
    if index is None:
        return SampleDecision(None, "winner_not_candidate")
    tier = tier_for(winner_score, thresholds)
    if tier is None:
        return SampleDecision(None, "below_threshold")

    winning = candidates[index]
    own_quality = winning.get("metrics", {}).get("quality_score")
    others = [
        c["metrics"]["quality_score"]
        for i, c in enumerate(candidates)
        if i != index and c.get("metrics", {}).get("quality_score") is not None
    ]
    margin = max(0.0, winner_score - max(others)) if others else 0.0
    timestamp = comparison.get("timestamp")
    sample: dict[str, Any] = {
        "sample_id": sample_id_for(comparison["comparison_id"]),
        "created_at": timestamp if timestamp is not None else created_at,
        "source_comparison_id": comparison["comparison_id"],
        "tier": tier,
        "input": comparison["query"],
        "output": winning["output"],
        "validation": {
            "quality_score": own_quality if own_quality is not None else winner_score,
            "validated": True,
        },
        "lineage": {
            "engine_id": winner_engine,
            "candidate_count": len(candidates),
            "score_margin": margin,
            "winner_score": winner_score,
        },
    }
    return SampleDecision(sample, None)
