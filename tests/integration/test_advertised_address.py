"""Three workers bound to every interface find each other at the addresses they advertise.

Each worker binds 0.0.0.0 on its own port and advertises its own loopback address
(ENGINESTREAM_WEB_ADVERTISED_URL=http://127.0.0.2:port, .3, .4: Linux routes all of
127/8 to lo), as containers or hosts would advertise theirs; one consumer group, reads
behind the token (ENGINESTREAM_API_TOKEN_FOR_READS). They get events of every kind that
has a view — executions, comparisons, lifecycle events, device sessions, job commands,
and jobs submitted with POST /jobs to each worker. Then:

* the group's directory (Faust's /router/: what fan-out and forwarding use) names
  exactly the three advertised URLs and splits the partitions between them, and each
  worker's /health names its own;
* every view answers the same from each worker's advertised address — the lists
  gathered from every worker, and the keyed views for keys another worker owns
  (forwarded to it) — and the keyed records equal the offline fold of their events;
  only `as_of`, the wall-clock time an answer was made, differs between answers;
* reads are refused without the token (401) and with a wrong one (403), by the worker
  asked and by the owner a keyed view is forwarded to, and served with it, forwarding
  and fan-out included; /health stays open; no answer holds the token.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.jobs import JobStatus
from streams.kafka.admin import ensure_topics
from streams.kafka.fleet import Fleet
from streams.kafka.partitioner import partition_for
from tests.integration import state_input as si
from tests.integration.kafka_io import produce_all
from tests.worker_process import WorkerProcess, free_port

pytestmark = pytest.mark.integration

TOKEN = f"reads-{uuid.uuid4().hex}"
ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
# Fields that legitimately differ between two answers of the same view: the wall-clock
# time the answer was made (/engines, /engines/{id}/windows).
PER_ANSWER = ("as_of",)
# Fields of /health that differ by worker: its own partitions and address.
PER_WORKER = ("assigned", "advertised_url")
# Keyed views by table: the table whose owner answers them.
TABLES = ("jobs", "sessions", "engine-status", "windows")


@dataclass
class Group:
    """The three workers, their advertised URLs, and what was published to them."""

    settings: Settings
    names: TopicNames
    workers: list[WorkerProcess]
    urls: list[str]
    jobs: si.Lives
    sessions: si.Lives
    engines: si.Lives
    execution_engines: set[str]
    comparisons: int
    posted: list[str] = field(default_factory=list)
    # The directory once the partitions are shared (advertised URL -> topic -> partitions).
    shared: dict[str, dict[str, set[int]]] = field(default_factory=dict)
    # Every body read, to look for the token in.
    bodies: list[bytes] = field(default_factory=list)

    def read(self, url: str, token: str | None = TOKEN) -> tuple[int, Any]:
        """GET `url`: (status, decoded JSON, or the text of an answer that is not JSON)."""
        status, body = si.http(url, token=token)
        self.bodies.append(body)
        try:
            return status, orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            return status, body.decode(errors="replace")

    def directory(self) -> dict[str, dict[str, set[int]]] | None:
        """The group's directory as every worker's /router/ has it (advertised URL ->
        changelog topic -> partitions); None until all three answer the same."""
        maps = []
        for url in self.urls:
            status, body = self.read(f"{url}/router/")
            if status != 200 or not isinstance(body, dict):
                return None
            maps.append({host.rstrip("/"): {t: set(p) for t, p in topics.items()}
                         for host, topics in body.items()})
        return maps[0] if all(m == maps[0] for m in maps) else None

    def owner(self, table: str, key: str) -> str:
        """The advertised URL of the worker that owns `key` of `table`."""
        topic = f"{self.settings.app_id}-{table}-changelog"
        partition = partition_for(key.encode(), self.settings.partitions)
        [owner] = [h for h, topics in self.shared.items() if partition in topics.get(topic, ())]
        return owner


def started(env: dict[str, str], tmp: Path, n: int) -> tuple[WorkerProcess, str]:
    """Worker n bound to 0.0.0.0 and advertising ADDRESSES[n]; answers its URL."""
    port = free_port()
    url = f"http://{ADDRESSES[n]}:{port}"
    worker_env = {**env, "ENGINESTREAM_WEB_PORT": str(port),
                  "ENGINESTREAM_WEB_ADVERTISED_URL": url}
    return WorkerProcess(worker_env, log_path=tmp / f"worker-{n}.log").start(), url


def comparison_messages(rng: random.Random, names: TopicNames, count: int) -> list[si.Message]:
    """`count` comparisons (training decisions), in batches on engine.ingest."""
    fleet = Fleet(rng=rng, engines=5)
    docs = [fleet.comparison() for _ in range(count)]
    return [(names.ingest, orjson.dumps(docs[i : i + 20]), [(si.HEADER, b"comparison_result")],
             None, i // 20 % si.PARTITIONS) for i in range(0, count, 20)]


def execution_engines(messages: list[si.Message]) -> set[str]:
    return {doc["engine_id"] for _, value, *_ in messages for doc in orjson.loads(value)}


@pytest.fixture(scope="module")
def group(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Group]:
    tmp = tmp_path_factory.mktemp("advertised")
    tag = uuid.uuid4().hex[:10]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ENGINESTREAM_TOPIC_PREFIX": f"t{tag}.",
        "ENGINESTREAM_APP_ID": f"es-{tag}",
        "ENGINESTREAM_DATA_DIR": str(tmp / "data"),
        "ENGINESTREAM_LOG_LEVEL": "warning",
        "ENGINESTREAM_WEB_HOST": "0.0.0.0",
        "ENGINESTREAM_API_TOKEN": TOKEN,
        "ENGINESTREAM_API_TOKEN_FOR_READS": "true",
        # Watermarks stay where the events put them: the views do not move while read.
        "ENGINESTREAM_WINDOW_IDLE_TIMEOUT": "3600",
        "ENGINESTREAM_MAX_FUTURE_SKEW": "7200",
    }
    settings = Settings.from_env(env)
    names = TopicNames(settings.topic_prefix)
    asyncio.run(ensure_topics(settings))
    rng = random.Random(20261203)
    t0 = float(int(time.time()) - 600)
    jobs = si.fleet_jobs(rng, names, t0, 12)
    sessions = si.session_lives(rng, names, t0, 24)
    engines = si.engine_lives(rng, names, t0)
    executions = si.execution_messages(rng, names, 400)
    comparisons = comparison_messages(rng, names, 60)
    asyncio.run(produce_all(settings.bootstrap_servers, si.merge(
        rng, jobs.messages(rng, names), sessions.messages(rng, names),
        engines.messages(rng, names), executions, comparisons)))
    launched = [started(env, tmp, n) for n in range(len(ADDRESSES))]
    found = Group(settings, names, [w for w, _ in launched], [u for _, u in launched],
                  jobs, sessions, engines, execution_engines(executions), 60)
    try:
        for worker in found.workers:
            worker.wait_ready()
        for url in found.urls:  # a job submitted to each worker, at its advertised address
            status, body = si.http(f"{url}/jobs", "POST",
                                   orjson.dumps({"kind": "backfill", "target": url}), TOKEN)
            assert status == 202, body
            found.posted.append(orjson.loads(body)["id"])
        settle(found)
        yield found
    finally:
        for worker in found.workers:
            worker.stop()


def settle(group: Group, timeout: float = 90.0) -> None:
    """Wait until the three workers share the partitions, the group has committed
    everything published, and every worker answers the views."""
    jobs_changelog = f"{group.settings.app_id}-jobs-changelog"

    def shared() -> bool:
        check_alive(group)
        directory = group.directory()
        if directory is None or len(directory) != len(group.urls):
            return False
        group.shared = directory
        return all(topics.get(jobs_changelog) for topics in directory.values())

    si.wait_for(shared, timeout, "the three workers sharing the partitions")
    # What fan-out and forwarding use: an address a peer cannot reach (a wildcard, a
    # bind address) would make every gathered or forwarded view a 503.
    assert set(group.shared) == set(group.urls), (
        f"the group knows the workers as {sorted(group.shared)}, "
        f"not at the addresses they advertise {sorted(group.urls)}")
    bootstrap, app_id = group.settings.bootstrap_servers, group.settings.app_id
    typed = [group.names.typed[t] for t in ("engine_execution", "comparison_result",
                                             "engine_event", "session_event", "ml_job_command")]
    si.wait_for(lambda: not asyncio.run(si.lagging(bootstrap, app_id,
                                                   [*group.names.inputs(), *typed])),
                timeout, "the group's committed offsets at the ends")
    last: dict[str, tuple[int, Any]] = {}

    def answering() -> bool:
        # Ready first: every topic assigned and the tables recovered.
        last.update({url: group.read(f"{url}/health", token=None) for url in group.urls})
        if any(status != 200 for status, _ in last.values()):
            return False
        last.update({url: group.read(f"{url}/jobs") for url in group.urls})
        return all(status == 200 for status, _ in last.values())

    try:
        si.wait_for(answering, timeout, "every worker answering the views")
    except TimeoutError as exc:  # a peer that failed is named in the 503's error
        raise AssertionError(f"{exc}: {[(s, str(b)[:300]) for s, b in last.values()]}") from None


def check_alive(group: Group) -> None:
    for worker in group.workers:
        if worker.proc is not None and worker.proc.poll() is not None:
            tail = worker.log_path.read_text(errors="replace")[-3000:] if worker.log_path else ""
            raise AssertionError(f"a worker exited with {worker.proc.returncode}:\n{tail}")


def without(body: Any, fields: tuple[str, ...]) -> Any:
    return {k: v for k, v in body.items() if k not in fields} if isinstance(body, dict) else body


def alike(group: Group, path: str, timeout: float = 60.0) -> tuple[int, Any]:
    """The answer to `path`, the same from every worker's advertised address but for
    PER_ANSWER fields (asked again, to the deadline, while they differ: a view may be
    between two batches of the app's own job runs; and while any answers 503, which
    a worker says while the group rebalances, by contract "try again later")."""
    deadline = time.monotonic() + timeout
    while True:
        answers = [group.read(url + path) for url in group.urls]
        answers = [(status, without(body, PER_ANSWER)) for status, body in answers]
        settled = all(status != 503 for status, _ in answers)
        if all(a == answers[0] for a in answers) and (settled or time.monotonic() > deadline):
            return answers[0]
        if time.monotonic() > deadline:
            pairs = zip(group.urls, answers, strict=True)
            shown = "\n".join(f"  {url}: {a!r:.300}" for url, a in pairs)
            raise AssertionError(f"{path} differs between the workers:\n{shown}")
        time.sleep(0.2)


# ---- 1. the directory ---------------------------------------------------------------------


def test_the_group_knows_each_worker_by_its_advertised_address(group: Group) -> None:
    directory = group.directory()
    assert directory == group.shared and set(directory) == set(group.urls), directory
    assert all(url.split(":")[1].lstrip("/") in ADDRESSES for url in directory)
    for topic in {t for topics in directory.values() for t in topics}:
        owned = [topics.get(topic, set()) for topics in directory.values()]
        assert sum(len(p) for p in owned) == len(set().union(*owned)), (topic, owned)
    for url in group.urls:
        status, health = group.read(f"{url}/health", token=None)
        assert status == 200 and health["ready"], health
        assert health["advertised_url"] == url


# ---- 2. every view alike from every worker -----------------------------------------------


def test_every_view_answers_the_same_from_every_worker(group: Group) -> None:
    want_jobs = si.expected_jobs(group.jobs)
    want_sessions = si.expected_sessions(group.sessions)
    want_engines = si.expected_engines(group.engines)

    # Gathered from every worker.
    status, jobs = alike(group, "/jobs")
    assert status == 200
    assert {j["id"] for j in jobs["jobs"]} == set(want_jobs) | set(group.posted)
    assert [j["status"] for j in jobs["jobs"] if j["id"] in group.posted] == ["queued"] * 3
    status, completed = alike(group, "/jobs?status=completed")
    assert status == 200 and completed["count"] == sum(
        1 for j in want_jobs.values() if j is not None and j.status is JobStatus.COMPLETED)
    status, engines = alike(group, "/engines")
    assert status == 200 and set(engines["engines"]) == group.execution_engines
    status, training = alike(group, "/training/stats")
    assert status == 200 and sum(training["decisions"].values()) == group.comparisons

    # Keyed, answered by the owner: from the other two workers, forwarded.
    keyed: list[tuple[str, str, str, Any]] = []  # (table, key, path, record or None)
    keyed += [("jobs", j, f"/jobs/{j}", si.plain(job.to_json()) if job else None)
              for j, job in want_jobs.items()]
    keyed += [("sessions", s, f"/sessions/{s}", si.plain(session.to_json()))
              for s, session in want_sessions.items()]
    keyed += [("sessions", s, f"/sessions/{s}/export", si.plain(want_sessions[s].export()))
              for s in sorted(want_sessions)[:10]]
    keyed += [("engine-status", e, f"/engines/{e}/status",
               si.plain(engine.to_json()) if engine else None)
              for e, engine in want_engines.items()]
    keyed += [("windows", e, f"/engines/{e}/windows", None) for e in group.execution_engines]
    keyed += [("jobs", "no-such-job", "/jobs/no-such-job", None)]
    wrong: list[tuple[str, Any, Any]] = []
    for _, _, path, record in keyed:
        status, body = alike(group, path)
        if path.endswith("/windows"):
            if status != 200 or not body["windows"]:
                wrong.append((path, status, body))
        elif (status, body if status == 200 else None) != ((200, record) if record else
                                                            (404, None)):
            wrong.append((path, (status, body), record))
    assert not wrong, f"{len(wrong)} keyed views wrong, e.g. {wrong[:3]!r:.2000}"

    # Each worker answered keys of every table that another worker owns.
    forwarded = {(url, table) for table, key, _, _ in keyed
                 for url in group.urls if group.owner(table, key) != url}
    assert forwarded == {(url, table) for url in group.urls for table in TABLES}

    # The partitions stayed where they were while the views were read.
    assert group.directory() == group.shared
    # The views of the worker itself differ only where they should.
    healths = [without(group.read(f"{u}/health")[1], PER_WORKER) for u in group.urls]
    assert all(h == healths[0] for h in healths), healths


# ---- 3. reads behind the token ------------------------------------------------------------


def test_reads_need_the_token_and_peers_pass_it_on(group: Group) -> None:
    for url in group.urls:
        for path in ("/jobs", "/engines", "/stats", "/metrics", "/router/", "/table/"):
            assert group.read(url + path, token=None)[0] == 401, (url, path)
            assert group.read(url + path, token="wrong")[0] == 403, (url, path)
        assert group.read(f"{url}/health", token=None)[0] == 200
        assert group.read(f"{url}/dashboard", token=None)[0] == 200

    # A keyed view asked of a worker that does not own the key: refused there without
    # the token; with it, forwarded to the owner, which refuses it without the token
    # too, so the forwarded request carried it.
    # Every job has one owner among three workers, so another worker is always there to ask.
    job = group.posted[0]
    owner = group.owner("jobs", job)
    asked = next(url for url in group.urls if url != owner)
    assert group.read(f"{asked}/jobs/{job}", token=None)[0] == 401
    assert group.read(f"{owner}/jobs/{job}", token=None)[0] == 401
    status, record = group.read(f"{asked}/jobs/{job}")
    assert status == 200 and record["id"] == job
    # Gathering asks the other workers with the caller's token: all jobs, no 503.
    status, jobs = group.read(f"{asked}/jobs")
    assert status == 200 and set(group.posted) <= {j["id"] for j in jobs["jobs"]}

    # No answer holds the token, whatever was asked.
    for url in group.urls:
        for path in ("/health", "/stats", "/metrics", "/windows/stats", "/router/", "/table/",
                     "/training/stats", "/dashboard", "/dashboard/static/dashboard.js"):
            assert group.read(url + path)[0] == 200, (url, path)
    assert group.bodies and not [b for b in group.bodies if TOKEN.encode() in b]


# ---- 4. the dashboard with the token --------------------------------------------------------


def test_the_dashboard_reads_with_the_token_of_its_address(group: Group, tmp_path: Path) -> None:
    from tests.integration.test_dashboard import chromium, run_chromium

    browser = chromium()
    page = f"{group.urls[1]}/dashboard"
    with_token = run_chromium(browser, tmp_path / "with", "--dump-dom", f"{page}#token={TOKEN}")
    assert 'data-state="live"' in with_token.stdout, with_token.stdout[:2000]
    shown = set(re.findall(r'data-engine="([^"]+)"', with_token.stdout))
    assert group.execution_engines <= shown
    assert TOKEN not in with_token.stdout

    refused = run_chromium(browser, tmp_path / "without", "--dump-dom", page)
    assert 'data-state="offline"' in refused.stdout and "API token needed" in refused.stdout
    assert not re.findall(r'data-engine="([^"]+)"', refused.stdout)
