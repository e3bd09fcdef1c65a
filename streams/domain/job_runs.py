"""The jobs a worker runs itself, and the running jobs it takes over from a lost worker.

The app runs two kinds of job itself (:data:`APP_KINDS`) on the worker that owns the
job's partition, through the same commands as any engine. That worker's ``start`` is
its claim: it runs the job only once the table has applied that ``start`` (a second
``start`` is refused by the state machine, so only one worker ever runs a job).

A worker can be lost while it runs a job: killed, or its partition moved elsewhere.
The job then stays ``running`` with nobody working on it. The contract's state
machine has no ``running -> running`` restart, so the worker that owns the partition
now ends the job ``failed``, with a reason that names itself (:func:`takeover_command`).
It decides only after a *fence* (:func:`fence_command`): the job's own progress again,
a command that changes nothing. The commands of one job share one partition of the raw
topic and are routed and applied in order, so once the fence is applied, so is every
command the lost worker published before it: if one of them ended the job, the new
owner sees it ended and publishes nothing; otherwise its ``fail`` is the job's one
terminal command. A second ``fail`` is refused (``terminal_is_final``), never applied.

Pure: :func:`plan_runs` answers what a worker does with the jobs of its partitions;
streams.agents.jobs_agent does it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from streams.domain.jobs import Job, JobKind, JobStatus

__all__ = [
    "APP_KINDS",
    "MAX_MIN_DURATION_S",
    "RunPlan",
    "fence_command",
    "min_duration_s",
    "plan_runs",
    "takeover_command",
    "takeover_error",
]

APP_KINDS: frozenset[JobKind] = frozenset({JobKind.FEATURE_REFRESH, JobKind.DRIFT_COMPUTE})
"""Kinds the app runs itself; the others are run (and reported) by engines."""

MAX_MIN_DURATION_S = 3600.0
"""The longest ``spec.min_duration_s`` a job may ask for."""


@dataclass(frozen=True)
class RunPlan:
    """What a worker does now with the jobs of its partitions.

    ``start``: queued jobs of the app's kinds, to claim and run. ``take_over``: running
    jobs of the app's kinds that this worker does not run, to fence and fail.
    ``settled``: ids of ``ended`` (see :func:`plan_runs`) the worker can forget.
    """

    start: tuple[Job, ...] = ()
    take_over: tuple[Job, ...] = ()
    settled: frozenset[str] = frozenset()


def plan_runs(
    jobs: Iterable[Job],
    owned: Collection[int],
    partition_of: Callable[[str], int],
    busy: Collection[str],
    ended: Collection[str] = (),
    kinds: Collection[JobKind] = APP_KINDS,
) -> RunPlan:
    """Decide for the jobs of a worker's table which to start and which to take over.

    ``jobs``: the table's records (of any partition); ``owned``: the partitions this
    worker owns (only their jobs are its to run); ``busy``: ids this worker is running
    or taking over now; ``ended``: ids whose terminal command this worker published,
    not yet applied (never taken over: their end is on its way). A ``running`` job of
    an owned partition that is neither busy nor ended here was started by a worker
    that no longer runs it: every worker stops the jobs of a partition it loses before
    the partition's new owner gets it (streams.agents.jobs_agent).
    """
    start: list[Job] = []
    take_over: list[Job] = []
    still: set[str] = set()
    for job in jobs:
        if partition_of(job.id) not in owned:
            continue
        if job.id in ended and not job.is_terminal:
            still.add(job.id)
        if job.kind not in kinds or job.id in busy or job.id in ended:
            continue
        if job.status is JobStatus.QUEUED:
            start.append(job)
        elif job.status is JobStatus.RUNNING:
            take_over.append(job)
    return RunPlan(tuple(start), tuple(take_over), frozenset(ended) - still)


def fence_command(job: Job, at: float) -> dict[str, Any]:
    """The fence before a takeover: ``progress`` with the job's own progress, which
    changes nothing but proves, once applied, that every earlier command is."""
    return {"command": "progress", "job_id": job.id, "timestamp": at, "progress": job.progress}


def takeover_error(worker: str) -> str:
    """The ``error`` of a job failed on takeover, naming the worker that failed it."""
    return (
        f"worker lost while running; failed by {worker} on taking over its partition "
        "(a running job cannot be restarted: submit it again)"
    )


def takeover_command(job_id: str, worker: str, at: float) -> dict[str, Any]:
    """The takeover's one terminal command: ``fail`` with :func:`takeover_error`."""
    return {"command": "fail", "job_id": job_id, "timestamp": at, "error": takeover_error(worker)}


def min_duration_s(spec: Mapping[str, Any]) -> float:
    """``spec.min_duration_s``: the least time in seconds a job runs before completing
    (0 when absent). Raises ``ValueError`` naming the field when it is not a number of
    seconds in 0..:data:`MAX_MIN_DURATION_S`."""
    value = spec.get("min_duration_s", 0)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= MAX_MIN_DURATION_S
    ):
        raise ValueError(
            f"spec.min_duration_s must be a number of seconds in 0..{MAX_MIN_DURATION_S:g}, "
            f"got {value!r}"
        )
    return float(value)
