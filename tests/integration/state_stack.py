"""The state end-to-end tests' harness (tests/integration/test_state_end_to_end.py): a
stack of real worker processes on its own topics, what was published to it, waits on
its readiness, and the comparisons of its views with the offline computation."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.kafka.admin import ensure_topics
from tests.integration import state_input as si
from tests.integration.kafka_io import produce_all, read_until
from tests.worker_process import WorkerProcess, free_port

TOKEN = f"token-{uuid.uuid4().hex}"
SESSIONS = 300
EXECUTIONS = 1500
EXPORT_SAMPLE = 40


@dataclass
class Stack:
    """The module's workers, what was published to them, and what it must give."""

    env: dict[str, str]
    settings: Settings
    names: TopicNames
    tmp: Path
    rng: random.Random
    t0: float
    jobs: si.Lives
    job_labels: dict[str, str]
    sessions: si.Lives
    engines: si.Lives
    secret_inputs: set[str] = field(default_factory=set)
    workers: list[WorkerProcess] = field(default_factory=list)
    started: int = 0
    # Jobs submitted through POST /jobs: id -> kind.
    posted: dict[str, str] = field(default_factory=dict)

    @property
    def worker(self) -> WorkerProcess:
        return self.workers[0]

    @property
    def base(self) -> str:
        return self.worker.url

    def start_worker(self, port: int | None = None) -> WorkerProcess:
        env = dict(self.env)
        if port is not None:
            env["ENGINESTREAM_WEB_PORT"] = str(port)
        self.started += 1
        worker = WorkerProcess(env, log_path=self.tmp / f"worker-{self.started}.log").start()
        self.workers.append(worker)
        worker.wait_ready()
        return worker

    def publish(self, messages: list[si.Message]) -> None:
        for topic, value, *_ in messages:
            if si.SECRET.encode() in value:
                self.secret_inputs.add(topic)
        asyncio.run(produce_all(self.settings.bootstrap_servers, messages))

    def views_ready(self, timeout: float = 90.0) -> None:
        """Every worker is ready (every topic assigned, tables recovered) and answers the
        views (not 503 while partitions move)."""
        for worker in self.workers:
            wait_for_view(worker.url, "/health", timeout)
            wait_for_view(worker.url, "/jobs", timeout)
        self.check_alive()

    def check_alive(self) -> None:
        """Fail at once (with the log's tail) when a worker exited: input must never
        stop a worker."""
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is not None:
                log = worker.log_path.read_text(errors="replace") if worker.log_path else ""
                tail = "\n".join(log.splitlines()[-25:])
                raise AssertionError(f"worker exited with code {worker.proc.returncode}:\n{tail}")

    def settle(self, timeout: float = 120.0) -> None:
        """Wait until the group has committed every input and typed message (Faust
        flushes what a message produced, dead letters and changelog included, before
        it commits it), then until the views answer."""
        bootstrap, group = self.settings.bootstrap_servers, self.settings.app_id
        typed = [self.names.typed[t] for t in ("ml_job_command", "session_event",
                                                "engine_event")]

        behind: dict[str, int] = {}

        def caught_up() -> bool:
            self.check_alive()
            # Inputs first: once they are committed, all they produced is on the
            # typed topics, whose lag is read after.
            behind.clear()
            behind.update(asyncio.run(si.lagging(bootstrap, group, self.names.inputs())))
            if not behind:
                behind.update(asyncio.run(si.lagging(bootstrap, group, typed)))
            return not behind

        try:
            si.wait_for(caught_up, timeout, "the group's committed offsets reach the ends")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; behind: {behind}") from None
        self.views_ready()

    def wait_applied(self, tables: list[str], timeout: float = 60.0) -> None:
        """Wait until each table's changelog records, for every partition of its
        source topic, the last offset as applied (streams.agents.keyed_state)."""
        bootstrap = self.settings.bootstrap_servers
        sources = {"sessions": "session_event", "jobs": "ml_job_command",
                   "engine-status": "engine_event"}

        def applied() -> bool:
            for table in tables:
                topic = self.names.typed[sources[table]]
                ends = asyncio.run(si.end_offsets(bootstrap, topic))
                saved = asyncio.run(si.applied_offsets(
                    bootstrap, f"{self.settings.app_id}-{table}-changelog"))
                if any(end and saved.get(p, -1) != end - 1 for p, end in ends.items()):
                    return False
            return True

        si.wait_for(applied, timeout, f"{tables} applied and in the changelog")

    def dead_letters(self) -> list[dict[str, Any]]:
        records = asyncio.run(read_until(
            self.settings.bootstrap_servers, [self.names.dead_letter], lambda r: True, 60
        ))
        return [orjson.loads(r.value) for r in records]


