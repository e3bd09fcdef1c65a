"""The secured broker for tests/security: made once per session, stopped whatever happens.

Its SCRAM password and the client key's password are random for each session, so
that finding either string in any output can only mean it leaked.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.security.certificates import make_certificates
from tests.security.secure_broker import SecureBroker

SCRAM_USER = "enginestream"


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """A running broker with a SASL_SSL (SCRAM-SHA-512) and a mutual-TLS listener."""
    directory = tmp_path_factory.mktemp("secure-broker")
    certs = make_certificates(
        directory / "certs", client_key_password=f"keypw-{secrets.token_urlsafe(12)}"
    )
    broker = SecureBroker(
        directory, certs, users={SCRAM_USER: f"scram-{secrets.token_urlsafe(12)}"}
    )
    try:
        yield broker.start()
    finally:
        broker.stop()
