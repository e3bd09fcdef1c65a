"""The ML job record and its state machine (streams/domain/jobs.py)."""

from __future__ import annotations

import copy
import itertools
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator

from streams.domain.jobs import (
    LEGAL,
    TERMINAL,
    Job,
    JobKind,
    JobStatus,
    TransitionError,
    apply_command,
    new_job_id,
)

SCHEMA_DIR = Path(__file__).parents[3] / "schemas" / "v1"
JOB_ID = "0123456789abcdef0123456789abcdef"
T_SUBMIT, T_START, T_PROGRESS, T_END = 1_670_000_000, 1_670_000_010, 1_670_000_020, 1_670_000_030
COMMANDS = ("submit", "start", "progress", "complete", "fail", "cancel")
ALL_STATUSES = list(JobStatus)


@cache
def command_validator() -> Draft7Validator:
    schema = json.loads((SCHEMA_DIR / "ml_job_command.json").read_text())
    return Draft7Validator(schema)


def cmd(name: str, ts: Any = T_END, job_id: str = JOB_ID, **extra: Any) -> dict[str, Any]:
    """A schema-valid command (required fields defaulted), overridable by ``extra``."""
    defaults: dict[str, dict[str, Any]] = {
        "submit": {"kind": "train", "target": "ranker-v2"},
        "progress": {"progress": 50},
        "fail": {"error": "CUDA out of memory"},
    }
    doc = {"command": name, "job_id": job_id, "timestamp": ts, **defaults.get(name, {}), **extra}
    return doc


def assert_schema_valid(command: dict[str, Any]) -> None:
    errors = [e.message for e in command_validator().iter_errors(command)]
    assert errors == [], errors


def job_in(status: JobStatus) -> Job:
    """A job in ``status``, reached through the state machine itself."""
    job = apply_command(None, cmd("submit", T_SUBMIT, spec='{"epochs": 3}'))
    if status is JobStatus.QUEUED:
        return job
    if status is JobStatus.CANCELLED:
        return apply_command(job, cmd("cancel", T_END))
    job = apply_command(job, cmd("start", T_START))
    job = apply_command(job, cmd("progress", T_PROGRESS, progress=40))
    if status is JobStatus.RUNNING:
        return job
    if status is JobStatus.COMPLETED:
        return apply_command(job, cmd("complete", T_END, metrics='{"auc": 0.91}'))
    return apply_command(job, cmd("fail", T_END))


# What each command does in each state: a status (success) or a rule (refusal).
EXPECTED: dict[JobStatus | None, dict[str, JobStatus | str]] = {
    None: {
        "submit": JobStatus.QUEUED,
        **{c: "unknown_job" for c in COMMANDS if c != "submit"},
    },
    JobStatus.QUEUED: {
        "submit": "job_exists",
        "start": JobStatus.RUNNING,
        "progress": "not_running",
        "complete": "illegal_transition",
        "fail": "illegal_transition",
        "cancel": JobStatus.CANCELLED,
    },
    JobStatus.RUNNING: {
        "submit": "job_exists",
        "start": "illegal_transition",
        "progress": JobStatus.RUNNING,
        "complete": JobStatus.COMPLETED,
        "fail": JobStatus.FAILED,
        "cancel": JobStatus.CANCELLED,
    },
    **{
        s: {"submit": "job_exists", **{c: "terminal_is_final" for c in COMMANDS if c != "submit"}}
        for s in TERMINAL
    },
}


def outcome(current: Job | None, command: dict[str, Any]) -> JobStatus | str:
    try:
        return apply_command(current, command).status
    except TransitionError as exc:
        return exc.rule


# ---- enums and tables ------------------------------------------------------------------


def test_tokens_match_the_seed() -> None:
    assert [s.value for s in JobStatus] == [
        "queued",
        "running",
        "completed",
        "failed",
        "cancelled",
    ]
    assert [k.value for k in JobKind] == ["train", "backfill", "feature_refresh", "drift_compute"]
    assert JobStatus("running") is JobStatus.RUNNING
    assert JobStatus.QUEUED == "queued"


