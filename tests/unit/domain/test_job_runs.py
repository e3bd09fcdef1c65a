"""Which jobs a worker runs and which running jobs it takes over (streams/domain/job_runs.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft7Validator

from streams.domain.job_runs import (
    APP_KINDS,
    RunPlan,
    fence_command,
    min_duration_s,
    plan_runs,
    takeover_command,
    takeover_error,
)
from streams.domain.jobs import Job, JobKind, JobStatus, TransitionError, apply_command

SCHEMAS = Path(__file__).parents[3] / "schemas"
WORKER = "http://worker-b:6066"
T0 = 1_700_000_000.0


def job(n: int, kind: JobKind, status: JobStatus, progress: int = 0) -> Job:
    """Job number `n` (its id ends with `n`) in `status`, reached through the state machine."""
    job_id = f"{n:032x}"
    found = apply_command(None, {"command": "submit", "job_id": job_id, "timestamp": T0,
                                 "kind": str(kind), "target": "t"})  # fmt: skip
    if status is JobStatus.QUEUED:
        return found
    if status is JobStatus.CANCELLED:
        return apply_command(found, {"command": "cancel", "job_id": job_id, "timestamp": T0})
    found = apply_command(found, {"command": "start", "job_id": job_id, "timestamp": T0 + 1})
    found = apply_command(found, {"command": "progress", "job_id": job_id, "timestamp": T0 + 2,
                                  "progress": progress})  # fmt: skip
    if status is JobStatus.RUNNING:
        return found
    if status is JobStatus.COMPLETED:
        return apply_command(found, {"command": "complete", "job_id": job_id, "timestamp": T0 + 3})
    return apply_command(found, {"command": "fail", "job_id": job_id, "timestamp": T0 + 3,
                                 "error": "x"})  # fmt: skip


def partition_of(job_id: str) -> int:
    """A stand-in for the partitioner: the last hex digit, modulo 4."""
    return int(job_id[-1], 16) % 4


def ids(jobs: tuple[Job, ...]) -> list[str]:
    return [j.id for j in jobs]


def schema_errors(command: dict[str, Any]) -> list[str]:
    schema = json.loads((SCHEMAS / "v1" / "ml_job_command.json").read_text())
    return [e.message for e in Draft7Validator(schema).iter_errors(command)]


# ---- the decision -------------------------------------------------------------------------


def test_queued_app_jobs_are_started_and_running_ones_nobody_runs_are_taken_over() -> None:
    queued = job(1, JobKind.FEATURE_REFRESH, JobStatus.QUEUED)
    lost = job(2, JobKind.DRIFT_COMPUTE, JobStatus.RUNNING, progress=50)
    plan = plan_runs([queued, lost], owned={1, 2}, partition_of=partition_of, busy=set())
    assert ids(plan.start) == [queued.id]
    assert ids(plan.take_over) == [lost.id]


def test_engine_run_kinds_are_left_alone_whatever_their_state() -> None:
    jobs = [job(n, kind, status)
            for n, (kind, status) in enumerate(
                (k, s) for k in (JobKind.TRAIN, JobKind.BACKFILL)
                for s in (JobStatus.QUEUED, JobStatus.RUNNING))]  # fmt: skip
    plan = plan_runs(jobs, owned={0, 1, 2, 3}, partition_of=partition_of, busy=set())
    assert plan == RunPlan()


def test_a_job_this_worker_runs_or_has_ended_is_not_taken_over() -> None:
    mine = job(1, JobKind.FEATURE_REFRESH, JobStatus.RUNNING)
    ending = job(2, JobKind.DRIFT_COMPUTE, JobStatus.RUNNING, progress=100)
    plan = plan_runs([mine, ending], owned={1, 2}, partition_of=partition_of,
                     busy={mine.id}, ended={ending.id})  # fmt: skip
    assert plan.start == () and plan.take_over == ()
    assert plan.settled == frozenset()  # its terminal command is not applied yet


def test_jobs_of_partitions_owned_elsewhere_are_not_this_workers() -> None:
    queued = job(1, JobKind.FEATURE_REFRESH, JobStatus.QUEUED)
    running = job(6, JobKind.DRIFT_COMPUTE, JobStatus.RUNNING)  # partition 2
    plan = plan_runs([queued, running], owned={0, 3}, partition_of=partition_of, busy=set())
    assert plan == RunPlan()


def test_terminal_jobs_are_neither_started_nor_taken_over() -> None:
    jobs = [job(n, JobKind.FEATURE_REFRESH, s) for n, s in
            enumerate((JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED))]
    assert plan_runs(jobs, owned={0, 1, 2}, partition_of=partition_of, busy=set()) == RunPlan()


def test_ended_jobs_are_settled_once_terminal_gone_or_owned_elsewhere() -> None:
    done = job(1, JobKind.FEATURE_REFRESH, JobStatus.COMPLETED)
    pending = job(2, JobKind.FEATURE_REFRESH, JobStatus.RUNNING)
    moved = job(3, JobKind.FEATURE_REFRESH, JobStatus.RUNNING)
    missing = f"{4:032x}"
    plan = plan_runs([done, pending, moved], owned={1, 2}, partition_of=partition_of,
                     busy=set(), ended={done.id, pending.id, moved.id, missing})  # fmt: skip
    assert plan.settled == {done.id, moved.id, missing}
    assert plan.take_over == ()


kinds = st.sampled_from(list(JobKind))
statuses = st.sampled_from(list(JobStatus))


@given(
    table=st.lists(st.tuples(kinds, statuses), max_size=24),
    owned=st.sets(st.integers(0, 3)),
    busy_mask=st.lists(st.booleans(), min_size=24, max_size=24),
    ended_mask=st.lists(st.booleans(), min_size=24, max_size=24),
)
def test_every_job_has_one_fate(
    table: list[tuple[JobKind, JobStatus]], owned: set[int], busy_mask: list[bool],
    ended_mask: list[bool],
) -> None:
    """Started only if queued, taken over only if running, never both; only jobs of the
    app's kinds on owned partitions that this worker neither runs nor has ended — and
    every such queued or running job gets one of the two."""
    jobs = [job(n, kind, status) for n, (kind, status) in enumerate(table)]
    busy = {j.id for j, b in zip(jobs, busy_mask, strict=False) if b}
    ended = {j.id for j, e in zip(jobs, ended_mask, strict=False) if e}
    plan = plan_runs(jobs, owned, partition_of, busy, ended)
    started, taken = set(ids(plan.start)), set(ids(plan.take_over))
    assert not started & taken
    for j in jobs:
        free = (j.kind in APP_KINDS and partition_of(j.id) in owned
                and j.id not in busy and j.id not in ended)  # fmt: skip
        assert (j.id in started) == (free and j.status is JobStatus.QUEUED), j
        assert (j.id in taken) == (free and j.status is JobStatus.RUNNING), j


# ---- the commands -------------------------------------------------------------------------


@pytest.mark.parametrize("progress", [0, 37, 100])
def test_the_fence_is_valid_and_changes_nothing_on_a_running_job(progress: int) -> None:
    running = job(1, JobKind.DRIFT_COMPUTE, JobStatus.RUNNING, progress=progress)
    fence = fence_command(running, T0 + 10)
    assert schema_errors(fence) == []
    assert apply_command(running, fence) == running


def test_the_fence_on_an_ended_job_is_refused_without_a_terminal_command() -> None:
    ended = job(1, JobKind.DRIFT_COMPUTE, JobStatus.COMPLETED)
    fence = fence_command(ended, T0 + 10)
    assert fence["command"] == "progress"
    with pytest.raises(TransitionError) as refused:
        apply_command(ended, fence)
    assert refused.value.rule == "terminal_is_final"


def test_the_takeover_fails_a_running_job_naming_the_worker_and_only_once() -> None:
    running = job(1, JobKind.FEATURE_REFRESH, JobStatus.RUNNING, progress=50)
    command = takeover_command(running.id, WORKER, T0 + 20)
    assert schema_errors(command) == []
    failed = apply_command(running, command)
    assert failed.status is JobStatus.FAILED and failed.progress == 50
    assert failed.error == takeover_error(WORKER)
    assert WORKER in (failed.error or "") and "worker lost while running" in (failed.error or "")
    with pytest.raises(TransitionError) as twice:
        apply_command(failed, takeover_command(running.id, WORKER, T0 + 21))
    assert twice.value.rule == "terminal_is_final"


def test_the_takeover_of_a_job_that_never_started_is_refused() -> None:
    queued = job(1, JobKind.FEATURE_REFRESH, JobStatus.QUEUED)
    with pytest.raises(TransitionError) as refused:
        apply_command(queued, takeover_command(queued.id, WORKER, T0 + 20))
    assert refused.value.rule == "illegal_transition"


def test_the_commands_fields_exist_on_the_avro_wire_too() -> None:
    schema = json.loads((SCHEMAS / "avro" / "ml_job_command.avsc").read_text())
    fields = {f["name"] for f in schema["fields"]}
    running = job(1, JobKind.FEATURE_REFRESH, JobStatus.RUNNING)
    assert set(fence_command(running, T0)) <= fields
    assert set(takeover_command(running.id, WORKER, T0)) <= fields


# ---- spec.min_duration_s ------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "want"), [({}, 0.0), ({"min_duration_s": 0}, 0.0),
                                            ({"min_duration_s": 12.5}, 12.5),
                                            ({"min_duration_s": 3600}, 3600.0)])
def test_min_duration_is_read_from_the_spec(spec: dict[str, Any], want: float) -> None:
    assert min_duration_s(spec) == want


@pytest.mark.parametrize("bad", [-1, 3600.5, True, "10", None, math.nan, math.inf, [1]])
def test_a_bad_min_duration_is_refused_naming_the_field(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"^spec\.min_duration_s must be a number of seconds"):
        min_duration_s({"min_duration_s": bad})
