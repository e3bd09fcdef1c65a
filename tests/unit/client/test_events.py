"""The typed helpers (streams.client.events): every helper builds a schema-valid
event, leaves optional fields out, and fills timestamps and ids."""

from __future__ import annotations

import inspect
import time
from typing import Any

import orjson
import pytest

from streams.client import InvalidEvent, events
from tests.unit.client.support import CASES, REGISTRY, SUBMIT


@pytest.mark.parametrize(
    ("helper", "event_type", "doc"), CASES, ids=[f"{i}-{c[0]}" for i, c in enumerate(CASES)]
)
def test_every_helper_builds_a_schema_valid_event(
    helper: str, event_type: str, doc: dict[str, Any]
) -> None:
    assert REGISTRY.check(event_type, doc) is None
    assert None not in doc.values()  # optional fields left out, never null


def test_every_public_helper_is_covered() -> None:
    builders = {
        name
        for name, value in vars(events).items()
        if inspect.isfunction(value)
        and value.__module__ == events.__name__
        and not name.startswith("_")
    }
    assert builders - {"now", "new_id", "candidate"} == {helper for helper, _, _ in CASES}


def test_helpers_default_timestamps_to_now_and_ids_to_fresh_ids() -> None:
    before = time.time()
    job_id, submit = events.submit_job("backfill", "features")
    run = events.execution("gpt-x", "a", "b", latency_ms=1)
    served = events.request_served("gpt-x", "/v1", "m", "p", 12.4, 200)
    after = time.time()
    for doc in (submit, run, served):
        assert before <= doc["timestamp"] <= after
    assert len(job_id) == 32 and int(job_id, 16) >= 0 and submit["job_id"] == job_id
    assert run["task_id"] == run["trace_id"]
    assert events.execution("gpt-x", "a", "b", latency_ms=1)["trace_id"] != run["trace_id"]
    assert served["latency_ms"] == 12 and isinstance(served["latency_ms"], int)
    assert orjson.loads(SUBMIT["spec"]) == {"epochs": 3}


def test_a_training_sample_needs_a_source() -> None:
    with pytest.raises(InvalidEvent, match="source_trace_id or source_comparison_id"):
        events.training_sample("a", "b", "gold", 0.9)
