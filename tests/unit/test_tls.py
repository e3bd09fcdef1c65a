"""streams.tls: the client TLS context from PEM files, and one line naming the file to fix."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest

from streams.tls import ENV_NAMES, TLSConfigError, client_ssl_context
from tests.security.certificates import Certificates, make_certificates

KEY_PASSWORD = "key-pw-3f9a1c"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"), KEY_PASSWORD)


def server_sees(client: ssl.SSLContext, certs: Certificates) -> dict[str, Any]:
    """Handshake with a server that has the broker's certificate and requires a client
    certificate signed by the test CA; answer the client certificate it saw."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(certs.broker_cert, certs.broker_key)
    server.load_verify_locations(certs.ca)
    server.verify_mode = ssl.CERT_REQUIRED
    ours, theirs = socket.socketpair()
    seen: dict[str, Any] = {}

    def serve() -> None:
        try:
            with server.wrap_socket(theirs, server_side=True) as tls:
                seen.update(tls.getpeercert() or {})
                tls.sendall(b"k")
        except ssl.SSLError as exc:  # the client gave up on us: it says why
            seen["server_error"] = exc.reason

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with client.wrap_socket(ours, server_hostname="127.0.0.1") as tls:
        assert tls.recv(1) == b"k"
    thread.join(10)
    return seen


def test_the_context_verifies_the_broker_and_presents_the_client_certificate(
    certs: Certificates,
) -> None:
    context = client_ssl_context(
        str(certs.ca), str(certs.client_cert), str(certs.client_key), KEY_PASSWORD
    )
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    subject = dict(pair[0] for pair in server_sees(context, certs)["subject"])
    assert subject["commonName"] == "enginestream-client"


def test_without_a_ca_file_the_system_cas_are_used() -> None:
    context = client_ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_an_untrusted_broker_fails_the_handshake(certs: Certificates) -> None:
    context = client_ssl_context(
        str(certs.untrusted_ca), str(certs.client_cert), str(certs.client_key), KEY_PASSWORD
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        server_sees(context, certs)


# Inputs that cannot be used -> (the arguments, what the message must say). Paths in
# braces are filled in by the test: {ca}, {cert}, {key} (encrypted), {broker_key},
# {junk} (a text file that is no PEM) and {dir} (a directory).
CASES: dict[str, tuple[dict[str, str], str]] = {
    "missing CA file": ({"cafile": "/nonexistent/ca.pem"}, "KAFKA_SSL_CAFILE="),
    "CA file is a directory": ({"cafile": "{dir}"}, "KAFKA_SSL_CAFILE="),
    "CA file is not PEM": ({"cafile": "{junk}"}, "KAFKA_SSL_CAFILE="),
    "key without certificate": ({"cafile": "{ca}", "keyfile": "{key}"}, "KAFKA_SSL_CERTFILE"),
    "password without certificate": (
        {"cafile": "{ca}", "key_password": KEY_PASSWORD},
        "KAFKA_SSL_CERTFILE",
    ),
    "missing certificate": (
        {"certfile": "/nonexistent/c.pem", "keyfile": "{key}", "key_password": KEY_PASSWORD},
        "KAFKA_SSL_CERTFILE=",
    ),
    "certificate is not PEM": ({"certfile": "{junk}", "keyfile": "{key}"}, "KAFKA_SSL_CERTFILE="),
    "missing key": ({"certfile": "{cert}", "keyfile": "/nonexistent/k.pem"}, "KAFKA_SSL_KEYFILE="),
    "key is not PEM": ({"certfile": "{cert}", "keyfile": "{junk}"}, "KAFKA_SSL_KEYFILE="),
    "no key at all": ({"certfile": "{cert}"}, "KAFKA_SSL_KEYFILE"),
    "encrypted key without password": (
        {"certfile": "{cert}", "keyfile": "{key}"},
        "KAFKA_SSL_KEY_PASSWORD",
    ),
    "wrong key password": (
        {"certfile": "{cert}", "keyfile": "{key}", "key_password": "wrong-pw-77"},
        "KAFKA_SSL_KEY_PASSWORD does not decrypt KAFKA_SSL_KEYFILE=",
    ),
    "key of another certificate": (
        {"certfile": "{cert}", "keyfile": "{broker_key}"},
        "is not the private key of KAFKA_SSL_CERTFILE=",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_unusable_file_is_one_line_naming_its_variable(
    case: str, certs: Certificates, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    paths = {
        "ca": certs.ca,
        "cert": certs.client_cert,
        "key": certs.client_key,
        "broker_key": certs.broker_key,
        "junk": junk,
        "dir": tmp_path,
    }
    template, expected = CASES[case]
    with pytest.raises(TLSConfigError) as raised:
        arguments: dict[str, Any] = {k: v.format(**paths) for k, v in template.items()}
        client_ssl_context(**arguments)
    message = str(raised.value)
    assert expected in message
    assert "\n" not in message
    # A password is never part of the message, right or wrong.
    assert KEY_PASSWORD not in message and "wrong-pw-77" not in message


def test_messages_use_the_names_given(certs: Certificates) -> None:
    names = {key: f"ssl_{key}" for key in ENV_NAMES}
    with pytest.raises(TLSConfigError, match=r"^ssl_key_password does not decrypt ssl_keyfile="):
        client_ssl_context(
            str(certs.ca), str(certs.client_cert), str(certs.client_key), "nope", names=names
        )


def test_a_key_in_the_certificate_file_is_enough(certs: Certificates, tmp_path: Path) -> None:
    both = tmp_path / "both.pem"
    both.write_text(certs.client_cert.read_text() + certs.client_key.read_text())
    context = client_ssl_context(str(certs.ca), str(both), "", KEY_PASSWORD)
    subject = dict(pair[0] for pair in server_sees(context, certs)["subject"])
    assert subject["commonName"] == "enginestream-client"
