"""ML jobs: the job record, its JSON persistence and its state machine.

A job is driven by `ml_job_command` documents (schemas/v1/ml_job_command.json) on the
``ml.jobs`` topic, keyed by job id, so every command of one job is applied in order by
the worker that owns its partition. :func:`apply_command` is that state machine, pure:

    queued  --start-->    running
    queued  --cancel-->   cancelled
    running --complete--> completed
    running --fail-->     failed
    running --cancel-->   cancelled
    running --progress--> running      (progress 0..100)

``completed``, ``failed`` and ``cancelled`` are terminal and never change. A command
that breaks the machine raises :class:`TransitionError` (a ``ValueError``) with a stable
``rule`` and leaves the job as it was; the caller dead-letters the command.

Decisions where the seed record (a Rust ``MlJob``) and the contract are silent:

* Event time: ``*_at_ms`` fields are ``int(round(timestamp * 1000))`` of the command's
  epoch-seconds timestamp (rounded, so ``0.001`` s is 1 ms and not 0 through float
  error). ``0`` means "unset", as in the seed.
* Progress may go down while running (workers restart phases); any integer in 0..100 is
  accepted. ``progress`` on a queued job is ``not_running``.
* ``complete`` sets progress to 100 and ``metrics`` to the command's metrics if given,
  else the metrics already on the record, else ``"{}"``: a completed job always has
  metrics (the seed says they are written before the job completes).
* ``cancel`` accepts a ``reason`` (schema) but the record has no field for it; it is kept
  only in the command log. ``error`` stays ``None`` unless the job failed.
* ``submit`` for an id that already exists is ``job_exists`` whatever that job's state
  (ids are never reused); a redelivered submit is therefore an error too.
* The order of commands is the partition order; timestamps are not compared, so a job
  may finish "before" it started when producers' clocks disagree: then ``duration_ms``
  is ``None`` (the seed's ``checked_sub``).
* ``from_json`` is strict: unknown keys (other than the derived ``duration_ms``), floats
  where integers belong, uppercase hex ids and records that break the state invariants
  (see :class:`Job`) are all rejected.
"""

from __future__ import annotations

import dataclasses
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from streams.domain import fields

__all__ = [
    "LEGAL",
    "TERMINAL",
    "Job",
    "JobKind",
    "JobStatus",
    "TransitionError",
    "apply_command",
    "new_job_id",
]

JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")
MAX_EPOCH_MS = 2**63 - 1
"""Largest ``*_at_ms`` a record can hold (a signed 64-bit JSON integer)."""

E = TypeVar("E", bound=StrEnum)


