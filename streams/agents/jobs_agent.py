"""ML jobs: the job table fed by job commands, and the runner of the kinds the app
runs itself (feature_refresh, drift_compute) through the same commands."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
import orjson

from streams.agents.keyed_state import DeadLetterFactory, KeyedState, register_keyed_agent
from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.drift import drift
from streams.domain.jobs import Job, JobKind, JobStatus, TransitionError, apply_command
from streams.domain.windows import latest_revisions
from streams.kafka.export import WRITERS, read_window_records

log = logging.getLogger(__name__)

APP_KINDS = frozenset({JobKind.FEATURE_REFRESH, JobKind.DRIFT_COMPUTE})
RUNNER_CHECK_S = 2.0


def apply_job_command(
    state: KeyedState, command: dict[str, Any], letters: DeadLetterFactory
) -> None:
    """Apply one command; a broken rule is a dead letter naming it, the table unchanged."""
    job_id = str(command["job_id"])
    record = state.get(job_id)
    try:
        current = None if record is None else Job.from_json(record)
        job = apply_command(current, command)
    except TransitionError as exc:
        letters.refuse("invalid_transition", str(exc), command, rule=exc.rule)
        return
    state.put(job_id, job.to_json())


class JobRunner:
    """Runs the queued jobs of the kinds the app runs itself, on the worker that owns
    them, by publishing start, progress and complete (or fail) commands."""

    def __init__(self, app: faust.App, settings: Settings, names: TopicNames, state: KeyedState):
        self.app = app
        self.settings = settings
        self.names = names
        self.state = state
        self.running: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def command(self, job_id: str, name: str, **fields: Any) -> None:
        """Publish a job command (through the router, like any engine would)."""
        command = {"command": name, "job_id": job_id, "timestamp": time.time(), **fields}
        await self.app.producer.send(
            self.names.raw["ml_job_command"], job_id.encode(), orjson.dumps(command),
            None, None, None,
        )

    async def tick(self) -> None:
        """Start every queued app-run job of this worker's partitions."""
        if self.app.rebalancing:
            return
        for record in self.state.records():
            if (
                record["status"] == JobStatus.QUEUED
                and record["kind"] in APP_KINDS
                and record["id"] not in self.running
            ):
                self.running.add(record["id"])
                task = asyncio.ensure_future(self.run(Job.from_json(record)))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def run(self, job: Job) -> None:
        """Run one job end to end."""
        try:
            await self.command(job.id, "start")
            spec = orjson.loads(job.spec or "{}")
            records = await read_window_records(self.settings)
            await self.command(job.id, "progress", progress=50)
            if job.kind == JobKind.FEATURE_REFRESH:
                metrics = self.feature_refresh(job, spec, records)
            else:
                metrics = drift(records, int(spec.get("windows", 5)), int(spec.get("size", 60)))
            await self.command(job.id, "complete", metrics=orjson.dumps(metrics).decode())
        except Exception as exc:  # the job fails, the worker does not
            log.warning("job %s failed: %s", job.id, exc)
            await self.command(job.id, "fail", error=f"{type(exc).__name__}: {exc}"[:500])
        finally:
            self.running.discard(job.id)

    def feature_refresh(
        self, job: Job, spec: dict[str, Any], records: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Export the window metrics of the spec's range to CSV and Parquet."""
        start = float(spec.get("from", float("-inf")))
        end = float(spec.get("to", float("inf")))
        size = spec.get("size")
        rows = latest_revisions(records, start, end, None if size is None else int(size))
        directory = self.settings.data_dir / "features" / job.id
        paths = {fmt: str(WRITERS[fmt](rows, directory / f"windows.{fmt}")) for fmt in WRITERS}
        return {"rows": len(rows), "files": paths, "target": job.target}


def register_jobs(
    app: faust.App, settings: Settings, names: TopicNames, partitions: dict[str, int]
) -> KeyedState:
    """Add the jobs table, its agent and the runner."""
    state = KeyedState(app, settings, "jobs", names.typed["ml_job_command"])
    runner = JobRunner(app, settings, names, state)
    register_keyed_agent(
        app, settings, names, state, "ml_job_command", apply_job_command, partitions
    )

    @app.timer(RUNNER_CHECK_S)
    async def start_queued_jobs() -> None:
        await runner.tick()

    return state
