"""The job runner's protocol (streams/agents/jobs_agent.py): its start is a claim, a
takeover waits for its fence, and a rebalance holds its commands until the assignment
says which jobs stay — against a stand-in for the router and the jobs agent that
applies every published command in order and tells the runner, as the worker does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from faust.types import TP

from streams.agents import jobs_agent
from streams.agents.jobs_agent import JobRunner
from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.jobs import Job, JobStatus, TransitionError, apply_command
from tests.unit.agents.stub_app import Sent, StubProducer

NAMES = TopicNames("")
SOURCE = NAMES.typed["ml_job_command"]
WORKER = "http://survivor:6066"


class Producer(StubProducer):
    """The stub producer, with the flush a rebalance asks for."""

    flushes = 0

    async def flush(self) -> None:
        self.flushes += 1


def partition_of(job_id: str) -> int:
    return int(job_id[-1], 16) % 4


class Pipeline:
    """The router and the jobs agent: applies the commands published so far, in order,
    to the table, and tells the runner what became of each."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.table: dict[str, Job] = {}
        self.delivered = 0
        self.runner: JobRunner | None = None
        self.log: list[tuple[dict[str, Any], str]] = []  # each command, "applied" or a rule

    def commands(self) -> list[dict[str, Any]]:
        return [orjson.loads(s.value) for s in self.producer.to(NAMES.raw["ml_job_command"])
                if s.value]  # fmt: skip

    def publish(self, command: dict[str, Any]) -> None:
        """A command from elsewhere (a user, another worker), on the same raw topic."""
        self.producer.sent.append(jobs_agent_sent(command))

    def deliver(self) -> None:
        for command in self.commands()[self.delivered:]:
            self.delivered += 1
            job_id = command["job_id"]
            try:
                job: Job | None = apply_command(self.table.get(job_id), command)
            except TransitionError as exc:
                job = None
                self.log.append((command, exc.rule))
            else:
                self.table[job_id] = job
                self.log.append((command, "applied"))
            assert self.runner is not None
            self.runner.heard(command, job)

    def names_of(self, job_id: str) -> list[str]:
        return [c["command"] for c in self.commands() if c["job_id"] == job_id]


def jobs_agent_sent(command: dict[str, Any]) -> Sent:
    """`command` as the producer holds it on the raw topic."""
    return Sent(NAMES.raw["ml_job_command"], command["job_id"].encode(),
                orjson.dumps(command), None)  # fmt: skip


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    async def no_windows(settings: Settings) -> list[dict[str, Any]]:
        return []

    monkeypatch.setattr(jobs_agent, "read_window_records", no_windows)
    producer = Producer()
    pipeline = Pipeline(producer)
    owned = {0, 1, 2, 3}
    app = SimpleNamespace(
        producer=producer, rebalancing=False,
        consumer=SimpleNamespace(assignment=lambda: {TP(SOURCE, p) for p in owned}),
    )  # fmt: skip
    state = SimpleNamespace(
        source=SOURCE, partition_of=partition_of,
        records=lambda owned_only=True: [j.to_json() for j in pipeline.table.values()],
    )  # fmt: skip
    settings = Settings.from_env({"ENGINESTREAM_DATA_DIR": str(tmp_path),
                                  "ENGINESTREAM_WEB_ADVERTISED_URL": WORKER})  # fmt: skip
    runner = JobRunner(app, settings, NAMES, state)  # type: ignore[arg-type]
    pipeline.runner = runner
    yield SimpleNamespace(runner=runner, pipeline=pipeline, owned=owned, producer=producer)


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.001)


def submit(pipeline: Pipeline, n: int, kind: str = "drift_compute", spec: str = "{}") -> str:
    job_id = f"{n:032x}"
    pipeline.publish({"command": "submit", "job_id": job_id, "timestamp": time.time(),
                      "kind": kind, "target": "t", "spec": spec})  # fmt: skip
    pipeline.deliver()
    return job_id


