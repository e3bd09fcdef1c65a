"""A single-node Kafka broker of a test's own, from ops/kafka/kafka.sh: its own home,
data and ports, so that stopping or killing it leaves the shared test broker alone."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.worker_process import free_port

ROOT = Path(__file__).resolve().parent.parent
KAFKA_SH = ROOT / "ops" / "kafka" / "kafka.sh"
SHARED_LIB = ROOT / ".local" / "kafka" / "lib"


class PrivateBroker:
    """One broker in `home` on two free ports. The checkout's broker jars are linked
    into `home` (when fetched already), so starting it needs no download."""

    def __init__(self, home: Path) -> None:
        port = free_port()
        controller = free_port()
        while controller == port:
            controller = free_port()
        home.mkdir(parents=True, exist_ok=True)
        if SHARED_LIB.is_dir() and not (home / "lib").exists():
            (home / "lib").symlink_to(SHARED_LIB, target_is_directory=True)
        self.home = home
        self.env = {
            **os.environ,
            "KAFKA_HOME_DIR": str(home),
            "KAFKA_PORT": str(port),
            "KAFKA_CONTROLLER_PORT": str(controller),
        }
        self.bootstrap = f"127.0.0.1:{port}"

    def _run(self, command: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(KAFKA_SH), command], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    @property
    def pid(self) -> int | None:
        """The broker's process id, from its pid file (None when not running)."""
        try:
            pid = int((self.home / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _exists(pid) else None

    def start(self) -> str:
        """Start it (or find it running) and wait until it answers; its bootstrap address."""
        result = self._run("start", 240)
        if result.returncode != 0:
            pytest.fail(f"could not start the private broker:\n{result.stderr[-3000:]}")
        line = result.stdout.strip().splitlines()[-1]
        assert line == f"KAFKA_BOOTSTRAP_SERVERS={self.bootstrap}", line
        return self.bootstrap

    def stop(self) -> None:
        """Stop it cleanly (SIGTERM, then SIGKILL after 30 s)."""
        result = self._run("stop", 90)
        assert result.returncode == 0, result.stderr

    def kill(self, timeout: float = 30.0) -> None:
        """SIGKILL it, as a crash would, and wait until its process is gone: reaped too,
        since kafka.sh takes a pid that answers `kill -0` (a zombie does) for a broker
        still starting."""
        pid = self.pid
        assert pid is not None, f"no private broker running in {self.home}"
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while _exists(pid):
            if time.monotonic() > deadline:
                raise TimeoutError(f"broker pid {pid} still there {timeout}s after SIGKILL")
            time.sleep(0.05)


def _exists(pid: int) -> bool:
    """Whether a process `pid` exists, a zombie included."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
