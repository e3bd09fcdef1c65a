"""A publisher left open when its engine exits is flushed then, within `exit_timeout`.

Each case is a real engine process that publishes executions and ends without
`close()`. A linger of a minute holds every event in the buffer, so the only way
they reach the broker is the flush at exit; with `exit_timeout=0` (no such flush)
none may arrive, which shows the others are not delivered by chance.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from string import Template

import orjson
import pytest

from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.kafka.admin import ensure_topics
from tests.integration.kafka_io import read_until

pytestmark = pytest.mark.integration

EVENTS = 300
ROOT = Path(__file__).resolve().parents[2]

PUBLISH = """
for i in range($events):
    assert publisher.execution("gpt-x", f"q{i}", "a", latency_ms=5.0 + i % 7)
"""
# The three ways an engine ends with its publisher open.
ENGINES = {
    # A threaded engine: the publisher's loop thread is a daemon, gone at exit.
    "sync": """
from streams.client import SyncPublisher
publisher = SyncPublisher(linger=60, exit_timeout=$exit_timeout)
""" + PUBLISH,
    # asyncio.run() ends: it cancels the publisher's sender, then closes the loop.
    "asyncio.run": """
import asyncio
from streams.client import Publisher
async def main() -> None:
    publisher = await Publisher.connect(linger=60, exit_timeout=$exit_timeout)
""" + textwrap.indent(PUBLISH, "    ") + """
asyncio.run(main())
""",
    # The engine's own task holds the publisher (`async with`) and is cancelled by the
    # same shutdown: its close() meets the sender's last flush, which it must not cut.
    "owner task": """
import asyncio
from streams.client import Publisher
async def engine(published: asyncio.Event) -> None:
    async with await Publisher.connect(linger=60, exit_timeout=$exit_timeout) as publisher:
""" + textwrap.indent(PUBLISH, "        ") + """
        published.set()
        await asyncio.Event().wait()  # serves until cancelled
async def main() -> None:
    published = asyncio.Event()
    asyncio.get_running_loop().create_task(engine(published))
    await published.wait()
asyncio.run(main())
""",
    # A loop driven by hand and never closed: the interpreter's exit closes it.
    "open loop": """
import asyncio
from streams.client import Publisher
loop = asyncio.new_event_loop()
publisher = loop.run_until_complete(Publisher.connect(linger=60, exit_timeout=$exit_timeout))
""" + PUBLISH,
}


def delivered(settings: Settings) -> int:
    """Events on the prefixed engine.ingest (every message is read: the engine has
    exited, so the end offsets are final)."""
    topic = TopicNames(settings.topic_prefix).ingest
    records = asyncio.run(read_until(settings.bootstrap_servers, [topic], lambda _: True, 30))
    count = 0
    for record in records:
        doc = orjson.loads(record.value)
        count += len(doc) if isinstance(doc, list) else 1
    return count


def run_engine(kind: str, exit_timeout: float, env: dict[str, str]) -> subprocess.CompletedProcess:
    code = Template(ENGINES[kind]).substitute(events=EVENTS, exit_timeout=exit_timeout)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env},
        capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize("kind", sorted(ENGINES))
def test_an_engine_that_exits_without_close_delivers_what_it_published(
    kind: str, isolated_env: dict[str, str]
) -> None:
    settings = Settings.from_env(isolated_env)
    asyncio.run(ensure_topics(settings))
    result = run_engine(kind, 5.0, isolated_env)
    assert result.returncode == 0, result.stderr
    assert delivered(settings) == EVENTS
    assert "undelivered" not in result.stderr, result.stderr


def test_without_the_exit_flush_nothing_lingering_arrives(isolated_env: dict[str, str]) -> None:
    settings = Settings.from_env(isolated_env)
    asyncio.run(ensure_topics(settings))
    result = run_engine("sync", 0, isolated_env)
    assert result.returncode == 0, result.stderr
    assert delivered(settings) == 0
