"""The processes of one run: the system under test (the worker, Quix, the plain loop),
the producer, and the marks they print on their standard output."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common.machine import read_text
from bench.common.processes import health_ready, start_child, stop_child
from tests.worker_process import WorkerProcess

MARKS = ("READY", "FIRST", "START", "DONE")


@dataclass
class Child:
    """A child started with `python -m`, the marks it printed (first of each) and the
    other lines (its last words)."""

    proc: asyncio.subprocess.Process
    marks: dict[str, list[str]] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, module: str, args: list[str], log: Path, env: dict[str, str]) -> Child:
        """Start the child and read its marks in a task."""
        child = cls(await start_child(module, args, log, {**os.environ, **env}))
        child.reader = asyncio.create_task(child._read())
        return child

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            parts = line.decode(errors="replace").split()
            if parts and parts[0] in MARKS:
                self.marks.setdefault(parts[0], parts[1:])
            else:
                self.lines.append(line.decode(errors="replace").rstrip())

    def at(self, what: str) -> float | None:
        """The epoch time of mark `what`, if printed."""
        found = self.marks.get(what)
        return float(found[0]) if found else None

    def alive(self) -> bool:
        """Whether the child still runs."""
        return self.proc.returncode is None

    def go(self) -> None:
        """Write the go line to its stdin (the producer waits for it)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")

    async def stop(self) -> None:
        """Terminate it and wait for its reader."""
        await stop_child(self.proc)
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)


async def start_producer(args: list[str], log: Path, env: dict[str, str]) -> Child:
    """The producer child (bench.pipeline.produce), its stdin a pipe for the go."""
    with open(log, "wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m", "bench.pipeline.produce", *args,
            env={**os.environ, **env}, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=err,
        )  # fmt: skip
    child = Child(proc)
    child.reader = asyncio.create_task(child._read())
    return child


def peak_rss_mb(pid: int | None) -> float | None:
    """VmHWM of process `pid` (its peak resident memory) in MiB, if readable."""
    for line in read_text(f"/proc/{pid}/status").splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


async def wait_worker_ready(worker: WorkerProcess, deadline: float) -> float:
    """Poll /health until ready; answer when (epoch). Raises if it dies or is late."""
    assert worker.proc is not None
    while not await health_ready(worker):
        if worker.proc.poll() is not None:
            raise RuntimeError(f"worker exited with code {worker.proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError("worker not ready in time")
        await asyncio.sleep(0.05)
    return time.time()


async def wait_mark(child: Child, what: str, deadline: float) -> float:
    """Wait until `child` printed mark `what`; answer its time."""
    while (at := child.at(what)) is None:
        if not child.alive() or (child.reader is not None and child.reader.done()):
            await asyncio.sleep(0.2)
            raise RuntimeError(f"child exited before {what}: {child.lines[-5:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} in time")
        await asyncio.sleep(0.02)
    return at