def test_terminal_statuses() -> None:
    assert {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED} == TERMINAL
    assert [s.is_terminal for s in JobStatus] == [False, False, True, True, True]


def test_legal_table() -> None:
    assert {
        JobStatus.QUEUED: {JobStatus.RUNNING, JobStatus.CANCELLED},
        JobStatus.RUNNING: {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED},
        JobStatus.COMPLETED: set(),
        JobStatus.FAILED: set(),
        JobStatus.CANCELLED: set(),
    } == LEGAL


def test_new_job_id() -> None:
    ids = {new_job_id() for _ in range(1000)}
    assert len(ids) == 1000
    for job_id in itertools.islice(ids, 20):
        assert len(job_id) == 32
        assert job_id == job_id.lower()
        int(job_id, 16)
        assert_schema_valid(cmd("start", job_id=job_id))


def test_transition_error_is_a_value_error_with_rule() -> None:
    with pytest.raises(ValueError) as info:
        apply_command(None, cmd("start"))
    assert isinstance(info.value, TransitionError)
    assert info.value.rule == "unknown_job"
    assert JOB_ID in info.value.message
    assert str(info.value).startswith("unknown_job: ")


# ---- every command in every state --------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("state", [None, *ALL_STATUSES], ids=str)
def test_every_command_in_every_state(state: JobStatus | None, command: str) -> None:
    current = None if state is None else job_in(state)
    assert current is None or current.status is state
    doc = cmd(command)
    assert_schema_valid(doc)
    before = None if current is None else copy.deepcopy(current)
    expected = EXPECTED[state][command]
    if isinstance(expected, JobStatus):
        result = apply_command(current, doc)
        assert result.status is expected
        assert result is not current
    else:
        with pytest.raises(TransitionError) as info:
            apply_command(current, doc)
        assert info.value.rule == expected
    assert current == before  # never mutated, success or not


@pytest.mark.parametrize(
    ("source", "target"), list(itertools.product(ALL_STATUSES, ALL_STATUSES)), ids=str
)
def test_every_pair_of_states(source: JobStatus, target: JobStatus) -> None:
    """Some command moves source -> target exactly when LEGAL says so (progress keeps a
    running job running and is the only command that leaves the status as it is)."""
    current = job_in(source)
    reaching = [c for c in COMMANDS if outcome(current, cmd(c)) is target]
    if source == target:
        assert reaching == (["progress"] if source is JobStatus.RUNNING else [])
    else:
        assert bool(reaching) == (target in LEGAL[source])


# ---- the fields each legal command sets --------------------------------------------------


def test_submit_creates_a_queued_job() -> None:
    doc = cmd("submit", 1_670_000_600, kind="backfill", target="emb/col", spec='{"k": 1}')
    job = apply_command(None, doc)
    assert job == Job(
        id=JOB_ID,
        kind=JobKind.BACKFILL,
        target="emb/col",
        status=JobStatus.QUEUED,
        progress=0,
        created_at_ms=1_670_000_600_000,
        started_at_ms=0,
        finished_at_ms=0,
        error=None,
        spec='{"k": 1}',
        metrics=None,
    )
    assert job.duration_ms is None


def test_submit_without_spec_defaults_to_empty_object() -> None:
    assert apply_command(None, cmd("submit")).spec == "{}"


def test_timestamps_are_rounded_milliseconds() -> None:
    assert apply_command(None, cmd("submit", 1670000999.5)).created_at_ms == 1_670_000_999_500
    assert apply_command(None, cmd("submit", 0.001)).created_at_ms == 1
    assert apply_command(None, cmd("submit", 1670000600.123)).created_at_ms == 1_670_000_600_123


def test_start_sets_started_at() -> None:
    queued = job_in(JobStatus.QUEUED)
    running = apply_command(queued, cmd("start", T_START))
    assert running.started_at_ms == T_START * 1000
    assert running.finished_at_ms == 0
    assert running.duration_ms is None
    assert (running.progress, running.created_at_ms, running.spec) == (
        0,
        T_SUBMIT * 1000,
        queued.spec,
    )


