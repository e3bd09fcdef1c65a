"""Talk to the cluster before streaming: fail fast when it is unreachable, create topics.

Topics are created here with explicit partition counts (the local broker has
auto-create off), so a typed topic never silently ends up with one partition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError

from streams.config.settings import Settings
from streams.config.topics import TopicNames, TopicSpec
from streams.kafka.refusal import refusal_reason
from streams.tls import ENV_NAMES, TLSConfigError, client_ssl_context

TOPIC_ALREADY_EXISTS = 36


class ClusterNotReady(RuntimeError):
    """The cluster cannot serve the worker yet; the message says what to do."""


class BrokerUnreachable(ClusterNotReady):
    """No broker answered at the configured address; the message says what to set."""


class TopicsNotReady(ClusterNotReady):
    """Topics still report no partitions: routing by partition count is impossible."""


# How long a freshly created topic may take to show its partitions in metadata (a
# busy single-node cluster on two cores has taken more than five seconds).
PARTITIONS_WAIT_S = 60.0


def client_options(
    settings: Settings, tls_names: Mapping[str, str] = ENV_NAMES
) -> dict[str, Any]:
    """aiokafka connection options (address, TLS, SASL) from the settings.

    Raises TLSConfigError when a TLS file cannot be used; its message calls each file
    by its name in `tls_names` (the environment variables by default).
    """
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = client_ssl_context(
            settings.ssl_cafile,
            settings.ssl_certfile,
            settings.ssl_keyfile,
            settings.ssl_key_password,
            names=tls_names,
        )
    if settings.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password
    return options


def replication(settings: Settings, brokers: int) -> Settings:
    """`settings` with its replica counts decided for a cluster of `brokers` brokers.

    "auto" (0) is three replicas and two in sync on three or more brokers, so a write
    acknowledged by `acks=all` survives losing any one broker and the cluster keeps
    accepting writes with one down; on fewer brokers, one and one. A count set
    explicitly is kept as it is (a cluster smaller than it refuses to create topics,
    and says so).
    """
    factor = settings.replication_factor or (3 if brokers >= 3 else 1)
    insync = settings.min_insync_replicas or (2 if factor >= 3 else 1)
    return replace(settings, replication_factor=factor, min_insync_replicas=min(insync, factor))


async def _admin(settings: Settings, timeout_s: float) -> AIOKafkaAdminClient:
    """A started admin client, or BrokerUnreachable saying what to set: the address,
    the login, or the TLS files."""
    try:
        options = client_options(settings)
    except TLSConfigError as exc:
        raise BrokerUnreachable(str(exc)) from None
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
    except (TimeoutError, KafkaConnectionError, KafkaError, OSError) as exc:
        await admin.close()
        # aiokafka reports only "unable to bootstrap"; one more connection says why.
        # Not after a timeout: nothing answered, and asking again would double the wait.
        refusal = None
        if not isinstance(exc, TimeoutError):
            refusal = await refusal_reason(settings, options, min(timeout_s, 5.0))
        raise BrokerUnreachable(
            refusal
            or f"cannot reach Kafka at {settings.bootstrap_servers} "
            f"({exc.__class__.__name__}). Set KAFKA_BOOTSTRAP_SERVERS to a reachable "
            "broker, or start the local one with `make kafka-up`."
        ) from None
    return admin


async def check_broker(settings: Settings, timeout_s: float = 10.0) -> int:
    """Answer the number of brokers in the cluster, or raise BrokerUnreachable."""
    admin = await _admin(settings, timeout_s)
    try:
        cluster = await admin.describe_cluster()
        return len(cluster.get("brokers", []))
    finally:
        await admin.close()


@dataclass(frozen=True)
class TopicState:
    """A topic as the cluster has it."""

    name: str
    partitions: int


async def ensure_topics(
    settings: Settings, specs: list[TopicSpec] | None = None, timeout_s: float = 15.0
) -> list[TopicState]:
    """Create every missing topic with its partition count; answer what exists.

    An existing topic with another partition count is left alone (repartitioning
    would move keys) and reported in the answer, so callers can warn.
    """
    if specs is None:
        specs = TopicNames(settings.topic_prefix).specs(settings.partitions)
    admin = await _admin(settings, timeout_s)
    try:
        if not (settings.replication_factor and settings.min_insync_replicas):
            cluster = await admin.describe_cluster()
            settings = replication(settings, len(cluster.get("brokers", [])))
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        s.name,
                        s.partitions,
                        settings.replication_factor,
                        topic_configs={
                            "min.insync.replicas": str(settings.min_insync_replicas)
                        },
                    )
                    for s in missing
                ]
            )
            for name, code, *rest in response.topic_errors:
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    raise KafkaError(f"creating topic {name} failed: error {code} {rest}")
        return await _describe(admin, [s.name for s in specs])
    finally:
        await admin.close()


async def describe_topics(settings: Settings, names: list[str]) -> list[TopicState]:
    """Partition counts of `names` (topics that do not exist are left out)."""
    admin = await _admin(settings, 10.0)
    try:
        existing = set(await admin.list_topics())
        return await _describe(admin, [n for n in names if n in existing])
    finally:
        await admin.close()


async def _describe(
    admin: AIOKafkaAdminClient, names: list[str], wait_s: float = PARTITIONS_WAIT_S
) -> list[TopicState]:
    """Partition counts of `names`, once every one reports at least one partition;
    TopicsNotReady when some still report none after `wait_s`."""
    if not names:
        return []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        described = await admin.describe_topics(names)
        states = [TopicState(t["topic"], len(t["partitions"])) for t in described]
        found = {s.name for s in states if s.partitions > 0}
        if len(found) == len(set(names)):
            return [s for s in states if s.name in found]
        if loop.time() >= deadline:
            missing = sorted(set(names) - found)
            raise TopicsNotReady(
                f"topics {', '.join(missing[:5])} report no partitions after {wait_s:g} s; "
                "the cluster is still creating them or is overloaded: start the worker "
                "again in a moment (nothing was processed)"
            )
        await asyncio.sleep(0.1)
