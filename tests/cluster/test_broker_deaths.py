"""One worker on a three-node cluster rides out the death of a broker by itself.

Topics have three replicas, two of them in sync for a write (checked, not assumed).
While mixed events are still being produced and processed, one node is killed with
SIGKILL: the one leading most of the worker's busy partitions, started again a while
later; or the coordinator of the worker's consumer group, for good. The worker is
never touched: it does not exit, its /health comes back ready, every event reaches
the JSONL files exactly once, and the latest revision of every engine window equals
its metrics computed offline from all of its executions.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from streams.config.settings import Settings
from streams.config.topics import TopicNames
from streams.kafka.admin import ensure_topics
from tests.cluster.cluster import (
    Cluster,
    busiest_leader,
    describe,
    describe_partitions,
    led_by,
)
from tests.cluster.workload import (
    PacedWorkload,
    expected_windows,
    latest_windows,
    quantile_close,
)
from tests.faults.test_files_survive_sigkill import (
    all_records,
    assert_exactly_once,
    complete,
    progress,
    wait_for,
)
from tests.integration.kafka_io import read_until
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

PRODUCE_S = 24.0  # how long the events keep arriving
DOWN_S = 10.0  # the least time a node stays dead before it may come back
SIZES = (10, 60)
SKETCH_BOUND = 0.005  # QuantileSketch's default relative accuracy
EXACT = ("count", "success_count", "success_rate", "latency_min_ms", "latency_max_ms",
         "latency_avg_ms", "quality_score_mean", "memory_mb_mean", "cpu_percent_mean")  # fmt: skip
QUANTILES = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")


def cluster_env(isolated_env: dict[str, str]) -> dict[str, str]:
    return {
        **isolated_env,
        "ENGINESTREAM_WINDOW_SIZES": ",".join(map(str, SIZES)),
        "ENGINESTREAM_WINDOW_IDLE_TIMEOUT": "3",
    }


def busy_topics(names: TopicNames) -> list[str]:
    """What the worker reads and writes most: the ingest topic and the typed topics."""
    return [names.ingest, *names.typed.values()]


def assert_replicated(bootstrap: str, topics: list[str]) -> None:
    """Every partition on three replicas, all in sync, and writes needing two of them
    (once every topic shows in the metadata of the node asked: new topics reach the
    three nodes one after the other)."""
    found: list[Any] = []

    def described() -> bool:
        found[:] = [describe(bootstrap, topics)]
        states, configs = found[0]
        # A topic's config reaches the nodes one after the other, as its partitions do.
        return {s.topic for s in states} == set(configs) == set(topics)

    wait_for(described, 30, lambda: f"partitions of {topics}, found {found}")
    states, min_isr = found[0]
    for state in states:
        assert len(state.replicas) == 3, state
        assert sorted(state.isr) == sorted(state.replicas), state
    assert min_isr == dict.fromkeys(topics, "2")


def changelogs(bootstrap: str, app_id: str) -> list[str]:
    """The worker's table changelog topics (faust creates them)."""

    async def listed() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return sorted(await admin.list_topics())
        finally:
            await admin.close()

    found = [t for t in asyncio.run(listed()) if t.startswith(app_id) and t.endswith("-changelog")]
    assert found, f"no changelog topic of {app_id}"
    return found


def coordinator(bootstrap: str, group: str) -> int:
    """The node that coordinates `group`."""

    async def find() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return await admin.find_coordinator(group)
        finally:
            await admin.close()

    return asyncio.run(find())


