"""Exactly-once JSONL files and training samples when workers are killed with SIGKILL.

Over 100,000 events of every type — more than 10,000 of them comparisons, some
published twice on purpose, some whose winner is not a candidate — go through the
router, the window, training and sink agents while the worker is SIGKILLed at five
moments of the run and restarted each time (and, in the second test, while one of
two workers is killed and the other takes its partitions). Afterwards every channel
holds every expected record exactly once, every line is whole, there is exactly one
sample per qualifying comparison with the right tier, and the below-threshold count
is right.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.config.channels import CHANNELS, content_id
from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.domain.tiering import sample_id_for
from streams.durable.filesink import read_lines
from streams.kafka.admin import ensure_topics
from streams.kafka.fleet import Fleet
from tests.integration.kafka_io import produce_all, read_until
from tests.worker_process import WorkerProcess, free_port

pytestmark = pytest.mark.integration

EVENTS = 100_000
COMPARISONS = 12_000
DUPLICATES = 1_500
GHOSTS = 150  # comparisons whose winner is not among the candidates


def expected_tier(comparison: dict[str, Any]) -> str:
    """The contract's tiering, written out: gold >= 0.9, silver >= 0.75, bronze >= 0.5."""
    candidates = {c["engine_id"] for c in comparison["candidates"]}
    if comparison["winner"]["engine_id"] not in candidates:
        return "winner_not_candidate"
    score = comparison["winner"]["score"]
    if score >= 0.9:
        return "gold"
    if score >= 0.75:
        return "silver"
    if score >= 0.5:
        return "bronze"
    return "below_threshold"


def mixed_events(
    rng: random.Random, events: int = EVENTS, comparisons_count: int = COMPARISONS
) -> dict[str, list[dict[str, Any]]]:
    """`events` events of every type, by type, from a fleet of 24 engines:
    `comparisons_count` of them comparisons, GHOSTS of those won by an engine that
    never ran."""
    fleet = Fleet(rng=rng, engines=24)
    by_type: dict[str, list[dict[str, Any]]] = {}
    stream = fleet.mixed()
    while sum(map(len, by_type.values())) < events - comparisons_count:
        event_type, doc = next(stream)
        if event_type != "comparison_result":
            by_type.setdefault(event_type, []).append(doc)
    comparisons = [fleet.comparison() for _ in range(comparisons_count)]
    for ghost in comparisons[:GHOSTS]:
        ghost["winner"]["engine_id"] = "engine-not-in-the-race"
    rng.shuffle(comparisons)
    by_type["comparison_result"] = comparisons
    return by_type


class Workload:
    """The input, and the ids every channel must hold once it is all processed."""

    def __init__(self, names: TopicNames, seed: int) -> None:
        rng = random.Random(seed)
        by_type = mixed_events(rng)
        comparisons = by_type["comparison_result"]
        self.messages: list[tuple[Any, ...]] = []
        for event_type, docs in by_type.items():
            for i in range(0, len(docs), 40):
                self.messages.append(
                    (names.ingest, orjson.dumps(docs[i : i + 40]),
                     [("event-type", event_type.encode())], None)
                )
        for doc in rng.sample(comparisons, DUPLICATES):  # published again, alone
            self.messages.append(
                (names.ingest, orjson.dumps(doc), [("event-type", b"comparison_result")], None)
            )
        for _ in range(300):  # not events at all: dead letters
            self.messages.append((names.ingest, b'{"broken": ', [], None))
        rng.shuffle(self.messages)
        self.events = sum(map(len, by_type.values())) + DUPLICATES
        assert self.events >= EVENTS

        decisions = {c["comparison_id"]: expected_tier(c) for c in comparisons}
        self.tiers = {
            sample_id_for(cid): tier
            for cid, tier in decisions.items()
            if tier in ("gold", "silver", "bronze")
        }
        self.decisions = Counter(decisions.values())
        self.ids = {
            "events": {content_id(d) for d in by_type["engine_execution"]},
            "comparisons": set(decisions),
            "training_samples": set(self.tiers) | {
                d["sample_id"] for d in by_type.get("training_sample", [])
            },
        }


