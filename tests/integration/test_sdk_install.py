"""The SDK alone, installed as an engine installs it: `pip install enginestream`
(the wheel without its `worker` extra) into a fresh venv, with aiokafka held at the
lowest version the SDK's range allows, then used from outside the checkout to
publish to the broker.

It must bring none of the worker's packages, import none of them, and deliver what
both publishers publish.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import tomllib
from pathlib import Path

import orjson
import pytest

from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.kafka.admin import ensure_topics
from tests.integration.kafka_io import read_until
from tests.wheel_build import (
    PIP,
    ROOT,
    build_wheel,
    install_into_fresh_venv,
    outside_directory,
    outside_env,
    run,
)

pytestmark = pytest.mark.integration

EVENTS = 200
# The worker's packages (and what only they bring): an engine must get none of them.
WORKER_ONLY = {"faust-streaming", "mode-streaming", "click", "pyarrow", "fastavro",
               "prometheus-client", "aiohttp", "croniter", "venusian", "terminaltables"}

# An engine: both publishers, the one-call methods, close(); then what it imported.
ENGINE = """
import asyncio, json, sys
from streams.client import Publisher, SyncPublisher

N = %d
with SyncPublisher() as publisher:
    publisher.engine_started("gpt-x", "qwen3-4b", port=8080)
    for i in range(N // 2 - 1):
        publisher.execution("gpt-x", f"q{i}", "a", latency_ms=5.0 + i %% 7)
sync_stats = publisher.stats

async def main():
    publisher = await Publisher.connect()
    for i in range(N // 2):
        publisher.execution("gpt-y", f"q{i}", "a", latency_ms=9.0, success=i %% 5 != 0)
    return await publisher.close()

async_stats = asyncio.run(main())
print(json.dumps({
    "published": [sync_stats.published, async_stats.published],
    "modules": sorted({m.split(".")[0] for m in sys.modules}),
    "streams": sys.modules["streams"].__file__,
}))
"""


def aiokafka_range() -> tuple[str, str]:
    """The SDK's aiokafka requirement in pyproject.toml: (lowest, first excluded)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [spec] = [d for d in project["dependencies"] if d.startswith("aiokafka")]
    match = re.fullmatch(r"aiokafka>=([\d.]+),<([\d.]+)", spec.replace(" ", ""))
    assert match, f"the SDK's aiokafka requirement is a range, not {spec!r}"
    return match.group(1), match.group(2)


def test_the_sdk_alone_installs_light_and_publishes(isolated_env: dict[str, str]) -> None:
    settings = Settings.from_env(isolated_env)
    asyncio.run(ensure_topics(settings))
    lowest, _ = aiokafka_range()
    with outside_directory("enginestream-sdk-") as outside:
        wheel = build_wheel(outside)
        venv = outside / "engine"
        python = install_into_fresh_venv(venv, str(wheel), [f"aiokafka=={lowest}"])

        listed = run([*PIP, "--python", str(python), "list", "--format=json"], outside,
                     outside_env(venv), 120)
        installed = {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(listed)}
        assert "enginestream" in installed
        assert installed["aiokafka"] in (lowest, f"{lowest}.0"), installed["aiokafka"]
        assert not WORKER_ONLY & set(installed), sorted(WORKER_ONLY & set(installed))

        env = {**outside_env(venv), **isolated_env}
        report = json.loads(run([str(python), "-c", ENGINE % EVENTS], outside, env, 120))
        assert Path(report["streams"]).is_relative_to(venv), report["streams"]
        assert report["published"] == [EVENTS // 2, EVENTS // 2]
        heavy = {"faust", "mode", "click", "pyarrow", "fastavro", "prometheus_client", "aiohttp"}
        assert not heavy & set(report["modules"]), sorted(heavy & set(report["modules"]))

        # The command line is the worker's: without it, one line saying what to install.
        cli = subprocess.run([str(venv / "bin" / "enginestream"), "topics", "describe"],
                             cwd=outside, env=env, capture_output=True, text=True, timeout=60)
        assert cli.returncode == 2, cli.stderr
        assert "enginestream[worker]" in cli.stderr and len(cli.stderr.splitlines()) == 1

    topic = TopicNames(settings.topic_prefix).ingest
    records = asyncio.run(read_until(settings.bootstrap_servers, [topic], lambda _: True, 30))
    docs = [doc for r in records for doc in (lambda d: d if isinstance(d, list) else [d])(
        orjson.loads(r.value))]
    assert len(docs) == EVENTS
    assert sum(1 for d in docs if d.get("engine_id") == "gpt-y") == EVENTS // 2
