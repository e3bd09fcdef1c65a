"""Worker and child processes started by a benchmark: their environment, their start
from a bench module, the /health probe, their logs, and their end."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from bench.common import ROOT
from streams.config.settings import Settings
from tests.worker_process import WorkerProcess, free_port


def worker_env(settings: Settings, prefix: str, app_id: str, data_dir: Path) -> dict[str, str]:
    """The environment of a worker on the broker of `settings`, with its topics under
    `prefix`, its own consumer group, data directory and web port."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "ENGINESTREAM_TOPIC_PREFIX": prefix,
        "ENGINESTREAM_APP_ID": app_id,
        "ENGINESTREAM_DATA_DIR": str(data_dir),
        "ENGINESTREAM_WEB_PORT": str(free_port()),
        "ENGINESTREAM_PARTITIONS": str(settings.partitions),
        "ENGINESTREAM_LOG_LEVEL": "warning",
    }


class ModuleWorker(WorkerProcess):
    """A worker started as `python -m <module> <args>`: a bench module that changes
    something in the worker (a probe, an older code path) before running it."""

    def __init__(self, env: dict[str, str], log_path: Path, module: str, args: list[str]) -> None:
        super().__init__(env, log_path)
        self.module = module
        self.args = args

    def start(self) -> ModuleWorker:
        """Start the worker (does not wait)."""
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            env=self.env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self


async def health_ready(worker: WorkerProcess) -> bool:
    """Whether the worker's /health says ready now (no answer: not ready)."""
    try:
        status, body = await asyncio.to_thread(worker.get_json, "/health", 2.0)
    except (OSError, ValueError):
        return False
    return status == 200 and isinstance(body, dict) and bool(body.get("ready"))


async def start_child(
    module: str, args: list[str], log: Path, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    """Start `python -m <module> <args>` with its stdout piped to us (the lines by which
    it reports) and its stderr to `log`."""
    with open(log, "wb") as err:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )


async def stop_child(proc: asyncio.subprocess.Process, timeout: float = 30.0) -> None:
    """Terminate the child if it still runs; kill it if it does not end in `timeout`."""
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()


def tail(log: Path, lines: int = 40) -> str:
    """The last lines of a process's log, to quote in an error."""
    try:
        text = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n--- log tail ---\n" + "\n".join(text)