def file_ids(data_dir: Path, settings: Settings) -> dict[str, list[Any]]:
    """Every record id in every channel's committed lines, duplicates kept."""
    found: dict[str, list[Any]] = {}
    configs = {c.name: c for c in settings.sinks}
    for channel in CHANNELS:
        ids = found.setdefault(channel.name, [])
        for partition in range(settings.partitions):
            for line in read_lines(data_dir / "jsonl", configs[channel.name], partition):
                ids.append(channel.record_id(orjson.loads(line)))
    return found


def progress(data_dir: Path, settings: Settings, workload: Workload) -> float:
    ids = file_ids(data_dir, settings)
    want = sum(len(v) for v in workload.ids.values())
    return sum(len(ids[name]) for name in workload.ids) / want


def wait_for(condition: Any, timeout: float, what: str | Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            raise TimeoutError(f"{described} not reached within {timeout}s")
        time.sleep(0.25)


def assert_exactly_once(
    data_dir: Path, settings: Settings, workload: Workload, worker: WorkerProcess
) -> None:
    names = TopicNames(settings.topic_prefix)
    ids = file_ids(data_dir, settings)
    for name, want in workload.ids.items():
        got = Counter(ids[name])
        assert not [i for i, n in got.items() if n > 1], f"{name}: duplicates"
        assert set(got) == want, f"{name}: {len(set(got) ^ want)} ids differ"
    # Windows and dead letters: the files hold each record of their topic once. The
    # worker may still be emitting window records (idle partitions close windows by
    # the wall clock), so: every record on the topic now reaches the file, and the
    # file never holds one the topic does not.
    by_channel = {"aggregated_stats": names.metrics_windows, "dead_letters": names.dead_letter}
    channels = {name: next(c for c in CHANNELS if c.name == name) for name in by_channel}

    def on_topics() -> tuple[list[Any], dict[str, set[Any]]]:
        records = asyncio.run(
            read_until(settings.bootstrap_servers, list(by_channel.values()),
                       lambda records: True, timeout=60)
        )
        return records, {
            name: {channels[name].record_id(orjson.loads(r.value)) for r in records
                   if r.topic == topic}
            for name, topic in by_channel.items()
        }

    _, before = on_topics()
    wait_for(lambda: all(set(file_ids(data_dir, settings)[name]) >= before[name]
                         for name in by_channel), 60, "the topics' records in the files")
    ids = file_ids(data_dir, settings)
    topic_records, after = on_topics()
    for name in by_channel:
        got = Counter(ids[name])
        assert not [i for i, n in got.items() if n > 1], f"{name}: duplicates"
        assert before[name] <= set(got) <= after[name], name
    letters = Counter(orjson.loads(r.value)["reason"] for r in topic_records
                      if r.topic == names.dead_letter)
    assert letters["malformed_json"] >= 1
    # One sample per qualifying comparison, with its tier.
    configs = {c.name: c for c in settings.sinks}
    for partition in range(settings.partitions):
        for line in read_lines(data_dir / "jsonl", configs["training_samples"], partition):
            sample = orjson.loads(line)
            if sample["sample_id"] in workload.tiers:
                assert sample["tier"] == workload.tiers[sample["sample_id"]]
    # The below-threshold count, as the workers report it.
    status, body = worker.get_json("/training/stats")
    assert status == 200, body
    assert isinstance(body, dict)
    assert body["below_threshold"] == workload.decisions["below_threshold"]
    tiers = ("gold", "silver", "bronze")
    assert body["samples_by_tier"] == {t: workload.decisions[t] for t in tiers}
    assert body["decisions"]["winner_not_candidate"] == GHOSTS
    # No partial line anywhere: every file on disk is whole JSON lines.
    for path in sorted((data_dir / "jsonl").glob("*.jsonl")):
        content = path.read_bytes()
        assert not content or content.endswith(b"\n"), path
        for line in content.splitlines():
            orjson.loads(line)


def fault_env(isolated_env: dict[str, str]) -> dict[str, str]:
    # Small batches, so that the run lasts long enough for every kill to land in it:
    # with batches of hundreds a restarted worker finishes the whole workload between
    # two looks at the files.
    sinks = {f"ENGINESTREAM_SINK_{c.name.upper()}_BUFFER_SIZE": "25" for c in CHANNELS}
    return {
        **isolated_env,
        **sinks,
        "ENGINESTREAM_ROUTER_TAKE": "2",
        "ENGINESTREAM_WINDOW_IDLE_TIMEOUT": "3",
        "ENGINESTREAM_SINK_ROTATE_BYTES": str(2 * 1024 * 1024),  # rotations happen too
    }


def missing(data_dir: Path, settings: Settings, workload: Workload) -> dict[str, int]:
    """How many expected ids each channel's files do not hold yet."""
    ids = file_ids(data_dir, settings)
    return {name: len(want - set(ids[name])) for name, want in workload.ids.items()}


def complete(data_dir: Path, settings: Settings, workload: Workload) -> bool:
    return not any(missing(data_dir, settings, workload).values())


def all_records(data_dir: Path, settings: Settings, workload: Workload) -> Callable[[], str]:
    """What wait_for reports when the files stay incomplete."""
    return lambda: f"all records (missing: {missing(data_dir, settings, workload)})"


def test_five_sigkills_and_restarts(isolated_env: dict[str, str], tmp_path: Path) -> None:
    env = fault_env(isolated_env)
    settings = Settings.from_env(env)
    data_dir = settings.data_dir
    names = TopicNames(settings.topic_prefix)
    asyncio.run(ensure_topics(settings))
    workload = Workload(names, seed=4)
    asyncio.run(produce_all(settings.bootstrap_servers, workload.messages))
    log = tmp_path / "worker.log"
    rng = random.Random()
    kills = []
    for target in sorted(rng.uniform(0.03, 0.6) for _ in range(5)):
        worker = WorkerProcess(env, log_path=log).start()
        try:
            worker.wait_ready()
            wait_for(lambda t=target: progress(data_dir, settings, workload) >= t, 240,
                     f"progress {target:.2f}")
        finally:
            kills.append(progress(data_dir, settings, workload))
            worker.kill()
    assert len(kills) == 5 and all(k < 1.0 for k in kills), kills
    worker = WorkerProcess(env, log_path=log).start()
    try:
        worker.wait_ready()
        wait_for(lambda: complete(data_dir, settings, workload), 300,
                 all_records(data_dir, settings, workload))
        assert_exactly_once(data_dir, settings, workload, worker)
    finally:
        worker.stop()


def test_two_workers_one_killed(isolated_env: dict[str, str], tmp_path: Path) -> None:
    env = fault_env(isolated_env)
    settings = Settings.from_env(env)
    data_dir = settings.data_dir
    names = TopicNames(settings.topic_prefix)
    asyncio.run(ensure_topics(settings))
    workload = Workload(names, seed=5)
    asyncio.run(produce_all(settings.bootstrap_servers, workload.messages))
    first = WorkerProcess(env, log_path=tmp_path / "a.log").start()
    second = WorkerProcess(
        {**env, "ENGINESTREAM_WEB_PORT": str(free_port())}, log_path=tmp_path / "b.log"
    ).start()
    try:
        first.wait_ready()
        second.wait_ready()
        target = random.Random().uniform(0.1, 0.5)
        wait_for(lambda: progress(data_dir, settings, workload) >= target, 240, "progress")
        at_kill = progress(data_dir, settings, workload)
        first.kill()
        assert at_kill < 1.0
        wait_for(lambda: complete(data_dir, settings, workload), 300,
                 all_records(data_dir, settings, workload))
        second.wait_ready()
        assert_exactly_once(data_dir, settings, workload, second)
    finally:
        first.kill()
        second.stop()
