"""A three-node cluster for the tests of this directory, shared by them and stopped
after the last of them, and every fixture that needs a broker (isolated_env among
them) pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.cluster import NODES, Cluster


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three KRaft nodes started from ops/kafka/cluster.sh in a temporary directory on
    free ports, killed at the end whatever happened (their data is thrown away: a clean
    stop would only cost time)."""
    cluster = Cluster(Path(tmp_path_factory.mktemp("kafka-cluster")))
    try:
        cluster.start()
        yield cluster
    finally:
        for node in NODES:
            cluster.kill_node(node)


@pytest.fixture(scope="package")
def kafka_bootstrap(cluster: Cluster) -> str:
    """All three nodes, as a worker is configured for a cluster."""
    return cluster.bootstrap


@pytest.fixture(autouse=True)
def all_nodes_up(cluster: Cluster) -> Cluster:
    """Every node runs when a test starts (an earlier test may have killed one)."""
    if cluster.running() != set(NODES):
        cluster.start()
    return cluster
