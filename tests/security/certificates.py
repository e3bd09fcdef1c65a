"""Certificates made at test time with the openssl command line (PEM, EC P-256).

A CA, the broker's certificate for 127.0.0.1 and localhost signed by it, a client
certificate for mutual TLS signed by it (its key encrypted with a password), and a
second CA that signed nothing the broker uses: a client trusting only that one must
refuse the broker.

openssl rather than a Python package: it comes with every system that has the
CA certificates a JDK needs, so the tests need nothing beyond the broker's own
requirements.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = "2"


@dataclass(frozen=True)
class Certificates:
    """Paths of the PEM files, and the client key's password."""

    ca: Path
    broker_cert: Path
    broker_key: Path  # PKCS#8, unencrypted (the broker takes it inline)
    client_cert: Path
    client_key: Path  # PKCS#8, encrypted with client_key_password
    client_key_password: str
    untrusted_ca: Path


def _openssl(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(
        ["openssl", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", cert, "-days", DAYS, "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )
    return cert, key


def _leaf(
    directory: Path, name: str, ca: tuple[Path, Path], extensions: list[str]
) -> tuple[Path, Path]:
    cert, key, csr = (directory / f"{name}{ext}" for ext in (".pem", ".key", ".csr"))
    ext_file = directory / f"{name}.ext"
    ext_file.write_text("\n".join(extensions) + "\n")
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", csr, "-subj", f"/CN={name}",
        cwd=directory,
    )
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-out", cert, "-days", DAYS, "-extfile", ext_file,
        cwd=directory,
    )
    return cert, key


def make_certificates(directory: Path, client_key_password: str) -> Certificates:
    """Write a CA, the broker's and a client's certificates, and an untrusted CA."""
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl command is needed to make the test certificates")
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca(directory, "enginestream-test-ca")
    broker = _leaf(
        directory,
        "broker",
        ca,
        [
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "extendedKeyUsage=serverAuth",
            "keyUsage=critical,digitalSignature",
        ],
    )
    client = _leaf(
        directory,
        "enginestream-client",
        ca,
        ["extendedKeyUsage=clientAuth", "keyUsage=critical,digitalSignature"],
    )
    client_key = directory / "enginestream-client.encrypted.key"
    _openssl(
        "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", client[1], "-out", client_key,
        "-passout", "env:CLIENT_KEY_PASSWORD",
        cwd=directory,
        env={"CLIENT_KEY_PASSWORD": client_key_password},
    )
    client[1].unlink()
    untrusted_ca, _ = _ca(directory, "untrusted-ca")
    return Certificates(
        ca=ca[0],
        broker_cert=broker[0],
        broker_key=broker[1],
        client_cert=client[0],
        client_key=client_key,
        client_key_password=client_key_password,
        untrusted_ca=untrusted_ca,
    )
