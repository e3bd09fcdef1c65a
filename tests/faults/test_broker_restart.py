"""A worker and an engine's SDK ride out a broker killed with SIGKILL and restarted.

A private single-node broker (the shared one stays up), a worker processing, and an
engine thread publishing executions and comparisons through `SyncPublisher`. The
broker is SIGKILLed, stays down for a random 10-30 s (the seed and the outage are
printed), and is started again on the same data. Then, without a hand on it:

- the worker did not exit, writes an execution published after the restart to its
  file and reports /health ready, within a deadline;
- the SDK accounts for every publish call: attempts = delivered + dropped (by
  reason), by its own counters, and what it counts as delivered is what is on
  `engine.ingest`, each event once;
- every delivered execution and comparison (and the training sample of each
  qualifying comparison) is in the JSONL files and on its typed topic exactly once,
  and every window's latest revision equals an offline recomputation from the
  delivered executions.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from streams.client import SyncPublisher
from streams.config.channels import content_id
from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.kafka.admin import ensure_topics
from streams.kafka.fleet import Fleet
from tests.faults.outputs import Expected, assert_files_and_topics_exactly_once, decode
from tests.faults.test_files_survive_sigkill import file_ids, wait_for
from tests.integration.kafka_io import read_until
from tests.private_broker import PrivateBroker
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

OUTAGE_S = (10.0, 30.0)
INTERVAL_S = 0.005  # one event every 5 ms: about 200 a second


@dataclass
class Engine:
    """A thread that publishes a fleet's executions and comparisons every `interval`
    seconds through `publisher`, counting its calls."""

    publisher: SyncPublisher
    fleet: Fleet
    interval: float = INTERVAL_S
    calls: int = 0
    refused: int = 0  # publish() answered False
    accepted: list[dict[str, Any]] = field(default_factory=list)  # executions, in order
    errors: list[BaseException] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="engine", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            if self.fleet.rng.random() < 0.8:
                event_type, doc = "engine_execution", self.fleet.execution()
            else:
                event_type, doc = "comparison_result", self.fleet.comparison()
            try:
                accepted = self.publisher.publish(event_type, doc)
            except BaseException as exc:  # the SDK promises this never happens
                self.errors.append(exc)
                return
            self.calls += 1
            self.refused += not accepted
            if accepted and event_type == "engine_execution":
                self.accepted.append(doc)
            self.stopping.wait(self.interval)

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=10)


def delivered(settings: Settings, published: int) -> tuple[Expected, Counter[str]]:
    """Every event on `engine.ingest` (waiting until `published` are there), and how
    many times each execution and comparison arrived."""
    topic = TopicNames(settings.topic_prefix).ingest

    def count(records: list) -> int:
        return sum(len(decode(r.value)) for r in records)

    records = asyncio.run(
        read_until(settings.bootstrap_servers, [topic], lambda rs: count(rs) >= published, 60)
    )
    expected = Expected()
    seen: Counter[str] = Counter()
    for record in records:
        docs = decode(record.value)
        # The SDK packs one event type per message; its events tell which.
        event_type = "comparison_result" if "comparison_id" in docs[0] else "engine_execution"
        for doc in docs:
            expected.add(event_type, doc)
            seen[doc.get("comparison_id") or doc["trace_id"]] += 1
    return expected, seen


def test_worker_and_sdk_ride_out_a_broker_sigkill(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    seed = int(os.environ.get("ENGINESTREAM_FAULT_SEED") or random.randrange(2**31))
    rng = random.Random(seed)
    outage = rng.uniform(*OUTAGE_S)
    print(f"\nseed {seed} (ENGINESTREAM_FAULT_SEED to repeat): broker down for {outage:.1f}s")

    began = time.monotonic()
    marks: dict[str, float] = {}

    def mark(what: str) -> None:
        marks[what] = round(time.monotonic() - began, 1)

    broker = PrivateBroker(tmp_path / "kafka")
    env = {
        **isolated_env,
        "KAFKA_BOOTSTRAP_SERVERS": broker.start(),
        # Short windows: with live event times the last ones close soon after the end.
        "ENGINESTREAM_WINDOW_SIZES": "5,15",
        "ENGINESTREAM_WINDOW_IDLE_TIMEOUT": "3",
    }
    settings = Settings.from_env(env)
    asyncio.run(ensure_topics(settings))
    worker = WorkerProcess(env, log_path=tmp_path / "worker.log").start()
    publisher: SyncPublisher | None = None
    engine: Engine | None = None
    try:
        worker.wait_ready()
        mark("worker ready")
        publisher = SyncPublisher(settings)
        engine = Engine(publisher, Fleet(rng=rng, engines=6))
        engine.start()
        # The kill lands while the worker writes: some events in the files already.
        wait_for(lambda: len(file_ids(settings.data_dir, settings)["events"]) >= 200, 60,
                 "the first events in the files")

        broker.kill()
        killed_at = time.monotonic()
        mark("kill")
        wait_for(lambda: publisher is not None and publisher.state == "unavailable", 30,
                 "the publisher in its no-op mode")
        time.sleep(max(0.0, killed_at + outage - time.monotonic()))  # the outage itself
        assert worker.proc is not None and worker.proc.poll() is None, "worker exited"
        broker.start()  # same home, data and ports
        down_s = time.monotonic() - killed_at
        mark("broker back")

        wait_for(lambda: publisher is not None and publisher.state == "connected", 60,
                 "publishing resumed")
        # The worker is back when an execution published after the restart reaches
        # its file, and /health says ready.
        resumed = len(engine.accepted)
        wait_for(lambda: len(engine.accepted) > resumed, 10, "an event accepted again")
        after = content_id(engine.accepted[resumed])
        wait_for(lambda: after in set(file_ids(settings.data_dir, settings)["events"]), 120,
                 "an execution published after the restart in the events file")
        worker.wait_ready(timeout=30)
        back_s = time.monotonic() - killed_at
        mark("worker back")
        engine.stop()
        final = publisher.close(timeout=30)
        mark("engine stopped")

        expected, seen = delivered(settings, final.published)
        counts = assert_files_and_topics_exactly_once(settings, expected, timeout=120)
        mark("checked")
        assert worker.proc is not None and worker.proc.poll() is None, "worker exited"
    finally:
        if engine is not None:
            engine.stop()
        if publisher is not None:
            publisher.close(timeout=5)
        worker.stop()
        broker.stop()

    assert engine.errors == []
    # The SDK's account: every call delivered or dropped by a named reason, none pending.
    assert final.attempts == engine.calls and final.pending == 0
    assert final.attempts == final.published + final.dropped_total
    assert engine.refused <= final.dropped_total
    assert final.dropped["broker_unavailable"] > 0 and final.reconnects >= 1
    assert final.dropped["invalid"] == final.dropped["too_large"] == 0
    # What it counts as delivered is on engine.ingest, each event once.
    assert set(seen.values()) == {1}, "an event on engine.ingest twice"
    assert sum(seen.values()) == final.published
    print(
        f"sent {final.attempts}, delivered {final.published}, dropped {dict(final.dropped)};"
        f" broker down {down_s:.1f}s (answering again), worker back {back_s:.1f}s after"
        f" the kill; checked {counts}; at seconds {marks}"
    )
