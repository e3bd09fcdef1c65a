"""The local broker script (ops/kafka/kafka.sh): a real second broker, in a scratch home."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import KAFKA_SH, ROOT
from tests.worker_process import free_port

pytestmark = pytest.mark.integration


def test_storage_formats_with_a_cluster_id_that_starts_with_a_dash(tmp_path: Path) -> None:
    # One random id in 64 starts with "-"; kafka-storage once read it as an option.
    home = tmp_path / "kafka"
    home.mkdir()
    jars = ROOT / ".local" / "kafka" / "lib"
    if jars.is_dir():
        (home / "lib").symlink_to(jars)  # else the script fetches them with Maven
    cluster_id = "-" + "A" * 21
    env = {
        **os.environ,
        "KAFKA_HOME_DIR": str(home),
        "KAFKA_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_CLUSTER_ID": cluster_id,
        "KAFKA_HEAP": "256m",
    }
    started = subprocess.run([KAFKA_SH, "start"], env=env, capture_output=True, text=True,
                             timeout=300)  # fmt: skip
    try:
        assert started.returncode == 0, started.stderr
        assert started.stdout.strip().splitlines()[-1] == (
            f"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{env['KAFKA_PORT']}"
        )
        meta = (home / "data" / "meta.properties").read_text()
        assert f"cluster.id={cluster_id}" in meta.splitlines()
    finally:
        subprocess.run([KAFKA_SH, "stop"], env=env, capture_output=True, timeout=120)
