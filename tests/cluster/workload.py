"""The input of the broker-death tests, produced over time, and the windows it must give.

The mix of tests/faults/test_files_survive_sigkill.py's Workload (every event type in
batches of 40, comparisons published twice, comparisons whose winner is no candidate,
malformed messages), smaller, and sent on a schedule: message k no earlier than its
time, so that a broker dies while events are still arriving. Executions carry their
scheduled time as event time, so windows close while the run goes on, as they would
live; the ids every channel must hold are known before anything is sent.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streams.config.channels import content_id
from streams.config.topics import TopicNames
from streams.domain.tiering import sample_id_for
from streams.domain.windows import window_start
from tests.faults.test_files_survive_sigkill import expected_tier, mixed_events
from tests.integration.windows_input import summarise

EVENTS = 16_000
COMPARISONS = 1_600
DUPLICATES = 200
BROKEN = 50
BATCH = 40


class PacedWorkload:
    """What to send and when, and the ids every channel must hold afterwards (the
    attributes assert_exactly_once reads: ids, tiers, decisions)."""

    def __init__(self, names: TopicNames, seed: int, duration_s: float) -> None:
        rng = random.Random(seed)
        by_type = mixed_events(rng, EVENTS, COMPARISONS)
        comparisons = by_type["comparison_result"]
        batches: list[tuple[str | None, Any]] = [
            (event_type, docs[i : i + BATCH])
            for event_type, docs in by_type.items()
            for i in range(0, len(docs), BATCH)
        ]
        batches += [("comparison_result", doc) for doc in rng.sample(comparisons, DUPLICATES)]
        batches += [(None, None)] * BROKEN  # not events at all: dead letters
        rng.shuffle(batches)

        # Message k is due at start + k * step; its executions happened then.
        self.start = time.time() + 1.0
        step = duration_s / len(batches)
        self.messages: list[tuple[float, str, bytes, list[tuple[str, bytes]]]] = []
        for k, (event_type, docs) in enumerate(batches):
            due = self.start + k * step
            if event_type is None:
                self.messages.append((due, names.ingest, b'{"broken": ', []))
                continue
            if event_type == "engine_execution":
                for doc in docs:
                    doc["timestamp"] = round(due, 3)
            headers = [("event-type", event_type.encode())]
            self.messages.append((due, names.ingest, orjson.dumps(docs), headers))

        self.executions = by_type["engine_execution"]
        decisions = {c["comparison_id"]: expected_tier(c) for c in comparisons}
        self.tiers = {
            sample_id_for(cid): tier
            for cid, tier in decisions.items()
            if tier in ("gold", "silver", "bronze")
        }
        self.decisions = Counter(decisions.values())
        self.ids = {
            "events": {content_id(d) for d in self.executions},
            "comparisons": set(decisions),
            "training_samples": set(self.tiers)
            | {d["sample_id"] for d in by_type.get("training_sample", [])},
        }
        self.sent = 0
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start_producing(self, bootstrap: str) -> None:
        """Send every message on its schedule from a thread (acks=all, idempotent)."""
        self._thread = threading.Thread(
            target=self._run, args=(bootstrap,), name="paced-producer", daemon=True
        )
        self._thread.start()

    def wait_sent(self, timeout: float) -> None:
        """Block until every message is acknowledged; raise what the producer raised."""
        assert self._thread is not None
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"only {self.sent} of {len(self.messages)} messages sent")
        if self.error is not None:
            raise self.error

    @property
    def sent_share(self) -> float:
        """The share of the messages acknowledged so far; raises what the producer
        raised, so that a wait on it ends at once."""
        if self.error is not None:
            raise self.error
        return self.sent / len(self.messages)

    def describe(self) -> str:
        """How far the producer got, for a failure's message."""
        return f"{self.sent} of {len(self.messages)} messages acknowledged"

    def _run(self, bootstrap: str) -> None:
        try:
            asyncio.run(self._produce(bootstrap))
        except BaseException as exc:  # reported by wait_sent
            self.error = exc

    async def _produce(self, bootstrap: str) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            # A dead leader is replaced within seconds; a send must outlast that.
            request_timeout_ms=120_000,
        )
        await producer.start()
        try:
            pending = []
            for due, topic, value, headers in self.messages:
                wait = due - time.time()
                if wait > 0:
                    await asyncio.sleep(wait)  # the schedule, not a wait for a condition
                pending.append(await producer.send(topic, value, headers=headers))
                done = [f for f in pending if f.done()]
                for future in done:
                    future.result()  # raises a failed send
                    self.sent += 1
                pending = [f for f in pending if not f.done()]
            for future in pending:
                await future
                self.sent += 1
        finally:
            await producer.stop()


WindowId = tuple[str, int, int]  # engine, size, start


def expected_windows(
    executions: list[dict[str, Any]], sizes: tuple[int, ...]
) -> dict[WindowId, dict[str, Any]]:
    """Each engine window's metrics computed directly from all of its executions."""
    grouped: dict[WindowId, list[dict[str, Any]]] = defaultdict(list)
    for event in executions:
        for size in sizes:
            grouped[(event["engine_id"], size, window_start(event["timestamp"], size))].append(
                event
            )
    return {key: summarise(events) for key, events in grouped.items()}


def latest_windows(records: list[dict[str, Any]]) -> dict[WindowId, dict[str, Any]]:
    """The latest revision of each engine window among `records`; fails on a revision
    emitted twice or a revision missing below the latest."""
    revisions: dict[WindowId, list[int]] = defaultdict(list)
    latest: dict[WindowId, dict[str, Any]] = {}
    for record in records:
        if record.get("kind", "engine") != "engine":
            continue
        key = (record["engine_id"], record["window_size_s"], record["window_start"])
        revisions[key].append(record["revision"])
        if key not in latest or latest[key]["revision"] < record["revision"]:
            latest[key] = record
    for key, seen in revisions.items():
        assert sorted(seen) == list(range(len(seen))), f"window {key}: revisions {seen}"
    return latest


def quantile_close(got: float, want: float, bound: float) -> bool:
    """Whether a sketched quantile is within its relative accuracy of the exact one."""
    return math.isclose(got, want, rel_tol=bound, abs_tol=1e-9)
