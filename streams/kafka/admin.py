"""Talk to the cluster before streaming: fail fast when it is unreachable, create topics.

Topics are created here with explicit partition counts (the local broker has
auto-create off), so a typed topic never silently ends up with one partition.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    AuthenticationMethodNotSupported,
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest

from streams.config.settings import Settings
from streams.config.topics import TopicNames, TopicSpec
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


async def refusal_reason(
    settings: Settings, options: Mapping[str, Any], timeout_s: float
) -> str | None:
    """Why the brokers turn this client away (its login, a certificate, the protocol),
    as one line naming the setting to fix; None when none of them answers at all."""
    connection = {k: v for k, v in options.items() if k != "bootstrap_servers"}
    for host, port, _ in collect_hosts(settings.bootstrap_servers, randomize=False):
        server = f"{host}:{port}"
        try:
            conn = await asyncio.wait_for(
                create_conn(host, port, request_timeout_ms=int(timeout_s * 1000), **connection),
                timeout_s,
            )
            try:
                # A listener expecting a login still answers ApiVersions without one.
                await asyncio.wait_for(conn.send(MetadataRequest([])), timeout_s)
            finally:
                conn.close()
        except (TimeoutError, KafkaError, OSError, asyncio.IncompleteReadError) as exc:
            reason = explain_refusal(exc, settings, server)
            if reason:
                return reason
    return None


# TLS alerts a broker sends when it wants a client certificate and got none, or
# refuses the one it got (mutual TLS).
CLIENT_CERTIFICATE_ALERTS = frozenset(
    {
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "TLSV1_ALERT_UNKNOWN_CA",
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    }
)
# What OpenSSL says when the other end does not speak TLS at all.
NOT_TLS = frozenset(
    {"WRONG_VERSION_NUMBER", "UNEXPECTED_EOF_WHILE_READING", "RECORD_LAYER_FAILURE",
     "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"}
)
# OpenSSL's verify codes for a certificate that names another host or address.
HOSTNAME_MISMATCH = frozenset({62, 64})
CERT_HAS_EXPIRED = 10


def explain_refusal(exc: BaseException, settings: Settings, server: str) -> str | None:
    """One line naming the setting to fix, for a connection to `server` that failed
    with `exc` (or with what it wraps); None when the broker simply did not answer."""
    chain = list(_chain(exc))
    protocol = settings.security_protocol
    for error in chain:
        if isinstance(error, SaslAuthenticationFailed):
            if not settings.sasl_username:
                return (
                    f"Kafka at {server} wants a {settings.sasl_mechanism} login: set "
                    "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
                )
            return (
                f"Kafka at {server} refused the {settings.sasl_mechanism} login of user "
                f"{settings.sasl_username!r}: check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        if isinstance(error, UnsupportedSaslMechanismError):
            return (
                f"Kafka at {server} does not offer KAFKA_SASL_MECHANISM="
                f"{settings.sasl_mechanism} on this listener: set the mechanism it enables "
                "(SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN)"
            )
        if isinstance(error, IllegalSaslStateError | AuthenticationMethodNotSupported):
            return (
                f"the listener at {server} takes no SASL login: set KAFKA_SECURITY_PROTOCOL "
                f"to SSL or PLAINTEXT (not {protocol}), or KAFKA_BOOTSTRAP_SERVERS to the "
                "SASL listener"
            )
        if isinstance(error, ssl.SSLCertVerificationError):
            return _untrusted_broker(error, settings, server)
        if isinstance(error, ssl.SSLError):
            return _tls_failure(error, settings, server)
    if any(_closed(error) for error in chain):
        return (
            f"Kafka at {server} closed the connection at once: check that "
            f"KAFKA_SECURITY_PROTOCOL={protocol} is what its listener expects "
            "(PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)"
        )
    return None


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """`exc` and the exceptions it was raised from or during, outermost first."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _untrusted_broker(
    error: ssl.SSLCertVerificationError, settings: Settings, server: str
) -> str:
    detail = error.verify_message or str(error.reason)
    if error.verify_code in HOSTNAME_MISMATCH:
        return (
            f"the certificate of Kafka at {server} is not for that host ({detail}): put the "
            "broker's name as its certificate has it in KAFKA_BOOTSTRAP_SERVERS"
        )
    if error.verify_code == CERT_HAS_EXPIRED:
        return f"the certificate of Kafka at {server} has expired: the broker needs a new one"
    where = (
        f"the CA in KAFKA_SSL_CAFILE={settings.ssl_cafile}"
        if settings.ssl_cafile
        else "a CA this system trusts (KAFKA_SSL_CAFILE is not set)"
    )
    return (
        f"the certificate of Kafka at {server} is not signed by {where} ({detail}): set "
        "KAFKA_SSL_CAFILE to the CA certificate (PEM) that signed the broker's"
    )


def _tls_failure(error: ssl.SSLError, settings: Settings, server: str) -> str:
    reason = str(error.reason or error)
    if reason in CLIENT_CERTIFICATE_ALERTS or (
        reason == "SSLV3_ALERT_HANDSHAKE_FAILURE" and not settings.ssl_certfile
    ):
        if not settings.ssl_certfile:
            return (
                f"Kafka at {server} requires a client certificate (mutual TLS): set "
                "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE (PEM) to a certificate and key "
                "signed by a CA the broker trusts"
            )
        return (
            f"Kafka at {server} refused the client certificate KAFKA_SSL_CERTFILE="
            f"{settings.ssl_certfile} ({reason}): set KAFKA_SSL_CERTFILE and "
            "KAFKA_SSL_KEYFILE to a certificate and key signed by a CA the broker trusts"
        )
    if reason in NOT_TLS:
        return (
            f"the listener at {server} does not speak TLS ({reason}): check "
            f"KAFKA_SECURITY_PROTOCOL={settings.security_protocol} and the port in "
            "KAFKA_BOOTSTRAP_SERVERS"
        )
    return (
        f"TLS with Kafka at {server} failed ({reason}): check KAFKA_SSL_CAFILE, "
        "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE"
    )


def _closed(error: BaseException) -> bool:
    """The broker accepted the connection and then closed it (not: nobody listens)."""
    if isinstance(error, asyncio.IncompleteReadError | ConnectionResetError):
        return True
    return isinstance(error, KafkaConnectionError) and "closed" in str(error)


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
