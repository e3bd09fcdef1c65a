"""The wheel, installed as a user installs it (not editable), runs a worker.

The wheel is built from a copy of the sources, installed with its dependencies into a
fresh venv outside the checkout, and everything after runs from outside the checkout,
so the source tree cannot be imported: `streams` and its schemas must come from the
wheel, and that venv's `enginestream worker` must route a valid event to its typed
topic and make a malformed message a dead letter.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import time
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.kafka.fleet import Fleet
from tests.integration.kafka_io import Record, produce_all, read_until
from tests.wheel_build import (
    ROOT,
    build_wheel,
    install_into_fresh_venv,
    outside_directory,
    outside_env,
    run,
)
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

HEADER = "event-type"

# Where the venv's `streams` and its schema directories are, as JSON.
PROBE = """
import json, streams
from streams.domain.avro_codec import AVRO_DIR, load_avro_schemas
from streams.domain.validation import SCHEMA_DIR, default_registry
print(json.dumps({
    "streams": streams.__file__,
    "schema_dir": str(SCHEMA_DIR),
    "avro_dir": str(AVRO_DIR),
    "json_schemas": sorted(default_registry().schemas),
    "avro_schemas": sorted(load_avro_schemas()),
}))
"""


class InstalledWorker(WorkerProcess):
    """`enginestream worker` of an installed venv, run from a directory outside the
    checkout."""

    def __init__(self, venv: Path, cwd: Path, env: dict[str, str], log_path: Path) -> None:
        super().__init__(env, log_path)
        self.env = {**outside_env(venv), **env}
        self.venv = venv
        self.cwd = cwd

    def start(self) -> InstalledWorker:
        """Start the worker (does not wait; see wait_ready)."""
        assert self.log_path is not None
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [str(self.venv / "bin" / "enginestream"), "worker"],
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self


@pytest.fixture
def outside() -> Iterator[Path]:
    """A scratch directory outside the checkout (pytest's may be inside it)."""
    with outside_directory("enginestream-wheel-") as path:
        yield path


def build_and_install(outside: Path, timings: dict[str, float]) -> Path:
    """Build the wheel from a copy of the sources and install it, with its
    dependencies, into a fresh venv; answer the venv."""
    started = time.monotonic()
    wheel = build_wheel(outside)
    timings["build"] = time.monotonic() - started
    # Type checkers read an installed package's hints only when it says it has them.
    with zipfile.ZipFile(wheel) as built:
        assert "streams/py.typed" in built.namelist()

    started = time.monotonic()
    venv = outside / "venv"
    # The worker is the wheel's `worker` extra (the wheel alone is the engine-side SDK).
    install_into_fresh_venv(venv, f"{wheel}[worker]")
    timings["venv and install"] = time.monotonic() - started
    return venv


def test_the_installed_wheel_routes_and_dead_letters(
    isolated_env: dict[str, str], outside: Path
) -> None:
    timings: dict[str, float] = {}
    venv = build_and_install(outside, timings)

    # `streams` is the venv's, and so are the schemas, all of them and no examples.
    python = str(venv / "bin" / "python")
    probe = orjson.loads(run([python, "-c", PROBE], outside, outside_env(venv), 120))
    package = Path(probe["streams"]).parent
    assert package.is_relative_to(venv), probe
    assert not package.is_relative_to(ROOT), probe
    assert Path(probe["schema_dir"]) == package / "schemas" / "v1"
    assert Path(probe["avro_dir"]) == package / "schemas" / "avro"
    assert probe["json_schemas"] == sorted(p.stem for p in (ROOT / "schemas/v1").glob("*.json"))
    assert probe["avro_schemas"] == sorted(p.stem for p in (ROOT / "schemas/avro").glob("*.avsc"))
    assert not (package / "schemas" / "v1" / "examples").exists()
    assert (package / "py.typed").is_file()
    command = str(venv / "bin" / "enginestream")
    shown = run([command, "--version"], outside, outside_env(venv), 60)
    assert shown == f"enginestream {metadata.version('enginestream')}\n"

    settings = Settings.from_env(isolated_env)
    names = TopicNames(settings.topic_prefix)
    event = Fleet().execution()
    malformed = orjson.dumps(event)[:-7]
    header = [(HEADER, b"engine_execution")]

    started = time.monotonic()
    worker = InstalledWorker(venv, outside, isolated_env, outside / "worker.log").start()
    try:
        worker.wait_ready(timeout=60)
        timings["worker ready"] = time.monotonic() - started
        started = time.monotonic()
        sent = asyncio.run(
            produce_all(
                settings.bootstrap_servers,
                [
                    (names.ingest, orjson.dumps(event), header, None),
                    (names.ingest, malformed, header, None),
                ],
            )
        )
        bad = sent[1]

        def is_the_event(r: Record) -> bool:
            return r.topic == names.typed["engine_execution"] and orjson.loads(r.value) == event

        def is_the_letter(r: Record) -> bool:
            if r.topic != names.dead_letter:
                return False
            source = orjson.loads(r.value)["source"]
            return (source["topic"], source["partition"], source["offset"]) == (
                bad.topic,
                bad.partition,
                bad.offset,
            )

        def both(records: list[Record]) -> bool:
            return any(map(is_the_event, records)) and any(map(is_the_letter, records))

        topics = [names.typed["engine_execution"], names.dead_letter]
        records = asyncio.run(read_until(settings.bootstrap_servers, topics, both, timeout=30))
        timings["routed"] = time.monotonic() - started
    finally:
        code = worker.stop()
    assert code == 0, f"the worker exited with {code}{worker._tail()}"

    assert [r for r in records if r.topic == names.typed["engine_execution"]] == [
        r for r in records if is_the_event(r)
    ]
    letters: list[dict[str, Any]] = [
        orjson.loads(r.value) for r in records if r.topic == names.dead_letter
    ]
    assert len(letters) == 1, letters
    assert letters[0]["reason"] == "malformed_json"
    assert base64.b64decode(letters[0]["original"]) == malformed
    print("wheel install timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
