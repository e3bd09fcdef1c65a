"""Why a broker turns a client away, as one line naming the setting to fix.

aiokafka's bootstrap reports only "unable to bootstrap" (it logs the real error and
goes on); the pre-flight (streams.kafka.admin) then makes one more connection and reads
what it raised: a refused SASL login, a broker certificate not signed by the CA, a
client certificate missing or refused (mutual TLS), a listener speaking another protocol.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator, Mapping
from typing import Any

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
