"""Run worker processes and wait for them to be ready: for the integration and fault tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` different ports on 127.0.0.1 that nothing listens on right now."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


class WorkerProcess:
    """One `enginestream worker` in a child process, with its own environment."""

    def __init__(self, env: dict[str, str], log_path: Path | None = None) -> None:
        self.env = {**os.environ, **env}
        self.web_port = int(self.env.get("ENGINESTREAM_WEB_PORT", "6066"))
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the worker's web views."""
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> WorkerProcess:
        """Start the worker (does not wait; see wait_ready)."""
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def get_json(self, path: str, timeout: float = 5.0) -> tuple[int, object]:
        """GET a view; answer (status, decoded body)."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return response.status, orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read() or b"null")

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Block until /health says ready (partitions assigned, tables recovered)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with code {self.proc.returncode}{self._tail()}")
            try:
                status, body = self.get_json("/health", timeout=2.0)
                if status == 200 and isinstance(body, dict) and body.get("ready"):
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready within {timeout}s{self._tail()}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; answer the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the worker, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def _tail(self) -> str:
        if self.log_path and self.log_path.exists():
            lines = self.log_path.read_text(errors="replace").splitlines()[-30:]
            return "\n--- worker log tail ---\n" + "\n".join(lines)
        return ""