class JobStatus(StrEnum):
    """State of a job; the value is the token persisted and shown to users."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """True for completed, failed and cancelled: such a job never changes again."""
        return self in TERMINAL


class JobKind(StrEnum):
    """Kind of work a job performs."""

    TRAIN = "train"
    BACKFILL = "backfill"
    FEATURE_REFRESH = "feature_refresh"
    DRIFT_COMPUTE = "drift_compute"


TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
)
"""Statuses a job never leaves."""

LEGAL: dict[JobStatus, set[JobStatus]] = {
    JobStatus.QUEUED: {JobStatus.RUNNING, JobStatus.CANCELLED},
    JobStatus.RUNNING: {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED},
    JobStatus.COMPLETED: set(),
    JobStatus.FAILED: set(),
    JobStatus.CANCELLED: set(),
}
"""Legal status changes (``progress`` keeps a running job running and is not listed)."""

_COMMAND_TARGET: dict[str, JobStatus] = {
    "start": JobStatus.RUNNING,
    "complete": JobStatus.COMPLETED,
    "fail": JobStatus.FAILED,
    "cancel": JobStatus.CANCELLED,
}
COMMANDS: tuple[str, ...] = ("submit", "start", "progress", "complete", "fail", "cancel")
"""Every command of schemas/v1/ml_job_command.json."""

_JSON_KEYS: tuple[str, ...] = (
    "id",
    "kind",
    "target",
    "status",
    "progress",
    "created_at",
    "started_at",
    "finished_at",
    "error",
    "spec",
    "metrics",
)
_DERIVED_KEYS: frozenset[str] = frozenset({"duration_ms"})


def new_job_id() -> str:
    """A fresh job id: 128 random bits as 32 lowercase hex characters."""
    return uuid.uuid4().hex


class TransitionError(ValueError):
    """A command the state machine refuses.

    ``rule`` is a short stable identifier (for dead letters and metrics):

    * ``invalid_command`` — not a well-formed command (unknown command, missing or
      ill-typed field, bad timestamp, bad kind);
    * ``job_id_mismatch`` — the command names another job than the one given;
    * ``job_exists`` — ``submit`` for an id that already has a job;
    * ``unknown_job`` — any other command for an id without a job;
    * ``terminal_is_final`` — any command for a completed/failed/cancelled job;
    * ``illegal_transition`` — a status change not in :data:`LEGAL`;
    * ``not_running`` — ``progress`` for a job that is not running;
    * ``progress_out_of_range`` — ``progress`` outside 0..100.
    """

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message

    def __str__(self) -> str:
        return f"{self.rule}: {self.message}"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Job:
    """One ML job, exactly the seed's persisted record.

    Invariants (checked on construction, so every ``Job`` is a valid record):
    ``id`` is 32 lowercase hex characters; ``target`` is non-empty; ``progress`` is an
    int in 0..100; the ``*_at_ms`` are ints >= 0 (0 = unset); ``spec`` is a string;
    ``error`` is set exactly when the job failed; a completed job has metrics and
    progress 100; a queued job has progress 0 and no start or finish time; a running
    job has no finish time.
    """

    id: str
    kind: JobKind
    target: str
    status: JobStatus = JobStatus.QUEUED
    progress: int = 0
    created_at_ms: int = 0
    started_at_ms: int = 0
    finished_at_ms: int = 0
    error: str | None = None
    spec: str = "{}"
    metrics: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not JOB_ID_RE.match(self.id):
            raise ValueError(f"job id must be 32 lowercase hex characters, got {self.id!r}")
        object.__setattr__(self, "kind", _enum(JobKind, self.kind, "kind"))
        object.__setattr__(self, "status", _enum(JobStatus, self.status, "status"))
        if not isinstance(self.target, str) or not self.target:
            raise ValueError(f"job target must be a non-empty string, got {self.target!r}")
        if not _is_int(self.progress) or not 0 <= self.progress <= 100:
            raise ValueError(f"job progress must be an integer in 0..100, got {self.progress!r}")
        for name in ("created_at_ms", "started_at_ms", "finished_at_ms"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise ValueError(f"job {name} must be an integer >= 0, got {value!r}")
        if not isinstance(self.spec, str):
            raise ValueError(f"job spec must be a string (opaque JSON), got {self.spec!r}")
        if self.metrics is not None and not isinstance(self.metrics, str):
            raise ValueError(f"job metrics must be a string or null, got {self.metrics!r}")
        if self.error is not None and not isinstance(self.error, str):
            raise ValueError(f"job error must be a string or null, got {self.error!r}")
        self._check_status_invariants()

    def _check_status_invariants(self) -> None:
        status = self.status
        if (status is JobStatus.FAILED) != (self.error is not None):
            raise ValueError(
                f"job error must be set exactly when the job failed (status {status}, "
                f"error {self.error!r})"
            )
        if status is JobStatus.QUEUED and (
            self.progress or self.started_at_ms or self.finished_at_ms
        ):
            raise ValueError(
                "a queued job has progress 0 and no started_at/finished_at, got "
                f"progress={self.progress}, started_at={self.started_at_ms}, "
                f"finished_at={self.finished_at_ms}"
            )
        if status is JobStatus.RUNNING and self.finished_at_ms:
            raise ValueError(f"a running job has no finished_at, got {self.finished_at_ms}")
        if status is JobStatus.COMPLETED and (self.progress != 100 or self.metrics is None):
            raise ValueError(
                "a completed job has progress 100 and metrics, got "
                f"progress={self.progress}, metrics={self.metrics!r}"
            )

    @property
    def is_terminal(self) -> bool:
        """True once the job is completed, failed or cancelled."""
        return self.status in TERMINAL

    @property
    def duration_ms(self) -> int | None:
        """Finished minus started, when both are set and in order; else ``None``."""
        if self.started_at_ms == 0 or self.finished_at_ms == 0:
            return None
        if self.finished_at_ms < self.started_at_ms:
            return None
        return self.finished_at_ms - self.started_at_ms

    def to_json(self) -> dict[str, Any]:
        """The seed's persisted shape, plus the derived ``duration_ms``."""
        return {
            "id": self.id,
            "kind": str(self.kind),
            "target": self.target,
            "status": str(self.status),
            "progress": self.progress,
            "created_at": self.created_at_ms,
            "started_at": self.started_at_ms,
            "finished_at": self.finished_at_ms,
            "error": self.error,
            "spec": self.spec,
            "metrics": self.metrics,
            "duration_ms": self.duration_ms,
        }

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Job:
        """Inverse of :meth:`to_json`; ``duration_ms`` is ignored.

        Raises ``ValueError`` naming the problem for anything that is not a valid record.
        """
        if not isinstance(record, Mapping):
            raise ValueError(f"job record must be a JSON object, got {type(record).__name__}")
        fields.all_present(record, _JSON_KEYS, "job record")
        fields.no_unknown(record, _DERIVED_KEYS.union(_JSON_KEYS), "job record")
        for key in ("id", "kind", "target", "status", "spec"):
            if not isinstance(record[key], str):
                raise ValueError(f"job {key} must be a string, got {record[key]!r}")
        for key in ("error", "metrics"):
            if record[key] is not None and not isinstance(record[key], str):
                raise ValueError(f"job {key} must be a string or null, got {record[key]!r}")
        for key in ("progress", "created_at", "started_at", "finished_at"):
            if not _is_int(record[key]):
                raise ValueError(f"job {key} must be an integer, got {record[key]!r}")
        return cls(
            id=record["id"],
            kind=_enum(JobKind, record["kind"], "kind"),
            target=record["target"],
            status=_enum(JobStatus, record["status"], "status"),
            progress=record["progress"],
            created_at_ms=record["created_at"],
            started_at_ms=record["started_at"],
            finished_at_ms=record["finished_at"],
            error=record["error"],
            spec=record["spec"],
            metrics=record["metrics"],
        )


