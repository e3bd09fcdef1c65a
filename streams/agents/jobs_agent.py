"""ML jobs: the job table fed by job commands, and the runner of the kinds the app
runs itself (feature_refresh, drift_compute) through the same commands.

Who runs a job, and what happens to a running job whose worker is lost, is decided
in streams.domain.job_runs; the runner here carries it out. It hears every command
the jobs agent applies or refuses (`JobRunner.heard`), so it can wait for its own
commands to be applied: its `start` (the claim) and the fence before a takeover. It
holds its commands from the moment a rebalance starts until the assignment says
which of its jobs stay here, and stops the runs and takeovers of the others, so the
new owner of a partition never hears from the old one after its fence.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

import faust
import orjson

from streams.agents.keyed_state import DeadLetterFactory, KeyedState, register_keyed_agent
from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.drift import drift
from streams.domain.job_runs import (
    APP_KINDS,
    fence_command,
    min_duration_s,
    plan_runs,
    takeover_command,
)
from streams.domain.jobs import Job, JobKind, JobStatus, TransitionError, apply_command
from streams.domain.windows import latest_revisions
from streams.kafka.export import WRITERS, read_window_records

log = logging.getLogger(__name__)

__all__ = ["APP_KINDS", "JobRunner", "SendGate", "apply_job_command", "register_jobs"]

RUNNER_CHECK_S = 2.0

Echo = tuple[str, str, float]
"""A command the runner waits to see applied: job id, command, timestamp."""


def apply_job_command(
    state: KeyedState, command: dict[str, Any], letters: DeadLetterFactory
) -> Job | None:
    """Apply one command; a broken rule is a dead letter naming it, the table unchanged.
    Answers the job as the command left it, or None when it was refused."""
    job_id = str(command["job_id"])
    record = state.get(job_id)
    try:
        current = None if record is None else Job.from_json(record)
        job = apply_command(current, command)
    except TransitionError as exc:
        letters.refuse("invalid_transition", str(exc), command, rule=exc.rule)
        return None
    state.put(job_id, job.to_json())
    return job


class SendGate:
    """Lets the runner's commands out only while no rebalance is deciding who owns
    their jobs; `close` answers once every command already let out is handed to the
    producer."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.opened.set()
        self.idle = asyncio.Event()
        self.idle.set()
        self.in_flight = 0

    async def send(self, send: Callable[[], Awaitable[Any]]) -> None:
        """Wait until the gate is open, then `send`."""
        while not self.opened.is_set():  # closed again before this waiter woke up
            await self.opened.wait()
        self.in_flight += 1
        self.idle.clear()
        try:
            await send()
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.idle.set()

    def hold(self) -> None:
        """Hold every later command."""
        self.opened.clear()

    async def close(self) -> None:
        """Hold every later command; answer when those let out before are sent."""
        self.hold()
        await self.idle.wait()

    def open(self) -> None:
        """Let commands out again."""
        self.opened.set()