def test_progress_moves_both_ways_within_bounds() -> None:
    job = apply_command(job_in(JobStatus.QUEUED), cmd("start", T_START))
    for value in (0, 10, 90, 30, 100, 0):
        job = apply_command(job, cmd("progress", progress=value))
        assert job.progress == value
        assert job.status is JobStatus.RUNNING


@pytest.mark.parametrize("value", [-1, 101, 1000, -100])
def test_progress_out_of_range(value: int) -> None:
    running = job_in(JobStatus.RUNNING)
    with pytest.raises(TransitionError) as info:
        apply_command(running, cmd("progress", progress=value))
    assert info.value.rule == "progress_out_of_range"
    assert running.progress == 40


@pytest.mark.parametrize("value", [50.5, "50", None, True])
def test_progress_must_be_an_integer(value: object) -> None:
    with pytest.raises(TransitionError) as info:
        apply_command(job_in(JobStatus.RUNNING), cmd("progress", progress=value))
    assert info.value.rule == "invalid_command"


def test_complete_sets_finish_progress_and_metrics() -> None:
    running = job_in(JobStatus.RUNNING)
    done = apply_command(running, cmd("complete", T_END, metrics='{"f1": 0.5}'))
    assert done.status is JobStatus.COMPLETED
    assert done.progress == 100
    assert done.finished_at_ms == T_END * 1000
    assert done.metrics == '{"f1": 0.5}'
    assert done.error is None
    assert done.duration_ms == (T_END - T_START) * 1000


def test_complete_keeps_earlier_metrics_else_empty_object() -> None:
    running = job_in(JobStatus.RUNNING)
    assert apply_command(running, cmd("complete")).metrics == "{}"
    with_metrics = Job.from_json({**running.to_json(), "metrics": '{"loss": 0.1}'})
    assert apply_command(with_metrics, cmd("complete")).metrics == '{"loss": 0.1}'
    assert apply_command(with_metrics, cmd("complete", metrics="{}")).metrics == "{}"


def test_fail_sets_error_and_finish() -> None:
    running = job_in(JobStatus.RUNNING)
    failed = apply_command(running, cmd("fail", T_END, error="disk full"))
    assert failed.status is JobStatus.FAILED
    assert failed.error == "disk full"
    assert failed.finished_at_ms == T_END * 1000
    assert failed.progress == 40
    assert failed.metrics is None
    assert failed.duration_ms == (T_END - T_START) * 1000


def test_fail_requires_an_error() -> None:
    doc = cmd("fail")
    del doc["error"]
    with pytest.raises(TransitionError) as info:
        apply_command(job_in(JobStatus.RUNNING), doc)
    assert info.value.rule == "invalid_command"


def test_cancel_from_queued_and_running() -> None:
    cancelled = apply_command(job_in(JobStatus.QUEUED), cmd("cancel", T_END, reason="dup"))
    assert (cancelled.status, cancelled.finished_at_ms) == (JobStatus.CANCELLED, T_END * 1000)
    assert cancelled.started_at_ms == 0
    assert cancelled.duration_ms is None
    assert cancelled.error is None
    cancelled = apply_command(job_in(JobStatus.RUNNING), cmd("cancel", T_END))
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.progress == 40
    assert cancelled.duration_ms == (T_END - T_START) * 1000


def test_schema_examples_drive_a_job_to_completion() -> None:
    examples = SCHEMA_DIR / "examples" / "ml_job_command" / "valid"
    job = None
    for name in ("submit", "start", "progress", "complete"):
        doc = json.loads((examples / f"{name}.json").read_text())
        job = apply_command(job, doc)
    assert job is not None
    assert job.status is JobStatus.COMPLETED
    assert job.metrics == '{"auc": 0.91}'
    assert job.spec == '{"epochs": 3, "lr": 0.001}'