def _enum(enum_type: type[E], value: object, name: str) -> E:
    if isinstance(value, enum_type):
        return value
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return enum_type(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum_type)
        raise ValueError(f"job {name} must be one of {allowed}, got {value!r}") from None


def _timestamp_ms(command: Mapping[str, Any]) -> int:
    ts = command.get("timestamp")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts) or ts < 0:
        raise TransitionError(
            "invalid_command", f"timestamp must be a number of epoch seconds >= 0, got {ts!r}"
        )
    ms = ts * 1000
    if ms > MAX_EPOCH_MS:  # also inf: the record (JSON, 64-bit integers) could not hold it
        raise TransitionError(
            "invalid_command", f"timestamp {ts!r} is out of range (epoch ms must fit 64 bits)"
        )
    return round(ms)


def _optional_str(command: Mapping[str, Any], key: str) -> str | None:
    value = command.get(key)
    if value is not None and not isinstance(value, str):
        raise TransitionError("invalid_command", f"{key} must be a string, got {value!r}")
    return value


def apply_command(current: Job | None, command: Mapping[str, Any]) -> Job:
    """Apply one ``ml_job_command`` to the job it names; return the new job.

    ``current`` is the job as stored (``None`` when there is none). It is never
    mutated: on success a new :class:`Job` is returned, on refusal
    :class:`TransitionError` is raised and nothing changes. Checks, in order:
    well-formed command, job id matches ``current``, ``job_exists`` / ``unknown_job``,
    ``terminal_is_final``, then the command's own rule.
    """
    if not isinstance(command, Mapping):
        raise TransitionError("invalid_command", "command must be a JSON object")
    name = command.get("command")
    if name not in COMMANDS:
        raise TransitionError(
            "invalid_command", f"command must be one of {', '.join(COMMANDS)}, got {name!r}"
        )
    job_id = command.get("job_id")
    if not isinstance(job_id, str) or not JOB_ID_RE.match(job_id):
        raise TransitionError(
            "invalid_command", f"job_id must be 32 lowercase hex characters, got {job_id!r}"
        )
    at_ms = _timestamp_ms(command)
    if current is not None and current.id != job_id:
        raise TransitionError(
            "job_id_mismatch", f"command for job {job_id} applied to job {current.id}"
        )

    if name == "submit":
        if current is not None:
            raise TransitionError(
                "job_exists", f"job {job_id} already exists (status {current.status})"
            )
        return _submit(job_id, at_ms, command)
    if current is None:
        raise TransitionError("unknown_job", f"{name} for unknown job {job_id}")
    if current.is_terminal:
        raise TransitionError(
            "terminal_is_final", f"{name} for job {job_id} which is already {current.status}"
        )

    if name == "progress":
        return _progress(current, command)

    target = _COMMAND_TARGET[name]
    if target not in LEGAL[current.status]:
        raise TransitionError(
            "illegal_transition",
            f"{name} for job {job_id}: {current.status} -> {target} is not allowed",
        )
    if target is JobStatus.RUNNING:
        return dataclasses.replace(current, status=target, started_at_ms=at_ms)
    if target is JobStatus.COMPLETED:
        metrics = _optional_str(command, "metrics")
        if metrics is None:
            metrics = current.metrics if current.metrics is not None else "{}"
        return dataclasses.replace(
            current, status=target, progress=100, finished_at_ms=at_ms, metrics=metrics
        )
    if target is JobStatus.FAILED:
        error = _optional_str(command, "error")
        if error is None:
            raise TransitionError("invalid_command", f"fail for job {job_id} without an error")
        return dataclasses.replace(current, status=target, finished_at_ms=at_ms, error=error)
    _optional_str(command, "reason")
    return dataclasses.replace(current, status=target, finished_at_ms=at_ms)