class JobRunner:
    """Runs the queued jobs of the kinds the app runs itself, on the worker that owns
    them, by publishing start, progress and complete (or fail) commands; fails the
    running ones whose worker was lost (streams.domain.job_runs)."""

    def __init__(self, app: faust.App, settings: Settings, names: TopicNames, state: KeyedState):
        self.app = app
        self.settings = settings
        self.names = names
        self.state = state
        self.worker = settings.advertised_url
        self.gate = SendGate()
        # Job id -> the task running it or taking it over, while it lasts.
        self.tasks: dict[str, asyncio.Task[None]] = {}
        # Jobs whose terminal command this worker published, until the table has it.
        self.ended: set[str] = set()
        self.echoes: dict[Echo, asyncio.Future[Job | None]] = {}
        self.stopped = False

    async def publish(self, command: dict[str, Any]) -> None:
        """Publish a job command (through the router, like any engine would)."""
        key = str(command["job_id"]).encode()
        value = orjson.dumps(command)

        async def send() -> None:  # written, not only buffered: see `revoked`
            delivery = await self.app.producer.send(
                self.names.raw["ml_job_command"], key, value, None, None, None
            )
            await delivery

        await self.gate.send(send)

    async def command(self, job_id: str, name: str, **fields: Any) -> None:
        """Publish the command `name` for `job_id`, stamped now."""
        await self.publish({"command": name, "job_id": job_id, "timestamp": time.time(), **fields})

    async def applied(self, command: dict[str, Any]) -> Job | None:
        """Publish `command` and wait for this worker's table to apply it: answer the
        job as it left it, or None when the state machine refused it."""
        echo: Echo = (command["job_id"], command["command"], command["timestamp"])
        future: asyncio.Future[Job | None] = asyncio.get_running_loop().create_future()
        self.echoes[echo] = future
        try:
            await self.publish(command)
            return await future
        finally:
            self.echoes.pop(echo, None)

    def heard(self, command: dict[str, Any], job: Job | None) -> None:
        """The jobs agent applied `command` (`job` is the result) or refused it (None)."""
        try:
            future = self.echoes.get((command["job_id"], command["command"], command["timestamp"]))
        except (KeyError, TypeError):  # not one of ours: ours are whole and hashable
            future = None
        if future is not None and not future.done():
            future.set_result(job)
        if job is not None and job.is_terminal:
            task = self.tasks.get(job.id)
            if task is not None:  # cancelled, or ended by someone else: stop working on it
                task.cancel()

    async def tick(self) -> None:
        """Start the queued app-run jobs of this worker's partitions; take over the
        running ones nobody runs any longer."""
        if self.app.rebalancing or self.stopped:
            return
        owned = {
            tp.partition for tp in self.app.consumer.assignment()
            if tp.topic == self.state.source
        }  # fmt: skip
        plan = plan_runs(
            self.jobs(), owned, self.state.partition_of, self.tasks, self.ended
        )
        self.ended -= plan.settled
        for job in plan.start:
            self.spawn(job.id, self.run(job))
        for job in plan.take_over:
            self.spawn(job.id, self.take_over(job))

    def jobs(self) -> Iterable[Job]:
        """Every readable job of the table (a bad record is logged and skipped)."""
        for record in self.state.records(owned_only=False):
            try:
                yield Job.from_json(record)
            except ValueError as exc:
                log.warning("job %s not considered for running: %s", record.get("id"), exc)

    def spawn(self, job_id: str, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` for `job_id` as a task, known in `tasks` while it lasts."""
        task = asyncio.ensure_future(work)
        self.tasks[job_id] = task

        def done(finished: asyncio.Task[None]) -> None:
            if self.tasks.get(job_id) is finished:
                del self.tasks[job_id]
            if not finished.cancelled() and finished.exception() is not None:
                log.error("job %s: its command could not be published", job_id,
                          exc_info=finished.exception())

        task.add_done_callback(done)

    async def run(self, job: Job) -> None:
        """Run one job end to end, once this worker's `start` is the one applied."""
        started = await self.applied(
            {"command": "start", "job_id": job.id, "timestamp": time.time()}
        )
        if started is None or started.status is not JobStatus.RUNNING:
            return  # another worker started it first, or it ended meanwhile: not ours
        try:
            metrics = await self.work(started)
        except Exception as exc:  # the job fails, the worker does not
            log.warning("job %s failed: %s", job.id, exc)
            await self.command(job.id, "fail", error=f"{type(exc).__name__}: {exc}"[:500])
        else:
            await self.command(job.id, "complete", metrics=orjson.dumps(metrics).decode())
        self.ended.add(job.id)

    async def work(self, job: Job) -> dict[str, Any]:
        """The job's own work; answers its metrics."""
        spec = orjson.loads(job.spec or "{}")
        if not isinstance(spec, dict):
            raise ValueError(f"spec must be a JSON object, got {job.spec!r}")
        hold = min_duration_s(spec)
        records = await read_window_records(self.settings)
        await self.command(job.id, "progress", progress=50)
        if job.kind == JobKind.FEATURE_REFRESH:
            metrics = self.feature_refresh(job, spec, records)
        else:
            metrics = drift(records, int(spec.get("windows", 5)), int(spec.get("size", 60)))
        rest = job.started_at_ms / 1000 + hold - time.time()
        if rest > 0:
            await asyncio.sleep(rest)
        return metrics

    async def take_over(self, job: Job) -> None:
        """Fail a running job whose worker was lost, once the fence says that worker's
        last command is applied and did not end it (streams.domain.job_runs)."""
        fenced = await self.applied(fence_command(job, time.time()))
        if fenced is None or fenced.status is not JobStatus.RUNNING:
            return  # its worker's own last command ended it
        log.warning("job %s: its worker was lost while running it; failing it", job.id)
        await self.publish(takeover_command(job.id, self.worker, time.time()))
        self.ended.add(job.id)

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

    async def revoked(self) -> None:
        """A rebalance starts: hold every command until the assignment is known, and
        make sure what was published is written before the partitions move."""
        await self.gate.close()
        await self.app.producer.flush()

    async def assigned(self, owned: set[int]) -> None:
        """The assignment is known: stop the work on jobs of partitions that went
        elsewhere (their new owner takes them over), let the rest go on."""
        lost = [t for j, t in self.tasks.items() if self.state.partition_of(j) not in owned]
        await self.stop(lost)
        self.ended = {j for j in self.ended if self.state.partition_of(j) in owned}
        if not self.stopped:
            self.gate.open()

    async def shutdown(self) -> None:
        """The worker stops: stop every run and takeover, publish nothing more."""
        self.stopped = True
        self.gate.hold()
        await self.stop(list(self.tasks.values()))

    async def stop(self, tasks: list[asyncio.Task[None]]) -> None:
        """Cancel `tasks` and wait until they have stopped."""
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def register_jobs(
    app: faust.App, settings: Settings, names: TopicNames, partitions: dict[str, int]
) -> KeyedState:
    """Add the jobs table, its agent and the runner."""
    state = KeyedState(app, settings, "jobs", names.typed["ml_job_command"])
    runner = JobRunner(app, settings, names, state)

    def apply(state: KeyedState, command: dict[str, Any], letters: DeadLetterFactory) -> None:
        runner.heard(command, apply_job_command(state, command, letters))

    register_keyed_agent(app, settings, names, state, "ml_job_command", apply, partitions)

    async def on_revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        await runner.revoked()

    async def on_assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        await runner.assigned({tp.partition for tp in assigned if tp.topic == state.source})

    async def on_shutdown(sender: Any, **kwargs: Any) -> None:
        await runner.shutdown()

    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]
    app.on_partitions_assigned.connect(on_assigned)  # type: ignore[arg-type]
    app.on_before_shutdown.connect(on_shutdown)  # type: ignore[arg-type]

    @app.timer(RUNNER_CHECK_S)
    async def start_queued_jobs() -> None:
        await runner.tick()

    return state
