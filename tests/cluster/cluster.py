"""A three-node Kafka cluster of our own from ops/kafka/cluster.sh, and what it says
about its topics: who leads each partition, on how many replicas, with what min ISR."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from tests.conftest import ROOT
from tests.worker_process import free_ports

CLUSTER_SH = ROOT / "ops" / "kafka" / "cluster.sh"
NODES = (1, 2, 3)


class Cluster:
    """Three KRaft nodes in `home`, on free ports; the script does the work."""

    def __init__(self, home: Path) -> None:
        ports = free_ports(6)
        self.ports = dict(zip(NODES, ports[:3], strict=True))
        self.home = home
        self.env = {
            **os.environ,
            "KAFKA_CLUSTER_DIR": str(home),
            "KAFKA_CLUSTER_PORTS": ",".join(map(str, ports[:3])),
            "KAFKA_CLUSTER_CONTROLLER_PORTS": ",".join(map(str, ports[3:])),
            "KAFKA_HEAP": "384m",
        }
        self.bootstrap = ",".join(f"127.0.0.1:{p}" for p in ports[:3])

    def run(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """Run the script with `args`; fail with its output when it fails."""
        result = subprocess.run([str(CLUSTER_SH), *args], env=self.env, capture_output=True,
                                text=True, timeout=timeout)  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"cluster.sh {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result

    def start(self) -> str:
        """Start every node that is not running; answer the bootstrap list it prints."""
        line = self.run("start").stdout.strip().splitlines()[-1]
        assert line == f"KAFKA_BOOTSTRAP_SERVERS={self.bootstrap}", line
        return self.bootstrap

    def kill_node(self, node: int) -> None:
        """SIGKILL one node, as a crash would."""
        self.run("kill-node", str(node))

    def start_node(self, node: int) -> None:
        """Start one node again and wait until it serves with its two peers."""
        self.run("start-node", str(node))

    def running(self) -> set[int]:
        """The nodes whose process is alive (by their pid files)."""
        alive = set()
        for node in NODES:
            pidfile = self.home / f"node-{node}" / "kafka.pid"
            try:
                os.kill(int(pidfile.read_text()), 0)
            except (OSError, ValueError):
                continue
            alive.add(node)
        return alive


@dataclass(frozen=True)
class PartitionState:
    """One partition as the cluster describes it."""

    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


async def _describe(
    bootstrap: str, topics: list[str], with_configs: bool
) -> tuple[list[PartitionState], dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20_000)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
        configs = []
        if with_configs:
            configs = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name) for name in topics]
            )
    finally:
        await admin.close()
    states = [
        PartitionState(t["topic"], p["partition"], p["leader"], tuple(p["replicas"]),
                       tuple(p["isr"]))
        for t in described
        for p in t["partitions"]
    ]  # fmt: skip
    min_isr: dict[str, str] = {}
    for response in configs:
        for resource in response.resources:
            _code, _message, _type, name, entries = resource[:5]
            for entry in entries:
                if entry[0] == "min.insync.replicas":
                    min_isr[name] = entry[1]
    return states, min_isr


def describe(bootstrap: str, topics: list[str]) -> tuple[list[PartitionState], dict[str, str]]:
    """Every partition of `topics`, and each topic's min.insync.replicas (with every
    node up: the configs are asked of any node)."""
    return asyncio.run(_describe(bootstrap, topics, with_configs=True))


def describe_partitions(bootstrap: str, topics: list[str]) -> list[PartitionState]:
    """Every partition of `topics` (asked of any node that answers)."""
    return asyncio.run(_describe(bootstrap, topics, with_configs=False))[0]


def busiest_leader(bootstrap: str, topics: list[str]) -> int:
    """The node that leads the most partitions of `topics`."""
    states = describe_partitions(bootstrap, topics)
    return Counter(s.leader for s in states).most_common(1)[0][0]


def led_by(bootstrap: str, topics: list[str], node: int) -> int | None:
    """How many partitions of `topics` `node` leads (0 once its leadership moved);
    None when the metadata could not be had this time (a node just died)."""
    try:
        states = describe_partitions(bootstrap, topics)
    except KafkaError:
        return None
    return sum(1 for s in states if s.leader == node)