def _submit(job_id: str, at_ms: int, command: Mapping[str, Any]) -> Job:
    kind = command.get("kind")
    if kind not in {member.value for member in JobKind}:
        allowed = ", ".join(member.value for member in JobKind)
        raise TransitionError("invalid_command", f"kind must be one of {allowed}, got {kind!r}")
    target = command.get("target")
    if not isinstance(target, str) or not target:
        raise TransitionError(
            "invalid_command", f"target must be a non-empty string, got {target!r}"
        )
    spec = _optional_str(command, "spec")
    return Job(
        id=job_id,
        kind=JobKind(kind),
        target=target,
        status=JobStatus.QUEUED,
        created_at_ms=at_ms,
        spec="{}" if spec is None else spec,
    )


def _progress(current: Job, command: Mapping[str, Any]) -> Job:
    value = command.get("progress")
    if not isinstance(value, int) or isinstance(value, bool):
        raise TransitionError("invalid_command", f"progress must be an integer, got {value!r}")
    if current.status is not JobStatus.RUNNING:
        raise TransitionError(
            "not_running", f"progress for job {current.id} which is {current.status}"
        )
    if not 0 <= value <= 100:
        raise TransitionError(
            "progress_out_of_range", f"progress must be within 0..100, got {value}"
        )
    return dataclasses.replace(current, progress=value)
