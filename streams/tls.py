"""The Kafka client's TLS context, built from PEM files, for every client of the project.

One function, `client_ssl_context`: the CA that signed the broker's certificate
(the system's CAs when none is given) and, for mutual TLS, this client's certificate
chain and private key (encrypted or not). A file that is missing, unreadable or not
what it should be is a `TLSConfigError` whose one line names the variable to fix.

Only the standard library: the SDK uses it without the worker's dependencies.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from types import MappingProxyType

# What each input is called in messages: the environment variables by default.
ENV_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "cafile": "KAFKA_SSL_CAFILE",
        "certfile": "KAFKA_SSL_CERTFILE",
        "keyfile": "KAFKA_SSL_KEYFILE",
        "key_password": "KAFKA_SSL_KEY_PASSWORD",
    }
)

_ENCRYPTED_MARKS = ("ENCRYPTED PRIVATE KEY", "Proc-Type: 4,ENCRYPTED")


class TLSConfigError(ValueError):
    """A TLS file or password cannot be used; the message names the variable to fix."""


def client_ssl_context(
    cafile: str = "",
    certfile: str = "",
    keyfile: str = "",
    key_password: str = "",
    *,
    names: Mapping[str, str] = ENV_NAMES,
) -> ssl.SSLContext:
    """A client TLS context that verifies the broker against `cafile` (the system's
    CAs when empty) and, when `certfile` is given, presents that certificate chain
    with the private key in `keyfile` (or in `certfile` itself), decrypted with
    `key_password`. Raises TLSConfigError naming the variable (`names`) to fix."""
    if cafile:
        _read(cafile, names["cafile"])
    try:
        context = ssl.create_default_context(cafile=cafile or None)
    except ssl.SSLError as exc:
        raise TLSConfigError(
            f"{names['cafile']}={cafile} holds no PEM CA certificate ({_reason(exc)})"
        ) from None
    if not certfile:
        orphans = [names[f] for f, v in (("keyfile", keyfile), ("key_password", key_password)) if v]
        if orphans:
            raise TLSConfigError(
                f"{orphans[0]} is set but {names['certfile']} is not: for mutual TLS set "
                f"{names['certfile']} and {names['keyfile']} (PEM), or neither"
            )
        return context
    _load_chain(context, certfile, keyfile, key_password, names)
    return context


def _load_chain(
    context: ssl.SSLContext,
    certfile: str,
    keyfile: str,
    key_password: str,
    names: Mapping[str, str],
) -> None:
    cert_text = _read(certfile, names["certfile"])
    if "-----BEGIN CERTIFICATE-----" not in cert_text:
        raise TLSConfigError(f"{names['certfile']}={certfile} holds no PEM certificate")
    key_name, key_path = (names["keyfile"], keyfile) if keyfile else (names["certfile"], certfile)
    key_text = _read(keyfile, key_name) if keyfile else cert_text
    if "PRIVATE KEY-----" not in key_text:
        raise TLSConfigError(
            f"{key_name}={key_path} holds no PEM private key"
            + ("" if keyfile else f" (set {names['keyfile']} to the key's file)")
        )
    encrypted = any(mark in key_text for mark in _ENCRYPTED_MARKS)
    if encrypted and not key_password:
        raise TLSConfigError(
            f"{key_name}={key_path} is encrypted: set {names['key_password']} to its password"
        )

    def password() -> bytes:
        # Never OpenSSL's prompt on the terminal: a worker has nobody to answer it.
        if not key_password:
            raise TLSConfigError(f"{key_name}={key_path} needs {names['key_password']}")
        return key_password.encode()

    try:
        context.load_cert_chain(certfile, keyfile or None, password=password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TLSConfigError(
                f"{key_name}={key_path} is not the private key of "
                f"{names['certfile']}={certfile}"
            ) from None
        if encrypted:
            raise TLSConfigError(
                f"{names['key_password']} does not decrypt {key_name}={key_path}"
            ) from None
        raise TLSConfigError(
            f"{names['certfile']}={certfile} and {key_name}={key_path} cannot be loaded "
            f"as a PEM certificate chain and key ({_reason(exc)})"
        ) from None


def _read(path: str, name: str) -> str:
    """The text of `path`, or TLSConfigError naming `name` when it cannot be read."""
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return file.read()
    except FileNotFoundError:
        raise TLSConfigError(f"{name}={path}: no such file") from None
    except IsADirectoryError:
        raise TLSConfigError(f"{name}={path} is a directory, not a PEM file") from None
    except OSError as exc:
        raise TLSConfigError(f"{name}={path} cannot be read ({exc.strerror})") from None


def _reason(exc: ssl.SSLError) -> str:
    """OpenSSL's short reason (NO_CERTIFICATE_OR_CRL_FOUND), else its message."""
    if exc.reason:
        return str(exc.reason)
    return str(exc.args[-1]) if exc.args else str(exc)
