"""`enginestream --log-level info worker` with ENGINESTREAM_LOG_FORMAT=json: every
line on stderr, faust's, mode's and aiokafka's included, from the start to the stop,
is a JSON object with the fields a log pipeline reads, at the level the option asked
for (the variable says warning); a record about a partition names it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.kafka.fleet import Fleet
from tests.integration.kafka_io import produce_all
from tests.integration.state_input import wait_for
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

KEYS = {"ts", "level", "logger", "message", "worker"}


class JsonLoggingWorker(WorkerProcess):
    """A worker given --log-level on the command line, its stdout and stderr apart."""

    def __init__(self, env: dict[str, str], directory: Path) -> None:
        super().__init__(env, directory / "stderr.log")
        self.stdout_path = directory / "stdout.log"

    def start(self) -> JsonLoggingWorker:
        """Start the worker (does not wait; see wait_ready)."""
        assert self.log_path is not None
        with open(self.stdout_path, "wb") as out, open(self.log_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "--log-level", "info", "worker"],
                env=self.env, stdout=out, stderr=err, start_new_session=True,
            )  # fmt: skip
        return self

    def records(self) -> list[dict[str, Any]]:
        """The complete lines of stderr so far, each decoded (fails on one that is not
        JSON)."""
        assert self.log_path is not None
        text = self.log_path.read_bytes()
        lines = text.split(b"\n")[:-1]  # the last may be still being written
        return [orjson.loads(line) for line in lines]


def test_the_worker_writes_only_json_lines(isolated_env: dict[str, str], tmp_path: Path) -> None:
    env = {**isolated_env, "ENGINESTREAM_LOG_FORMAT": "json"}
    assert env["ENGINESTREAM_LOG_LEVEL"] == "warning"  # the option is what says info
    settings = Settings.from_env(env)
    names = TopicNames(settings.topic_prefix)
    worker = JsonLoggingWorker(env, tmp_path).start()
    try:
        worker.wait_ready(timeout=60)
        event = Fleet().execution()
        asyncio.run(produce_all(settings.bootstrap_servers, [
            (names.ingest, orjson.dumps(event), [("event-type", b"engine_execution")], None)]))

        def partition_record() -> bool:
            return any(r["logger"] == "streams.agents.window_agent" and "partition" in r
                       for r in worker.records())  # fmt: skip

        # The window agent takes over the partition of the event's windows.
        wait_for(partition_record, 30, "the window agent's record of its partition")
    finally:
        code = worker.stop()
    assert code == 0, f"the worker exited with {code}{worker._tail()}"

    assert worker.stdout_path.read_bytes() == b""
    raw = worker.log_path.read_bytes() if worker.log_path else b""
    assert raw.endswith(b"\n")
    records = worker.records()
    assert len(records) == raw.count(b"\n")
    identity = f"{settings.app_id}@http://127.0.0.1:{settings.web_port}"
    for record in records:
        assert isinstance(record, dict) and set(record) >= KEYS, record
        assert record["worker"] == identity, record
        stamp = datetime.fromisoformat(record["ts"])
        assert stamp.tzinfo == UTC and record["ts"].endswith("Z"), record
        assert record["level"] in ("INFO", "WARNING", "ERROR", "CRITICAL"), record
    # faust's, aiokafka's and ours, at the level of the option, not the variable's
    loggers = {r["logger"].split(".")[0] for r in records if r["level"] == "INFO"}
    assert {"faust", "aiokafka", "streams"} <= loggers, loggers

    windows = [r for r in records if r["logger"] == "streams.agents.window_agent"]
    sources = set(names.typed.values()) | {names.ingest}
    for record in windows:
        assert record["topic"] in sources, record
        assert record["partition"] in range(settings.partitions), record
        assert f"/{record['partition']}:" in record["message"], record
