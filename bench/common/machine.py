"""Where a benchmark ran: the machine's CPU, memory, disk and Kafka, and its load."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

from bench.common import ROOT

POM = ROOT / "ops" / "kafka" / "pom.xml"


def read_text(path: str | Path) -> str:
    """The file's text, or "" when it cannot be read (a fact we could not get)."""
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def command(*args: str, timeout: float = 10.0) -> str:
    """The stripped output of a short command, or "" when it cannot run."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def uptime() -> str:
    """`uptime` now: the load averages, recorded around every run."""
    return command("uptime")


def cpu_model() -> str | None:
    """The first `model name` of /proc/cpuinfo (None: a VM may not name it)."""
    for line in read_text("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return None


def nproc() -> int:
    """`nproc` (the CPUs this process may use), else the CPUs of the machine."""
    try:
        return int(command("nproc"))
    except ValueError:
        return os.cpu_count() or 0


def kafka_version() -> str:
    """The Kafka version the local broker is built from (ops/kafka/pom.xml)."""
    found = re.search(r"<kafka.version>([^<]+)</kafka.version>", read_text(POM))
    return found.group(1) if found else "unknown"


def kafka_machine() -> dict[str, Any]:
    """The "machine" entry of the Kafka benchmarks' results."""
    return {
        "nproc": nproc(),
        "cpu": cpu_model() or "unknown",
        "python": platform.python_version(),
        "kafka": kafka_version(),
        "kernel": platform.release(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def mount_of(directory: Path) -> dict[str, str]:
    """The /proc/mounts entry holding `directory` (longest mount point that prefixes it)."""
    target = os.path.realpath(directory)
    best: dict[str, str] = {}
    for line in read_text("/proc/mounts").splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        device, point, fstype, options = parts[:4]
        point = point.replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best.get("mount_point", "")):
            best = {"device": device, "mount_point": point, "type": fstype, "options": options}
    return best


def block_queue(device: str) -> dict[str, str]:
    """Write-cache mode and rotational flag of the block device behind `device`."""
    if not device.startswith("/dev/"):
        return {}
    node = Path("/sys/class/block") / Path(device).name
    queue = node / "queue"
    if not queue.exists():  # a partition: the queue is its disk's
        queue = node.resolve().parent / "queue"
    found = {
        "write_cache": read_text(queue / "write_cache").strip(),
        "rotational": read_text(queue / "rotational").strip(),
    }
    return {k: v for k, v in found.items() if v}


def mem_total() -> str:
    """MemTotal of /proc/meminfo as written there ("24576000 kB")."""
    for line in read_text("/proc/meminfo").splitlines():
        if line.startswith("MemTotal"):
            return line.split(":", 1)[1].strip()
    return ""