# ---- malformed commands ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "rule"),
    [
        ({"command": "restart", "job_id": JOB_ID, "timestamp": 1}, "invalid_command"),
        ({"job_id": JOB_ID, "timestamp": 1}, "invalid_command"),
        (cmd("start", job_id="0123"), "invalid_command"),
        (cmd("start", job_id=JOB_ID.upper()), "invalid_command"),
        (cmd("start", ts=-1), "invalid_command"),
        (cmd("start", ts=float("nan")), "invalid_command"),
        (cmd("start", ts=float("inf")), "invalid_command"),
        (cmd("start", ts="1670000000"), "invalid_command"),
        (cmd("start", ts=True), "invalid_command"),
        (cmd("start", job_id="f" * 32), "job_id_mismatch"),
        (cmd("cancel", reason=3), "invalid_command"),
        (cmd("complete", metrics={"auc": 1}), "invalid_command"),
        (cmd("fail", error=None), "invalid_command"),
    ],
)
def test_malformed_commands_are_refused(doc: dict[str, Any], rule: str) -> None:
    with pytest.raises(TransitionError) as info:
        apply_command(job_in(JobStatus.RUNNING), doc)
    assert info.value.rule == rule


@pytest.mark.parametrize(
    "extra", [{"kind": "finetune"}, {"kind": None}, {"target": ""}, {"target": 5}, {"spec": {}}]
)
def test_malformed_submit_is_refused(extra: dict[str, Any]) -> None:
    with pytest.raises(TransitionError) as info:
        apply_command(None, cmd("submit", **extra))
    assert info.value.rule == "invalid_command"


def test_command_must_be_a_mapping() -> None:
    with pytest.raises(TransitionError) as info:
        apply_command(None, ["submit"])  # type: ignore[arg-type]
    assert info.value.rule == "invalid_command"


# ---- terminal states, duration ---------------------------------------------------------

command_docs = st.builds(
    cmd,
    st.sampled_from(COMMANDS),
    st.integers(min_value=0, max_value=2_000_000_000),
)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(TERMINAL)),
    st.lists(command_docs, max_size=10),
)
def test_terminal_never_changes(status: JobStatus, commands: list[dict[str, Any]]) -> None:
    job = job_in(status)
    snapshot = job.to_json()
    for doc in commands:
        with pytest.raises(TransitionError) as info:
            apply_command(job, doc)
        assert info.value.rule in {"terminal_is_final", "job_exists"}
    assert job.to_json() == snapshot


@settings(max_examples=300, deadline=None)
@given(st.lists(command_docs, max_size=12))
def test_random_command_streams_obey_the_machine(commands: list[dict[str, Any]]) -> None:
    """Whatever arrives, statuses only follow LEGAL, terminal is final, progress stays in
    0..100 and every intermediate job survives a JSON round trip."""
    job: Job | None = None
    for doc in commands:
        try:
            nxt = apply_command(job, doc)
        except TransitionError:
            continue
        if job is not None:
            assert not job.is_terminal
            assert nxt.status in LEGAL[job.status] or (
                nxt.status is job.status is JobStatus.RUNNING and doc["command"] == "progress"
            )
        assert 0 <= nxt.progress <= 100
        assert Job.from_json(json.loads(json.dumps(nxt.to_json()))) == nxt
        job = nxt


def test_duration_needs_both_times() -> None:
    base = job_in(JobStatus.RUNNING)
    assert base.duration_ms is None
    cancelled_queued = apply_command(job_in(JobStatus.QUEUED), cmd("cancel"))
    assert cancelled_queued.finished_at_ms and cancelled_queued.duration_ms is None
    done = apply_command(base, cmd("complete", T_START + 1.25))
    assert done.duration_ms == 1250
    # producers' clocks disagree: finished before started -> no duration
    early = apply_command(base, cmd("complete", T_START - 5))
    assert early.duration_ms is None


# ---- JSON ------------------------------------------------------------------------------


def test_to_json_has_the_seed_shape() -> None:
    job = job_in(JobStatus.COMPLETED)
    assert job.to_json() == {
        "id": JOB_ID,
        "kind": "train",
        "target": "ranker-v2",
        "status": "completed",
        "progress": 100,
        "created_at": T_SUBMIT * 1000,
        "started_at": T_START * 1000,
        "finished_at": T_END * 1000,
        "error": None,
        "spec": '{"epochs": 3}',
        "metrics": '{"auc": 0.91}',
        "duration_ms": (T_END - T_START) * 1000,
    }
    assert json.loads(json.dumps(job.to_json())) == job.to_json()
    assert type(job.to_json()["status"]) is str


