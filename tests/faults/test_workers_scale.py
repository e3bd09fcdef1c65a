"""Three workers read a backlog; one is SIGKILLed and a fourth joins while it is read.

A backlog of executions and comparisons on `engine.ingest`, eight partitions (one
topic prefix and app id for this test, one data directory shared by its workers, as
in test_files_survive_sigkill), produced while three workers start. Part of the way
through, one of them (chosen at random, the seed printed) is killed with SIGKILL and
a fourth is started at once. The test checks that both happened mid-read: files
incomplete at the kill, and the group still behind on what it reads (`engine.ingest`,
or the typed topics the router has written but the windows and sinks not yet read)
when the fourth is ready.
Afterwards every execution, comparison and training sample is in the files and on
its typed topic exactly once, every window's latest revision equals an offline
recomputation, and the three workers left never exited and report ready.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.kafka.admin import ensure_topics
from streams.kafka.fleet import Fleet
from streams.kafka.partitioner import partition_for
from tests.faults.outputs import (
    Expected,
    assert_files_and_topics_exactly_once,
    lines_written,
    wait_for,
)
from tests.faults.test_files_survive_sigkill import fault_env
from tests.integration.kafka_io import produce_all
from tests.integration.state_input import lag
from tests.worker_process import WorkerProcess, free_port

pytestmark = pytest.mark.integration

EXECUTIONS = 150_000
COMPARISONS = 10_000
PER_MESSAGE = 40
SPAN_S = 900.0  # event times spread over the last quarter of an hour


def backlog(
    names: TopicNames, partitions: int, rng: random.Random
) -> tuple[Expected, list[tuple[Any, ...]]]:
    """The input: executions and comparisons in event-time order, in messages of
    PER_MESSAGE events of one type on engine.ingest; and what it must give.

    Executions go to the ingest partition of their engine, as the SDK sends them: the
    router keeps that partition, so each window partition reads its events in
    event-time order and a window is revised only when a fault makes it so."""
    fleet = Fleet(rng=rng, engines=8)
    expected = Expected()
    total = EXECUTIONS + COMPARISONS
    first = time.time() - SPAN_S
    runs: dict[tuple[str, int | None], list[dict[str, Any]]] = {}
    messages: list[tuple[Any, ...]] = []

    def seal(run: tuple[str, int | None]) -> None:
        event_type, partition = run
        messages.append((names.ingest, orjson.dumps(runs.pop(run)),
                         [("event-type", event_type.encode())], None, partition))

    for i in range(total):
        fleet.clock = round(first + SPAN_S * i / total, 3)
        run: tuple[str, int | None]
        if rng.random() < COMPARISONS / total:
            doc = fleet.comparison()
            run = ("comparison_result", None)
        else:
            doc = fleet.execution()
            run = ("engine_execution", partition_for(doc["engine_id"].encode(), partitions))
        expected.add(run[0], doc)
        runs.setdefault(run, []).append(doc)
        if len(runs[run]) == PER_MESSAGE:
            seal(run)
    for left in list(runs):
        seal(left)
    return expected, messages


def test_one_of_three_killed_and_a_fourth_joins_mid_backlog(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    seed = int(os.environ.get("ENGINESTREAM_FAULT_SEED") or random.randrange(2**31))
    rng = random.Random(seed)
    began = time.monotonic()
    env = {
        **fault_env(isolated_env),
        # Eight partitions: with four, the two workers left after the kill keep two
        # each (faust's assignor is sticky up to ceil(partitions / workers)) and the
        # fourth would get none.
        "ENGINESTREAM_PARTITIONS": "8",
        "ENGINESTREAM_WINDOW_SIZES": "10,60",
    }
    settings = Settings.from_env(env)
    names = TopicNames(settings.topic_prefix)
    asyncio.run(ensure_topics(settings))

    def worker(name: str) -> WorkerProcess:
        port = {"ENGINESTREAM_WEB_PORT": str(free_port())}
        return WorkerProcess({**env, **port}, log_path=tmp_path / f"{name}.log")

    # The backlog is made and produced while the three start (it takes them longer).
    workers = [worker(name).start() for name in ("a", "b", "c")]
    fourth = worker("d")
    try:
        expected, messages = backlog(names, settings.partitions, rng)
        asyncio.run(produce_all(settings.bootstrap_servers, messages))
        produced_s = time.monotonic() - began
        want = expected.ids()
        total = sum(map(len, want.values()))

        def progress() -> float:
            return lines_written(settings, want) / total

        for w in workers:
            w.wait_ready()
        ready_at = time.monotonic() - began
        at_ready = progress()
        target = rng.uniform(0.02, 0.1)
        victim = rng.randrange(3)
        print(f"\nseed {seed} (ENGINESTREAM_FAULT_SEED to repeat): kill worker {victim}"
              f" at {target:.0%} of the files")
        wait_for(lambda: progress() >= target, 120, f"progress {target:.2f}")
        workers[victim].kill()
        at_kill = progress()
        killed_at = time.monotonic() - began
        fourth.start()
        fourth.wait_ready()
        read = [*names.inputs(), *names.typed.values()]
        behind = asyncio.run(lag(settings.bootstrap_servers, settings.app_id, read))
        at_join = progress()
        joined_at = time.monotonic() - began
        # Both landed mid-read.
        assert at_kill < 1.0 and at_join < 1.0, (at_kill, at_join)
        assert behind > 0, "the backlog was read before the fourth worker joined"

        survivors = [w for i, w in enumerate(workers) if i != victim] + [fourth]
        counts = assert_files_and_topics_exactly_once(settings, expected, timeout=240)
        done_at = time.monotonic() - began
        for w in survivors:
            assert w.proc is not None and w.proc.poll() is None, "a worker exited"
            w.wait_ready(timeout=60)
    finally:
        everyone = [*workers, fourth]
        for w in everyone:  # all at once: each takes seconds to stop
            if w.proc is not None and w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        for w in everyone:
            w.stop()
    print(
        f"backlog {len(messages)} messages made and produced in {produced_s:.0f}s;"
        f" three ready at {ready_at:.0f}s ({at_ready:.0%}),"
        f" killed at {killed_at:.0f}s ({at_kill:.0%} of the"
        f" files), fourth ready at {joined_at:.0f}s ({at_join:.0%}, {behind} messages"
        f" behind), all checked at {done_at:.0f}s: {counts}"
    )
