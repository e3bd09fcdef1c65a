"""Routing exactly once when the worker is killed with SIGKILL while it routes.

The same input as the end-to-end router test (over ten thousand messages of every
kind, valid and not), routed one message per batch so that the kills land mid-run:
three SIGKILLs and restarts, and afterwards every event is on its typed topic
exactly once and every dead letter is written once.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.kafka.admin import ensure_topics
from tests.integration.kafka_io import produce_all, read_until
from tests.integration.test_router_end_to_end import (
    KEEP_BYTES,
    MAX_MESSAGE_BYTES,
    build_input,
    canonical,
)
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration


def outputs(settings: Settings) -> list[Any]:
    names = TopicNames(settings.topic_prefix)
    topics = [*names.typed.values(), names.dead_letter]
    return asyncio.run(read_until(settings.bootstrap_servers, topics, lambda r: True, 60))


def tally(settings: Settings, records: list[Any]) -> tuple[Counter[Any], Counter[str]]:
    """Routed events (by content) and router dead letters (by id), with multiplicity."""
    names = TopicNames(settings.topic_prefix)
    type_of_topic = {topic: t for t, topic in names.typed.items()}
    inputs = set(names.inputs())
    events: Counter[Any] = Counter()
    letters: Counter[str] = Counter()
    for record in records:
        value = orjson.loads(record.value)
        if record.topic == names.dead_letter:
            if value["source"]["topic"] in inputs:
                letters[value["id"]] += 1
            continue
        for doc in value if isinstance(value, list) else [value]:
            if "lineage" not in doc:  # the training agent's samples are not routed
                events[(type_of_topic[record.topic], canonical(doc))] += 1
    return events, letters


def test_three_sigkills_while_routing(isolated_env: dict[str, str], tmp_path: Path) -> None:
    env = {
        **isolated_env,
        "ENGINESTREAM_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES),
        "ENGINESTREAM_DEAD_LETTER_KEEP_BYTES": str(KEEP_BYTES),
        "ENGINESTREAM_ROUTER_TAKE": "1",  # one message a batch: slow enough to kill mid-run
    }
    settings = Settings.from_env(env)
    names = TopicNames(settings.topic_prefix)
    asyncio.run(ensure_topics(settings))
    exp = build_input(names, random.Random(77))
    asyncio.run(produce_all(settings.bootstrap_servers, exp.messages))
    expected_events = sum(exp.events.values())
    log = tmp_path / "worker.log"
    rng = random.Random()
    at_kill = []
    for target in sorted(rng.uniform(0.1, 0.7) for _ in range(3)):
        worker = WorkerProcess(env, log_path=log).start()
        try:
            worker.wait_ready()
            asyncio.run(
                read_until(
                    settings.bootstrap_servers,
                    list(names.typed.values()),
                    lambda rs, t=target: sum(
                        len(v) if isinstance(v := orjson.loads(r.value), list) else 1
                        for r in rs
                    ) >= t * expected_events,
                    timeout=300,
                )
            )
        finally:
            worker.kill()
        events, _ = tally(settings, outputs(settings))
        at_kill.append(sum(events.values()) / expected_events)
    assert all(share < 1.0 for share in at_kill), at_kill
    worker = WorkerProcess(env, log_path=log).start()
    try:
        worker.wait_ready()

        def done(records: list[Any]) -> bool:
            events, letters = tally(settings, records)
            return sum(events.values()) >= expected_events and len(letters) >= len(exp.dead)

        asyncio.run(
            read_until(
                settings.bootstrap_servers,
                [*names.typed.values(), names.dead_letter],
                done,
                timeout=300,
            )
        )
    finally:
        worker.stop()
    events, letters = tally(settings, outputs(settings))
    assert events == exp.events, "an event was lost or routed twice"
    assert len(letters) == len(exp.dead)
    assert max(letters.values()) == 1, "a dead letter was written twice"