def wait_for_view(base: str, path: str, timeout: float) -> None:
    def answers() -> bool:
        try:
            return si.get(base, path)[0] == 200
        except OSError:
            return False

    si.wait_for(answers, timeout, f"{base}{path} answering 200")


def state_env(kafka_bootstrap: str, tmp: Path) -> dict[str, str]:
    """Like the isolated_env fixture (own prefix, app id, data dir, web port), for the
    module, plus the API token."""
    tag = uuid.uuid4().hex[:10]
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ENGINESTREAM_TOPIC_PREFIX": f"t{tag}.",
        "ENGINESTREAM_APP_ID": f"es-{tag}",
        "ENGINESTREAM_DATA_DIR": str(tmp / "data"),
        "ENGINESTREAM_WEB_PORT": str(free_port()),
        "ENGINESTREAM_LOG_LEVEL": "warning",
        "ENGINESTREAM_API_TOKEN": TOKEN,
        "ENGINESTREAM_WINDOW_IDLE_TIMEOUT": "2",
        # The scripts' clocks run up to an hour past the wall clock (later rounds are
        # later in event time): within the allowed skew, not future_timestamp letters.
        "ENGINESTREAM_MAX_FUTURE_SKEW": "7200",
    }



@contextlib.contextmanager
def running_stack(kafka_bootstrap: str, tmp: Path) -> Iterator[Stack]:
    """One worker on its own topics, group and data dir, with the scripted jobs, the
    generated sessions, the engines' lifecycles and the executions published and
    settled; every worker of the stack stopped at the end."""
    env = state_env(kafka_bootstrap, tmp)
    settings = Settings.from_env(env)
    names = TopicNames(settings.topic_prefix)
    asyncio.run(ensure_topics(settings))
    rng = random.Random(20261126)
    t0 = float(int(time.time()) - 600)  # recent: open sessions stay far from idle expiry
    jobs, labels = si.job_lives(rng, names, t0)
    sessions = si.session_lives(rng, names, t0, SESSIONS)
    engines = si.engine_lives(rng, names, t0)
    stack = Stack(env, settings, names, tmp, rng, t0, jobs, labels, sessions, engines)
    messages = si.merge(
        rng,
        jobs.messages(rng, names),
        sessions.messages(rng, names),
        engines.messages(rng, names),
        si.execution_messages(rng, names, EXECUTIONS),
    )
    try:
        stack.start_worker()
        stack.publish(messages)
        stack.settle()
        yield stack
    finally:
        for worker in stack.workers:
            worker.stop()


# ---- comparing the views with the offline computation --------------------------------


def mismatches(found: list[tuple[str, Any, Any]]) -> str:
    shown = "\n".join(f"  {path}:\n    got  {got!r}\n    want {want!r}" for path, got, want in
                      found[:5])
    return f"{len(found)} view(s) differ from the offline computation:\n{shown}"