def assert_windows(settings: Settings, workload: PacedWorkload) -> None:
    """The latest revision of every engine window equals the offline metrics (waiting
    for windows the idle partitions close by the wall clock)."""
    names = TopicNames(settings.topic_prefix)
    want = expected_windows(workload.executions, SIZES)

    def closed(records: list[Any]) -> bool:
        latest = latest_windows([orjson.loads(r.value) for r in records])
        return all(k in latest and latest[k]["count"] == w["count"] for k, w in want.items())

    try:
        records = asyncio.run(
            read_until(settings.bootstrap_servers, [names.metrics_windows], closed, timeout=90)
        )
    except TimeoutError as exc:  # say what the cluster had to say about the topic
        states = describe_partitions(settings.bootstrap_servers, [names.metrics_windows])
        raise TimeoutError(f"{exc}; the topic's partitions: {states}") from exc
    latest = latest_windows([orjson.loads(r.value) for r in records])
    assert set(latest) == set(want)
    for key, expected in want.items():
        got = latest[key]
        for name in EXACT:
            assert got[name] == expected[name], (key, name, got[name], expected[name])
        for name in QUANTILES:
            assert quantile_close(got[name], expected[name], SKETCH_BOUND), (key, name)


def run_with_a_node_killed(
    cluster: Cluster, env: dict[str, str], tmp_path: Path, victim: str, restart: bool
) -> None:
    """The scenario of both tests: `victim` is "leader" or "coordinator"."""
    settings = Settings.from_env(env)
    names = TopicNames(settings.topic_prefix)
    data_dir = settings.data_dir
    asyncio.run(ensure_topics(settings))
    assert_replicated(cluster.bootstrap, [s.name for s in names.specs(settings.partitions)])
    workload = PacedWorkload(names, seed=21, duration_s=PRODUCE_S)

    def done() -> float:
        return progress(data_dir, settings, workload)

    def figures() -> str:
        return f"{workload.describe()}, {done():.2f} of the records in the files"

    worker = WorkerProcess(env, log_path=tmp_path / "worker.log").start()
    try:
        worker.wait_ready(timeout=120)
        assert_replicated(cluster.bootstrap, changelogs(cluster.bootstrap, settings.app_id))
        workload.start_producing(cluster.bootstrap)
        wait_for(lambda: workload.sent_share >= 0.25 and done() >= 0.1, 120,
                 lambda: f"a quarter sent, a tenth in the files ({figures()})")  # fmt: skip
        if victim == "leader":
            node = busiest_leader(cluster.bootstrap, busy_topics(names))
        else:
            node = coordinator(cluster.bootstrap, settings.app_id)
        killed_at, at_kill = time.monotonic(), done()
        assert workload.sent_share < 0.9, "the input must still be arriving when it dies"
        cluster.kill_node(node)
        # The node's partitions are led elsewhere, and the worker goes on without it.
        wait_for(lambda: led_by(cluster.bootstrap, busy_topics(names), node) == 0, 60,
                 f"the partitions of node {node} led by the others")  # fmt: skip
        wait_for(lambda: done() >= min(at_kill + 0.1, 1.0)
                 and time.monotonic() - killed_at >= DOWN_S, 120,
                 lambda: f"progress without node {node} ({at_kill:.2f}, {figures()})")  # fmt: skip
        if restart:
            cluster.start_node(node)
        workload.wait_sent(timeout=180)
        wait_for(lambda: complete(data_dir, settings, workload), 180,
                 all_records(data_dir, settings, workload))  # fmt: skip
        assert worker.proc is not None and worker.proc.poll() is None, "the worker exited"
        worker.wait_ready(timeout=60)
        assert_exactly_once(data_dir, settings, workload, worker)  # type: ignore[arg-type]
        assert_windows(settings, workload)
        assert worker.proc.poll() is None, "the worker exited"
    finally:
        worker.stop()


def test_the_busiest_leader_killed_and_started_again(
    cluster: Cluster, isolated_env: dict[str, str], tmp_path: Path
) -> None:
    run_with_a_node_killed(cluster, cluster_env(isolated_env), tmp_path, "leader", restart=True)


def test_the_group_coordinator_killed_for_good(
    cluster: Cluster, isolated_env: dict[str, str], tmp_path: Path
) -> None:
    run_with_a_node_killed(
        cluster, cluster_env(isolated_env), tmp_path, "coordinator", restart=False
    )
