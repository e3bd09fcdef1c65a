"""The SDK's TLS options: a file that cannot be used is refused at construction, named
as the caller gave it (the keyword option, or the environment variable)."""

from __future__ import annotations

import pytest

from streams.client import Publisher
from streams.config.settings import Settings
from streams.tls import TLSConfigError
from tests.security.certificates import Certificates, make_certificates
from tests.unit.client.support import unreachable

KEY_PASSWORD = "sdk-key-pw-0c41"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"), KEY_PASSWORD)


def test_a_bad_option_is_named_as_the_option() -> None:
    with pytest.raises(TLSConfigError, match=r"^ssl_certfile=/nonexistent/c\.pem: no such file"):
        Publisher(
            **unreachable(security_protocol="SSL", ssl_certfile="/nonexistent/c.pem"),
            ssl_keyfile="/nonexistent/k.pem",
        )


def test_a_bad_variable_is_named_as_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("KAFKA_SSL_CAFILE", "/nonexistent/ca.pem")
    with pytest.raises(TLSConfigError, match=r"^KAFKA_SSL_CAFILE=/nonexistent/ca\.pem"):
        Publisher(**unreachable())


def test_a_wrong_key_password_is_named_and_never_shown(certs: Certificates) -> None:
    with pytest.raises(TLSConfigError) as raised:
        Publisher(
            **unreachable(security_protocol="SSL"),
            ssl_cafile=str(certs.ca),
            ssl_certfile=str(certs.client_cert),
            ssl_keyfile=str(certs.client_key),
            ssl_key_password="wrong-sdk-pw",
        )
    assert str(raised.value).startswith("ssl_key_password does not decrypt ssl_keyfile=")
    assert "wrong-sdk-pw" not in str(raised.value)


def test_the_mutual_tls_options_reach_the_settings(certs: Certificates) -> None:
    publisher = Publisher(
        Settings(),
        **unreachable(security_protocol="SSL"),
        ssl_cafile=str(certs.ca),
        ssl_certfile=str(certs.client_cert),
        ssl_keyfile=str(certs.client_key),
        ssl_key_password=KEY_PASSWORD,
    )
    assert publisher.settings.ssl_certfile == str(certs.client_cert)
    assert publisher.settings.ssl_keyfile == str(certs.client_key)
    assert publisher.settings.ssl_key_password == KEY_PASSWORD
    assert KEY_PASSWORD not in repr(publisher.settings)