def check_jobs(base: str, stack: Stack) -> None:
    want = si.expected_jobs(stack.jobs)
    wrong = []
    for job_id, job in want.items():
        status, body = si.get(base, f"/jobs/{job_id}")
        if job is None:
            if status != 404 or "error" not in body:
                wrong.append((f"/jobs/{job_id}", (status, body), 404))
        elif (status, body) != (200, si.plain(job.to_json())):
            wrong.append((f"/jobs/{job_id}", (status, body), si.plain(job.to_json())))
    assert not wrong, mismatches(wrong)


def check_sessions(base: str, stack: Stack, exports: int = EXPORT_SAMPLE) -> None:
    want = si.expected_sessions(stack.sessions)
    wrong = []
    for sid, session in want.items():
        status, body = si.get(base, f"/sessions/{sid}")
        if (status, body) != (200, si.plain(session.to_json())):
            wrong.append((f"/sessions/{sid}", (status, body), session.to_json()))
    sample = [s for s in want if s.startswith("sess-edge")]
    sample += random.Random(len(want)).sample(sorted(want), min(exports, len(want)))
    for sid in sample:
        status, body = si.get(base, f"/sessions/{sid}/export")
        export = si.plain(want[sid].export())
        if (status, body) != (200, export):
            wrong.append((f"/sessions/{sid}/export", (status, body), export))
    assert not wrong, mismatches(wrong)


def check_engines(base: str, stack: Stack) -> None:
    wrong = []
    for engine, status_want in si.expected_engines(stack.engines).items():
        status, body = si.get(base, f"/engines/{engine}/status")
        if status_want is None:
            if status != 404:
                wrong.append((f"/engines/{engine}/status", (status, body), 404))
        elif (status, body) != (200, si.plain(status_want.to_json())):
            wrong.append((f"/engines/{engine}/status", (status, body), status_want.to_json()))
    assert not wrong, mismatches(wrong)


# ---- asking the workers ---------------------------------------------------------------


def job_ids_of(base: str, query: str = "") -> list[str]:
    status, body = si.get(base, f"/jobs{query}")
    assert status == 200, body
    assert body["count"] == len(body["jobs"])
    return [j["id"] for j in body["jobs"]]


def post(base: str, path: str, body: bytes | None = None,
         token: str | None = TOKEN) -> tuple[int, Any]:
    status, raw = si.http(base + path, "POST", body, token)
    return status, orjson.loads(raw) if raw else None



def scrape(url: str, accept: str | None = None) -> tuple[str, str]:
    """GET /metrics of the worker at `url`: (content type, text)."""
    request = urllib.request.Request(url + "/metrics")
    if accept is not None:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Content-Type"], response.read().decode()



def assigned(worker: WorkerProcess, topic: str) -> set[int]:
    status, body = si.get(worker.url, "/health")
    if status != 200:
        return set()
    return {int(tp.rsplit(":", 1)[1]) for tp in body["assigned"]
            if tp.rsplit(":", 1)[0] == topic}



def snapshot(stack: Stack) -> dict[str, tuple[int, Any]]:
    """Every job, session (and a sample of exports) and engine status as the views
    answer, plus the job list."""
    paths = ["/jobs", "/jobs?status=completed&kind=train"]
    paths += [f"/jobs/{j}" for j in [*stack.jobs.docs, *stack.posted]]
    paths += [f"/sessions/{s}" for s in stack.sessions.docs]
    paths += [f"/sessions/{s}/export" for s in sorted(stack.sessions.docs)[:50]]
    paths += [f"/engines/{e}/status" for e in stack.engines.docs]
    return {path: si.get(stack.base, path) for path in paths}


def kill(stack: Stack) -> None:
    """SIGKILL the worker, as a crash would."""
    killed = stack.workers.pop(0)
    killed.kill()
    assert killed.proc is not None and killed.proc.returncode == -9


def replace(stack: Stack) -> None:
    """Start a new worker with the killed one's environment, in its place."""
    new = stack.start_worker()
    stack.workers.remove(new)
    stack.workers.insert(0, new)