def test_from_json_ignores_duration() -> None:
    record = job_in(JobStatus.FAILED).to_json()
    record["duration_ms"] = 123456
    assert Job.from_json(record) == job_in(JobStatus.FAILED)
    del record["duration_ms"]
    assert Job.from_json(record) == job_in(JobStatus.FAILED)


ms = st.integers(min_value=1, max_value=4_000_000_000_000)
texts = st.text(max_size=20)


@st.composite
def valid_jobs(draw: st.DrawFn) -> Job:
    status = draw(st.sampled_from(ALL_STATUSES))
    started = 0 if status is JobStatus.QUEUED else draw(ms | st.just(0))
    if status is JobStatus.QUEUED:
        progress = 0
    elif status is JobStatus.COMPLETED:
        progress = 100
    else:
        progress = draw(st.integers(0, 100))
    return Job(
        id=draw(st.integers(0, 2**128 - 1).map(lambda n: f"{n:032x}")),
        kind=draw(st.sampled_from(list(JobKind))),
        target=draw(st.text(min_size=1, max_size=20)),
        status=status,
        progress=progress,
        created_at_ms=draw(ms | st.just(0)),
        started_at_ms=started,
        finished_at_ms=draw(ms | st.just(0)) if status.is_terminal else 0,
        error=draw(texts) if status is JobStatus.FAILED else None,
        spec=draw(texts),
        metrics=draw(texts) if status is JobStatus.COMPLETED else draw(st.none() | texts),
    )


@settings(max_examples=300, deadline=None)
@given(valid_jobs())
def test_json_round_trip(job: Job) -> None:
    record = job.to_json()
    assert Job.from_json(record) == job
    assert Job.from_json(json.loads(json.dumps(record))) == job
    assert record["duration_ms"] == job.duration_ms


GOOD = job_in(JobStatus.RUNNING).to_json()


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"id": "0123"}, "32 lowercase hex"),
        ({"id": JOB_ID.upper()}, "32 lowercase hex"),
        ({"id": "g" * 32}, "32 lowercase hex"),
        ({"id": "0x" + "0" * 30}, "32 lowercase hex"),
        ({"id": 5}, "id must be a string"),
        ({"status": "paused"}, "status must be one of"),
        ({"kind": "finetune"}, "kind must be one of"),
        ({"progress": 101}, "0..100"),
        ({"progress": -1}, "0..100"),
        ({"progress": 50.0}, "progress must be an integer"),
        ({"progress": True}, "progress must be an integer"),
        ({"created_at": -5}, "created_at_ms must be an integer >= 0"),
        ({"started_at": "1"}, "started_at must be an integer"),
        ({"target": ""}, "target must be a non-empty string"),
        ({"spec": None}, "spec must be a string"),
        ({"metrics": 3}, "metrics must be a string or null"),
        ({"error": "boom"}, "error must be set exactly when the job failed"),
        ({"finished_at": 5}, "a running job has no finished_at"),
        ({"status": "queued"}, "a queued job"),
        ({"status": "completed"}, "a completed job"),
        ({"status": "failed"}, "error must be set exactly when the job failed"),
        ({"extra": 1}, "unknown field(s) extra"),
    ],
)
def test_from_json_rejects_bad_records(changes: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError) as info:
        Job.from_json({**GOOD, **changes})
    assert needle in str(info.value)


@pytest.mark.parametrize("key", [k for k in GOOD if k != "duration_ms"])
def test_from_json_rejects_missing_fields(key: str) -> None:
    record = dict(GOOD)
    del record[key]
    with pytest.raises(ValueError, match=f"missing {key}"):
        Job.from_json(record)


@pytest.mark.parametrize("record", [None, [], "job", 3])
def test_from_json_rejects_non_objects(record: Any) -> None:
    with pytest.raises(ValueError, match="JSON object"):
        Job.from_json(record)


def test_job_is_immutable() -> None:
    job = job_in(JobStatus.RUNNING)
    with pytest.raises(AttributeError):
        job.progress = 90  # type: ignore[misc]