def running_elsewhere(pipeline: Pipeline, n: int, progress: int = 40) -> str:
    """A job another worker started and reported progress for."""
    job_id = submit(pipeline, n)
    pipeline.publish({"command": "start", "job_id": job_id, "timestamp": time.time()})
    pipeline.publish({"command": "progress", "job_id": job_id, "timestamp": time.time(),
                      "progress": progress})  # fmt: skip
    pipeline.deliver()
    return job_id


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


def test_a_queued_job_runs_only_once_its_start_is_applied(world: Any) -> None:
    async def scenario() -> None:
        runner, pipeline = world.runner, world.pipeline
        job_id = submit(pipeline, 1)
        await runner.tick()
        await wait_until(lambda: "start" in pipeline.names_of(job_id), "the start")
        await runner.tick()  # a second look while the claim is pending starts nothing
        for _ in range(50):
            await asyncio.sleep(0)
        assert pipeline.names_of(job_id) == ["submit", "start"]  # nothing before the echo
        pipeline.deliver()
        await wait_until(lambda: "complete" in pipeline.names_of(job_id), "the complete")
        pipeline.deliver()
        assert pipeline.names_of(job_id) == ["submit", "start", "progress", "complete"]
        assert pipeline.table[job_id].status is JobStatus.COMPLETED
        await runner.tick()
        assert runner.ended == set() and runner.tasks == {}
        assert pipeline.names_of(job_id) == ["submit", "start", "progress", "complete"]

    run(scenario)


def test_a_refused_start_is_not_a_second_run(world: Any) -> None:
    async def scenario() -> None:
        runner, pipeline = world.runner, world.pipeline
        job_id = submit(pipeline, 1)
        await runner.tick()
        await wait_until(lambda: "start" in pipeline.names_of(job_id), "the start")
        # Another worker's start (published before it was lost) is applied first.
        pipeline.producer.sent.insert(-1, jobs_agent_sent(
            {"command": "start", "job_id": job_id, "timestamp": time.time() - 1}))
        pipeline.deliver()
        assert [rule for _, rule in pipeline.log[-2:]] == ["applied", "illegal_transition"]
        await wait_until(lambda: not runner.tasks, "the run given up")
        assert pipeline.names_of(job_id) == ["submit", "start", "start"]
        # The job is running with nobody working on it: the next look takes it over.
        await runner.tick()
        await wait_until(lambda: "progress" in pipeline.names_of(job_id), "the fence")
        pipeline.deliver()
        await wait_until(lambda: "fail" in pipeline.names_of(job_id), "the takeover")
        pipeline.deliver()
        assert pipeline.table[job_id].status is JobStatus.FAILED

    run(scenario)


def test_a_lost_workers_job_is_fenced_then_failed_once(world: Any) -> None:
    async def scenario() -> None:
        runner, pipeline = world.runner, world.pipeline
        job_id = running_elsewhere(pipeline, 2, progress=40)
        train = submit(pipeline, 3, kind="train")
        pipeline.publish({"command": "start", "job_id": train, "timestamp": time.time()})
        pipeline.deliver()
        await runner.tick()
        await wait_until(lambda: pipeline.names_of(job_id)[-1] == "progress"
                         and len(pipeline.names_of(job_id)) == 4, "the fence")  # fmt: skip
        fence = pipeline.commands()[-1]
        assert fence["progress"] == 40
        for _ in range(50):
            await asyncio.sleep(0)
        assert "fail" not in pipeline.names_of(job_id)  # not before the fence is applied
        pipeline.deliver()
        await wait_until(lambda: "fail" in pipeline.names_of(job_id), "the takeover")
        pipeline.deliver()
        failed = pipeline.table[job_id]
        assert failed.status is JobStatus.FAILED and failed.progress == 40
        assert WORKER in (failed.error or "")
        await runner.tick()
        await runner.tick()
        assert pipeline.names_of(job_id) == ["submit", "start", "progress", "progress", "fail"]
        assert pipeline.names_of(train) == ["submit", "start"]  # an engine's job: not ours
        assert all(rule == "applied" for _, rule in pipeline.log)

    run(scenario)


