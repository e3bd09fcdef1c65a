"""CPU seconds of processes and of the whole machine, over a measured window.

The machine is shared with other engineers' test runs: the machine-wide figure, less
what the measured processes took, says how much of the window others had."""

from __future__ import annotations

import os
import time

from bench.common.machine import read_text


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of process `pid` so far (None if it is gone)."""
    if pid is None:
        return None
    stat = read_text(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine so far, all cores (/proc/stat: every
    column but idle and iowait)."""
    first = read_text("/proc/stat").splitlines()[:1]
    if not first:
        return 0.0
    # user nice system idle iowait irq softirq steal ...
    values = [int(v) for v in first[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Samples the CPU seconds of a few processes; keeps the last value of each, so a
    process that exits keeps its last sample (at most one poll interval short).

    Also samples the whole machine: `used()` then has "all" (every process, all cores)
    and "other" (all minus the processes named and this one): what other users of the
    machine took while this run was measured."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.first["bench"] = self.last["bench"] = time.process_time()
        self.first_at = self.last_at = time.monotonic()
        self.sample()
        self.first.update({k: v for k, v in self.last.items() if k != "bench"})

    def sample(self) -> None:
        """Take one sample of every process."""
        for name, pid in self.pids.items():
            value = process_cpu_seconds(pid)
            if value is not None:
                self.last[name] = value
        self.last["bench"] = time.process_time()
        self.last["all"] = machine_busy_seconds()
        self.last_at = time.monotonic()

    def used(self) -> dict[str, float]:
        """CPU seconds each process used between the first and the last sample, and
        that window's length ("window_s": it can run past the end of the work)."""
        used = {k: self.last[k] - v for k, v in self.first.items() if k in self.last}
        ours = sum(v for k, v in used.items() if k != "all")
        used["other"] = max(0.0, used.get("all", 0.0) - ours)
        used["window_s"] = self.last_at - self.first_at
        return {k: round(v, 2) for k, v in used.items()}
