"""The pre-flight's reading of a refused connection: one line naming the setting to fix."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import replace

import pytest
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from streams.config.settings import Settings
from streams.kafka.admin import BrokerUnreachable, check_broker, client_options
from streams.kafka.refusal import explain_refusal, refusal_reason

SERVER = "broker-1:9093"
PASSWORD = "scram-pw-51c2"
SASL = Settings(
    bootstrap_servers=SERVER,
    security_protocol="SASL_SSL",
    sasl_mechanism="SCRAM-SHA-512",
    sasl_username="enginestream",
    sasl_password=PASSWORD,
    ssl_cafile="/etc/kafka/ca.pem",
)
MTLS = replace(SASL, security_protocol="SSL", sasl_username="", sasl_password="")


def verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    """What the ssl module raises when the broker's certificate fails verification."""
    error = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    error.reason = "CERTIFICATE_VERIFY_FAILED"
    error.verify_code = code
    error.verify_message = message
    return error


def alert(reason: str) -> KafkaConnectionError:
    """aiokafka's "connection closed", raised while reading a TLS alert `reason`."""
    tls = ssl.SSLError(1, f"[SSL: {reason}] alert")
    tls.reason = reason
    try:
        try:
            raise tls
        except ssl.SSLError as exc:
            raise KafkaConnectionError(f"Connection at {SERVER} closed") from exc
    except KafkaConnectionError as wrapped:
        return wrapped


CASES = {
    "wrong password": (
        SASL,
        SaslAuthenticationFailed("Authentication failed: invalid credentials"),
        ["refused the SCRAM-SHA-512 login of user 'enginestream'", "KAFKA_SASL_USERNAME",
         "KAFKA_SASL_PASSWORD"],
    ),
    "no user": (
        replace(SASL, sasl_username="", sasl_password=""),
        SaslAuthenticationFailed("Authentication failed"),
        ["wants a SCRAM-SHA-512 login", "set KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"],
    ),
    "mechanism not enabled": (
        replace(SASL, sasl_mechanism="SCRAM-SHA-256"),
        UnsupportedSaslMechanismError("no"),
        ["KAFKA_SASL_MECHANISM=SCRAM-SHA-256"],
    ),
    "login on a listener without SASL": (
        SASL,
        IllegalSaslStateError("no"),
        ["takes no SASL login", "KAFKA_SECURITY_PROTOCOL"],
    ),
    "untrusted broker": (
        SASL,
        verify_error(20, "unable to get local issuer certificate"),
        ["not signed by the CA in KAFKA_SSL_CAFILE=/etc/kafka/ca.pem",
         "set KAFKA_SSL_CAFILE"],
    ),
    "untrusted broker, no CA file": (
        replace(SASL, ssl_cafile=""),
        verify_error(19, "self-signed certificate in certificate chain"),
        ["KAFKA_SSL_CAFILE is not set", "set KAFKA_SSL_CAFILE"],
    ),
    "certificate for another host": (
        SASL,
        verify_error(64, "IP address mismatch, certificate is not valid for '10.0.0.9'."),
        ["is not for that host", "KAFKA_BOOTSTRAP_SERVERS"],
    ),
    "expired broker certificate": (
        SASL,
        verify_error(10, "certificate has expired"),
        ["has expired"],
    ),
    "no client certificate (Java's alert)": (
        MTLS,
        alert("SSLV3_ALERT_BAD_CERTIFICATE"),
        ["requires a client certificate", "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE"],
    ),
    "no client certificate (TLS 1.3's alert)": (
        MTLS,
        alert("TLSV13_ALERT_CERTIFICATE_REQUIRED"),
        ["requires a client certificate", "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE"],
    ),
    "client certificate refused": (
        replace(MTLS, ssl_certfile="/etc/kafka/me.pem", ssl_keyfile="/etc/kafka/me.key"),
        alert("SSLV3_ALERT_CERTIFICATE_UNKNOWN"),
        ["refused the client certificate KAFKA_SSL_CERTFILE=/etc/kafka/me.pem",
         "KAFKA_SSL_KEYFILE"],
    ),
    "TLS to a plaintext listener": (
        MTLS,
        alert("WRONG_VERSION_NUMBER"),
        ["does not speak TLS", "KAFKA_SECURITY_PROTOCOL=SSL"],
    ),
    "plaintext to a TLS listener": (
        replace(SASL, security_protocol="PLAINTEXT"),
        KafkaConnectionError(f"Connection at {SERVER} closed"),
        ["closed the connection", "KAFKA_SECURITY_PROTOCOL=PLAINTEXT"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_refusal_names_the_setting_to_fix(case: str) -> None:
    settings, error, expected = CASES[case]
    message = explain_refusal(error, settings, SERVER)
    assert message is not None
    assert SERVER in message
    for part in expected:
        assert part in message
    assert "\n" not in message
    assert PASSWORD not in message


@pytest.mark.parametrize(
    "error",
    [ConnectionRefusedError(111, "Connection refused"), TimeoutError(), OSError("no route")],
)
def test_nobody_answering_is_not_a_refusal(error: BaseException) -> None:
    assert explain_refusal(error, SASL, SERVER) is None


def test_a_tls_file_that_cannot_be_used_is_named_before_any_connection() -> None:
    settings = replace(MTLS, bootstrap_servers="127.0.0.1:1", ssl_cafile="/nonexistent/ca.pem")
    with pytest.raises(BrokerUnreachable, match=r"^KAFKA_SSL_CAFILE=/nonexistent/ca\.pem: no such"):
        asyncio.run(check_broker(settings, timeout_s=2.0))


def test_a_closed_port_gives_no_reason_and_the_usual_message() -> None:
    settings = Settings(bootstrap_servers="127.0.0.1:1")
    assert asyncio.run(refusal_reason(settings, client_options(settings), 2.0)) is None
    with pytest.raises(BrokerUnreachable, match="Set KAFKA_BOOTSTRAP_SERVERS"):
        asyncio.run(check_broker(settings, timeout_s=2.0))
