"""A job the app runs itself survives the loss of the worker running it.

Two workers; app-run jobs (feature_refresh, drift_compute) are submitted through
POST /jobs with a minimum duration, so that they are still running when the worker
running most of them is killed with SIGKILL. The survivor gets the lost worker's
partitions and ends each of its running jobs `failed`, naming itself (the contract
has no restart of a running job); its own jobs, held through the rebalance, complete.
On the job topic every job has one start and exactly one terminal command, no job
command is a dead letter, and nothing of a lost job is written after the kill.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.kafka.admin import ensure_topics
from tests.integration.kafka_io import read_until
from tests.integration.state_input import get, http, wait_for
from tests.worker_process import WorkerProcess, free_port

pytestmark = pytest.mark.integration

JOBS = 6
MIN_DURATION_S = 15  # long past the kill; the survivor's own jobs take this long
TERMINAL = ("complete", "fail", "cancel")
TOKEN = f"token-{uuid.uuid4().hex}"


def job_status(worker: WorkerProcess, job_id: str) -> dict[str, Any] | None:
    """The job as its owner answers it (through `worker`), or None while unanswered."""
    try:
        status, body = get(worker.url, f"/jobs/{job_id}")
    except OSError:
        return None
    return body if status == 200 and isinstance(body, dict) else None


def local_jobs(worker: WorkerProcess) -> set[str]:
    """Ids of the jobs of the partitions `worker` owns."""
    status, body = get(worker.url, "/jobs?local=1")
    assert status == 200, body
    return {j["id"] for j in body["jobs"]}


def commands_by_job(records: list[Any], job_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """The commands of each job on the job topic, in order (the router packs several
    commands of one partition into one message)."""
    found: dict[str, list[dict[str, Any]]] = {j: [] for j in job_ids}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        doc = orjson.loads(record.value)
        for command in doc if isinstance(doc, list) else [doc]:
            if command["job_id"] in found:
                found[command["job_id"]].append(command)
    return found


def test_jobs_of_a_killed_worker_end_once_taken_over_by_the_survivor(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**isolated_env, "ENGINESTREAM_API_TOKEN": TOKEN}
    settings = Settings.from_env(env)
    names = TopicNames(settings.topic_prefix)
    asyncio.run(ensure_topics(settings))
    workers = [
        WorkerProcess(env, log_path=tmp_path / "a.log").start(),
        WorkerProcess({**env, "ENGINESTREAM_WEB_PORT": str(free_port())},
                      log_path=tmp_path / "b.log").start(),
    ]  # fmt: skip
    try:
        for worker in workers:
            worker.wait_ready()
        wait_for(lambda: all(get(w.url, "/health")[0] == 200 for w in workers), 60,
                 "both workers ready at once")  # fmt: skip

        jobs: dict[str, str] = {}
        for n in range(JOBS):
            kind = ("feature_refresh", "drift_compute")[n % 2]
            body = {"kind": kind, "target": f"t{n}", "spec": {"min_duration_s": MIN_DURATION_S}}
            status, raw = http(workers[0].url + "/jobs", "POST", orjson.dumps(body), TOKEN)
            assert status == 202, raw
            jobs[orjson.loads(raw)["id"]] = kind

        def all_running() -> bool:
            return all((job_status(workers[0], j) or {}).get("status") == "running"
                       for j in jobs)  # fmt: skip

        wait_for(all_running, 60, "every job running")
        owned = [local_jobs(w) for w in workers]
        assert owned[0] | owned[1] == set(jobs) and not owned[0] & owned[1], owned
        victim, survivor = sorted(range(2), key=lambda i: -len(owned[i]))
        lost, kept = owned[victim], owned[survivor]
        killed_at = time.time()
        workers[victim].kill()

        def all_ended() -> bool:
            return all((job_status(workers[survivor], j) or {}).get("status")
                       in ("completed", "failed", "cancelled") for j in jobs)  # fmt: skip

        wait_for(all_ended, 90, "every job ended")
        ended_at = time.time()
        survivor_url = Settings.from_env(workers[survivor].env).advertised_url
        final = {j: job_status(workers[survivor], j) for j in jobs}
        for j in lost:
            record = final[j]
            assert record is not None and record["status"] == "failed", record
            assert "worker lost while running" in record["error"], record
            assert survivor_url in record["error"], (survivor_url, record)
            assert killed_at * 1000 < record["finished_at"] <= ended_at * 1000, record
        for j in kept:
            record = final[j]
            assert record is not None and record["status"] == "completed", record
            assert record["duration_ms"] >= MIN_DURATION_S * 1000, record

        # The job topic: one start and one terminal command per job, the lost jobs'
        # terminal command the survivor's fail; no job command refused.
        typed, dead = names.typed["ml_job_command"], names.dead_letter
        records = asyncio.run(read_until(settings.bootstrap_servers, [typed, dead],
                                         lambda r: True, timeout=30))  # fmt: skip
        commands = commands_by_job([r for r in records if r.topic == typed], set(jobs))
        for j, found in commands.items():
            names_of = [c["command"] for c in found]
            assert names_of.count("submit") == 1 and names_of.count("start") == 1, names_of
            terminal = [c for c in found if c["command"] in TERMINAL]
            assert len(terminal) == 1, names_of
            assert names_of[-1] == terminal[0]["command"], names_of
            if j in lost:
                assert terminal[0]["command"] == "fail", names_of
                assert survivor_url in terminal[0]["error"]
            else:
                assert terminal[0]["command"] == "complete", names_of
        letters = [orjson.loads(r.value) for r in records if r.topic == dead]
        refused = [
            letter for letter in letters if letter.get("event_type") == "ml_job_command"
            and orjson.loads(base64.b64decode(letter["original"])).get("job_id") in jobs
        ]
        assert refused == []
        # No second run: nothing of a lost job is written after the kill.
        for j in lost:
            for path in (settings.data_dir / "features" / j).glob("*"):
                assert path.stat().st_mtime <= killed_at, path
    finally:
        for worker in workers:
            worker.kill()
