"""Shared fixtures: a real Kafka broker, and isolated settings for each test.

The broker, in this order: KAFKA_BOOTSTRAP_SERVERS if set; else a testcontainers
Kafka container when a Docker engine answers; else the local broker from ops/
(started here when it is not running, and stopped again at the end if so).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KAFKA_SH = ROOT / "ops" / "kafka" / "kafka.sh"


def _docker_answers() -> bool:
    try:
        import docker  # testcontainers depends on it

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """host:port of a real Kafka broker for the whole test session."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    was_running = subprocess.run([KAFKA_SH, "status"], capture_output=True).returncode == 0
    started = subprocess.run([KAFKA_SH, "start"], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.fail(f"could not start the local Kafka broker:\n{started.stderr}")
    line = started.stdout.strip().splitlines()[-1]
    assert line.startswith("KAFKA_BOOTSTRAP_SERVERS="), line
    try:
        yield line.split("=", 1)[1]
    finally:
        if not was_running:
            subprocess.run([KAFKA_SH, "stop"], capture_output=True)


@pytest.fixture
def isolated_env(kafka_bootstrap: str, tmp_path: Path) -> dict[str, str]:
    """Environment for one test: its own topic prefix, app id, data dir and web port."""
    from tests.worker_process import free_port

    tag = uuid.uuid4().hex[:10]
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ENGINESTREAM_TOPIC_PREFIX": f"t{tag}.",
        "ENGINESTREAM_APP_ID": f"es-{tag}",
        "ENGINESTREAM_DATA_DIR": str(tmp_path / "data"),
        "ENGINESTREAM_WEB_PORT": str(free_port()),
        "ENGINESTREAM_LOG_LEVEL": "warning",
    }
