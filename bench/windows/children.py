"""The runs of the systems that are not the worker (the plain loops and Quix): each a
child process of this benchmark that reports its own marks on its standard output."""

from __future__ import annotations

import asyncio
import os
import time

from bench.common.cpu import CpuMeter
from bench.common.processes import start_child, stop_child
from bench.windows.results import RunResult, make_result
from bench.windows.topics import wait_committed
from bench.windows.workload import Stage

DEADLINE_S = 900.0


async def run_child(stage: Stage, system: str, rep: int = 0) -> RunResult:
    """Run a baseline or Quix (started through bench.windows.run --child); measure it
    from the lines it prints: READY <t>, FIRST <t>, DONE <t> <events>."""
    settings, shape, topic, tmp = stage.settings, stage.shape, stage.topic, stage.tmp
    # The group name holds the run id (see topics.delete_topics).
    group = f"bw-{system}-r{rep}-{topic.split('.')[0]}"
    log = tmp / f"{system}-{shape}-{rep}.log"
    args = [
        "--child", system,
        "--bootstrap", settings.bootstrap_servers, "--topic", topic,
        "--partitions", str(settings.partitions), "--total", str(stage.work.total),
        "--group", group, "--state-dir", str(tmp / f"state-{system}-{shape}-{rep}"),
        "--shape", shape,
    ]  # fmt: skip
    load_before = os.getloadavg()
    proc = await start_child("bench.windows.run", args, log)
    pids = {system: proc.pid, "broker": stage.broker}
    meter: CpuMeter | None = None  # from READY (or FIRST) on, as for the worker
    marks: dict[str, float] = {}
    done_events = 0
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + DEADLINE_S
        while "DONE" not in marks:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{system} did not finish in {DEADLINE_S}s; log {log}")
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), min(left, 1.0))
            except TimeoutError:
                if meter is not None:
                    meter.sample()
                continue
            if not line:
                raise RuntimeError(f"{system} exited (code {await proc.wait()}); log {log}")
            parts = line.decode().split()
            if parts and parts[0] in ("READY", "FIRST", "DONE"):
                marks.setdefault(parts[0], float(parts[1]))
                if meter is None:
                    meter = CpuMeter(pids)
                if parts[0] == "DONE":
                    done_events = int(parts[2])
            if meter is not None:
                meter.sample()
        assert meter is not None
        meter.sample()
        committed_at = None
        if system == "quix":
            committed_at = await wait_committed(settings, group, topic, stage.ends)
        return make_result(
            stage,
            system,
            done_events,
            marks.get("READY"),
            marks["FIRST"],
            marks["DONE"],
            committed_at,
            meter,
            load_before,
        )
    finally:
        await stop_child(proc)
