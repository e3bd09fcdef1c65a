"""The README's SDK quickstart, run as a reader would run it, against the real broker.

Each python block of the README's "Publishing from an engine" section runs in a
fresh interpreter with the broker's address in place of the README's
`127.0.0.1:9092` and a topic prefix of its own (ENGINESTREAM_TOPIC_PREFIX, which the
SDK reads like every setting). Every event the block publishes through a
`publisher.<event>(...)` call must then be on the prefixed `engine.ingest`, once,
equal to what the event's builder makes of the same arguments (less the fields the
builder draws anew each time: timestamps and generated ids), and valid for its type.
"""

from __future__ import annotations

import ast
import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.client import InMemorySink
from streams.client.typed import EventMethods
from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.validation import default_registry
from streams.kafka.admin import ensure_topics
from tests.integration.kafka_io import Record, read_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SECTION = "## Publishing from an engine"
README_ADDRESS = "127.0.0.1:9092"
RUN_TIMEOUT_S = 60.0
READ_TIMEOUT_S = 30.0


def quickstart_blocks(markdown: str) -> list[str]:
    """The python blocks of the README's section on publishing, in order."""
    assert SECTION in markdown, f"README.md has no section {SECTION!r}"
    section = markdown.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = []
    for part in section.split("```python\n")[1:]:
        blocks.append(part.split("\n```", 1)[0] + "\n")
    return blocks


def event_calls(code: str) -> list[Call]:
    """The `<anything>.<event method>(literal arguments)` calls of `code` (in no
    particular order), where the method is one of the SDK's typed publishing methods."""
    methods = {name for name in vars(EventMethods) if not name.startswith("_")}
    calls = []
    for node in ast.walk(ast.parse(code)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in methods
        ):
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
            calls.append((node.func.attr, args, kwargs))
    return calls


Call = tuple[str, list[Any], dict[str, Any]]


def expected_events(calls: list[Call]) -> list[tuple[str, dict[str, Any]]]:
    """(event type, fields) for each call: what the SDK's own method publishes for
    those arguments, less the fields that differ between two builds."""
    first, second = InMemorySink(), InMemorySink()
    for name, args, kwargs in calls:
        for sink in (first, second):
            getattr(EventMethods, name)(sink, *args, **kwargs)
    expected = []
    for (event_type, a), (_, b) in zip(first.snapshot(), second.snapshot(), strict=True):
        expected.append((event_type, {k: v for k, v in a.items() if b.get(k) == v}))
    return expected


def arrived_events(records: list[Record]) -> list[dict[str, Any]]:
    """The events of the messages read: one per object, each element of an array."""
    found: list[dict[str, Any]] = []
    for record in records:
        value = orjson.loads(record.value)
        found += value if isinstance(value, list) else [value]
    return found


def run_block(code: str, env: dict[str, str], cwd: Path) -> None:
    """Run `code` as a script in a fresh interpreter in `cwd`; fail with its output
    if it fails."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr


BLOCKS = quickstart_blocks(README.read_text())


def test_the_readme_has_an_async_and_a_sync_quickstart() -> None:
    assert len(BLOCKS) == 2, f"{len(BLOCKS)} python blocks under {SECTION!r}"
    assert "await Publisher.connect(" in BLOCKS[0] and "await publisher.close()" in BLOCKS[0]
    assert "with SyncPublisher(" in BLOCKS[1]
    for block in BLOCKS:
        names = [name for name, _, _ in event_calls(block)]
        assert "execution" in names, "the quickstart should publish an execution"
        assert len(names) >= 2, "and a lifecycle event"


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=["async", "sync"][: len(BLOCKS)])
def test_a_quickstart_block_publishes_its_events(
    index: int, kafka_bootstrap: str, tmp_path: Path
) -> None:
    block = BLOCKS[index]
    assert README_ADDRESS in block, f"the quickstart should connect to {README_ADDRESS}"
    expected = expected_events(event_calls(block))
    assert expected, "the block publishes no event through publisher.<event>(...)"

    prefix = f"readme{uuid.uuid4().hex[:10]}."
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ENGINESTREAM_TOPIC_PREFIX": prefix,
    }
    settings = Settings.from_env(env)
    topic = TopicNames(prefix).ingest
    specs = [s for s in TopicNames(prefix).specs(settings.partitions) if s.name == topic]
    asyncio.run(ensure_topics(settings, specs))

    # In a directory of its own, as a reader would: not the checkout's.
    run_block(block.replace(README_ADDRESS, kafka_bootstrap), env, tmp_path)

    records = asyncio.run(
        read_until(
            kafka_bootstrap,
            [topic],
            lambda read: len(arrived_events(read)) >= len(expected),
            READ_TIMEOUT_S,
        )
    )
    arrived = arrived_events(records)
    assert len(arrived) == len(expected), (arrived, expected)  # none twice, none extra
    registry = default_registry()
    for event_type, fields in expected:
        match = next(
            (e for e in arrived if all(e.get(k) == v for k, v in fields.items())), None
        )
        assert match is not None, f"no {event_type} {fields} among {arrived}"
        assert registry.check(event_type, match) is None, (event_type, match)
        arrived.remove(match)