def test_no_takeover_when_the_lost_workers_last_command_ended_the_job(world: Any) -> None:
    async def scenario() -> None:
        runner, pipeline = world.runner, world.pipeline
        job_id = running_elsewhere(pipeline, 2)
        await runner.tick()
        await wait_until(lambda: len(pipeline.names_of(job_id)) == 4, "the fence")
        # The lost worker's complete was on its way, ahead of the fence.
        pipeline.producer.sent.insert(-1, jobs_agent_sent(
            {"command": "complete", "job_id": job_id, "timestamp": time.time(),
             "metrics": "{}"}))  # fmt: skip
        pipeline.deliver()
        await wait_until(lambda: not runner.tasks, "the takeover given up")
        await runner.tick()
        assert pipeline.table[job_id].status is JobStatus.COMPLETED
        assert pipeline.names_of(job_id) == ["submit", "start", "progress", "complete", "progress"]

    run(scenario)


@pytest.mark.parametrize("keeps_partition", [True, False])
def test_a_rebalance_holds_commands_until_the_assignment(world: Any, keeps_partition: bool) -> None:
    async def scenario() -> None:
        runner, pipeline = world.runner, world.pipeline
        job_id = submit(pipeline, 1, spec=orjson.dumps({"min_duration_s": 0.3}).decode())
        await runner.tick()
        await wait_until(lambda: "start" in pipeline.names_of(job_id), "the start")
        pipeline.deliver()
        await runner.revoked()
        assert world.producer.flushes == 1
        await asyncio.sleep(0.5)  # the job's own minimum duration passes while held
        assert pipeline.names_of(job_id) == ["submit", "start"]
        owned = {0, 1, 2, 3} if keeps_partition else {0, 2, 3}
        await runner.assigned(owned)
        if keeps_partition:
            await wait_until(lambda: "complete" in pipeline.names_of(job_id), "the complete")
            assert pipeline.names_of(job_id) == ["submit", "start", "progress", "complete"]
        else:
            assert runner.tasks == {}
            for _ in range(50):
                await asyncio.sleep(0)
            assert pipeline.names_of(job_id) == ["submit", "start"]  # never heard of again

    run(scenario)


def test_a_job_cancelled_while_running_stops_running(world: Any) -> None:
    async def scenario() -> None:
        runner, pipeline = world.runner, world.pipeline
        job_id = submit(pipeline, 1, spec='{"min_duration_s": 60}')
        await runner.tick()
        await wait_until(lambda: "start" in pipeline.names_of(job_id), "the start")
        pipeline.deliver()
        await wait_until(lambda: "progress" in pipeline.names_of(job_id), "the progress")
        pipeline.publish({"command": "cancel", "job_id": job_id, "timestamp": time.time()})
        pipeline.deliver()
        await wait_until(lambda: not runner.tasks, "the run stopped")
        await runner.tick()
        assert pipeline.table[job_id].status is JobStatus.CANCELLED
        assert pipeline.names_of(job_id) == ["submit", "start", "progress", "cancel"]

    run(scenario)


def test_a_bad_min_duration_fails_the_job_saying_why(world: Any) -> None:
    async def scenario() -> None:
        runner, pipeline = world.runner, world.pipeline
        job_id = submit(pipeline, 1, spec='{"min_duration_s": -5}')
        await runner.tick()
        await wait_until(lambda: "start" in pipeline.names_of(job_id), "the start")
        pipeline.deliver()
        await wait_until(lambda: "fail" in pipeline.names_of(job_id), "the fail")
        pipeline.deliver()
        assert "spec.min_duration_s must be" in (pipeline.table[job_id].error or "")

    run(scenario)
