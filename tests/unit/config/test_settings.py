"""Settings tests: laptop defaults, every environment variable, and bad values as
SettingsError naming the variable (never a stack trace from deep inside the worker)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from streams.config.channels import CHANNELS, channel_configs
from streams.config.settings import Settings, SettingsError, parse_bootstrap

MIB64 = 64 * 1024 * 1024

# variable -> (a valid non-default value, the field it sets, the value the field gets)
VARIABLES: dict[str, tuple[str, str, Any]] = {
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka-1:9093,kafka-2:9093", "bootstrap_servers",
                                "kafka-1:9093,kafka-2:9093"),
    "ENGINESTREAM_APP_ID": ("es-test", "app_id", "es-test"),
    "ENGINESTREAM_TOPIC_PREFIX": ("t1.", "topic_prefix", "t1."),
    "ENGINESTREAM_DATA_DIR": ("/tmp/es-data", "data_dir", Path("/tmp/es-data")),
    "ENGINESTREAM_WEB_HOST": ("0.0.0.0", "web_host", "0.0.0.0"),
    "ENGINESTREAM_WEB_PORT": ("8080", "web_port", 8080),
    "ENGINESTREAM_API_TOKEN": ("tok-secret-123", "api_token", "tok-secret-123"),
    "ENGINESTREAM_LOG_LEVEL": ("debug", "log_level", "debug"),
    "ENGINESTREAM_LOG_FORMAT": ("json", "log_format", "json"),
    "ENGINESTREAM_PARTITIONS": ("12", "partitions", 12),
    "ENGINESTREAM_REPLICATION_FACTOR": ("3", "replication_factor", 3),
    "ENGINESTREAM_MIN_INSYNC_REPLICAS": ("2", "min_insync_replicas", 2),
    "ENGINESTREAM_WEB_ADVERTISED_URL": ("http://10.0.0.7:6066/", "web_advertised_url",
                                        "http://10.0.0.7:6066"),
    "ENGINESTREAM_API_TOKEN_FOR_READS": ("true", "api_token_for_reads", True),
    "ENGINESTREAM_MAX_MESSAGE_BYTES": ("2000000", "max_message_bytes", 2_000_000),
    "ENGINESTREAM_DEAD_LETTER_KEEP_BYTES": ("1024", "dead_letter_keep_bytes", 1024),
    "ENGINESTREAM_MAX_DEPTH": ("16", "max_depth", 16),
    "ENGINESTREAM_MAX_FUTURE_SKEW": ("60", "max_future_skew_s", 60.0),
    "ENGINESTREAM_OUTPUT_BATCH_BYTES": ("65536", "output_batch_bytes", 65536),
    "ENGINESTREAM_ROUTER_TAKE": ("50", "router_take", 50),
    "ENGINESTREAM_STATE_TAKE": ("70", "state_take", 70),
    "ENGINESTREAM_FETCH_WAIT": ("0.25", "fetch_wait_s", 0.25),
    "ENGINESTREAM_COMMIT_INTERVAL": ("30", "commit_interval_s", 30.0),
    "ENGINESTREAM_BATCH_WITHIN": ("0.5", "batch_within_s", 0.5),
    "ENGINESTREAM_WINDOW_SIZES": ("300, 60,60", "window_sizes", (60, 300)),
    "ENGINESTREAM_WINDOW_LATENESS": ("2.5", "window_lateness_s", 2.5),
    "ENGINESTREAM_WINDOW_GRACE": ("10", "window_grace_s", 10.0),
    "ENGINESTREAM_WINDOW_RETENTION": ("7200", "window_retention_s", 7200.0),
    "ENGINESTREAM_WINDOW_IDLE_TIMEOUT": ("0.5", "window_idle_timeout_s", 0.5),
    "ENGINESTREAM_SESSION_IDLE_TIMEOUT": ("60", "session_idle_timeout_s", 60.0),
    "ENGINESTREAM_TIER_GOLD": ("0.95", "tier_gold", 0.95),
    "ENGINESTREAM_TIER_SILVER": ("0.8", "tier_silver", 0.8),
    "ENGINESTREAM_TIER_BRONZE": ("0.4", "tier_bronze", 0.4),
    "ENGINESTREAM_SINK_EVENTS_ENABLED": (
        "false", "sinks", channel_configs({"ENGINESTREAM_SINK_EVENTS_ENABLED": "false"}, MIB64)),
    "KAFKA_SECURITY_PROTOCOL": ("SASL_SSL", "security_protocol", "SASL_SSL"),
    "KAFKA_SASL_MECHANISM": ("SCRAM-SHA-256", "sasl_mechanism", "SCRAM-SHA-256"),
    "KAFKA_SASL_USERNAME": ("svc-enginestream", "sasl_username", "svc-enginestream"),
    "KAFKA_SASL_PASSWORD": ("pw-secret-456", "sasl_password", "pw-secret-456"),
    "KAFKA_SSL_CAFILE": ("/etc/ssl/ca.pem", "ssl_cafile", "/etc/ssl/ca.pem"),
    "KAFKA_SSL_CERTFILE": ("/etc/ssl/me.pem", "ssl_certfile", "/etc/ssl/me.pem"),
    "KAFKA_SSL_KEYFILE": ("/etc/ssl/me.key", "ssl_keyfile", "/etc/ssl/me.key"),
    "KAFKA_SSL_KEY_PASSWORD": ("key-secret-789", "ssl_key_password", "key-secret-789"),
}  # fmt: skip
SECRETS = {"api_token", "sasl_password", "ssl_key_password"}


class RecordingEnv(dict[str, str]):
    """An environment that remembers which variables were asked for."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.asked: list[str] = []

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.append(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.append(key)
        return super().__getitem__(key)


# ------------------------------------------------------------------ defaults --


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.app_id == "enginestream"
    assert settings.topic_prefix == ""
    assert settings.data_dir == Path("data")
    assert (settings.web_host, settings.web_port) == ("127.0.0.1", 6066)
    assert settings.log_level == "warning"
    assert (settings.partitions, settings.replication_factor) == (4, 0)  # 0: auto
    assert settings.min_insync_replicas == 0
    assert settings.web_advertised_url == "" and not settings.api_token_for_reads
    assert settings.max_message_bytes == 1_000_000
    assert settings.dead_letter_keep_bytes == 65_536
    assert settings.security_protocol == "PLAINTEXT"
    assert settings.api_token == settings.sasl_password == ""


def test_defaults_are_sane_together() -> None:
    settings = Settings()
    assert settings.dead_letter_keep_bytes <= settings.max_message_bytes
    assert settings.output_batch_bytes <= settings.max_message_bytes
    assert settings.router_take >= 1 and settings.state_take >= 1 and settings.batch_within_s > 0


def test_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENGINESTREAM_WEB_PORT", "7070")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:29092")
    settings = Settings.from_env()
    assert settings.web_port == 7070
    assert settings.bootstrap_servers == "broker:29092"


# --------------------------------------------------------------- variables --


SINK_VARIABLES = {"ENGINESTREAM_SINK_ROTATE_BYTES"} | {
    f"ENGINESTREAM_SINK_{c.name.upper()}_{suffix}"
    for c in CHANNELS
    for suffix in ("ENABLED", "FILENAME", "BUFFER_SIZE", "AUTO_FLUSH_SECONDS")
}


def test_every_variable_is_known() -> None:
    env = RecordingEnv()
    Settings.from_env(env)
    asked = set(env.asked)
    assert sorted(asked - SINK_VARIABLES) == sorted(set(VARIABLES) - SINK_VARIABLES)
    assert asked >= SINK_VARIABLES


@pytest.mark.parametrize(
    ("name", "raw", "check"),
    [
        ("ENGINESTREAM_SINK_ROTATE_BYTES", "1000", lambda s: {c.rotate_bytes for c in s} == {1000}),
        ("ENGINESTREAM_SINK_DEAD_LETTERS_FILENAME", "dl.jsonl",
         lambda s: s[-1].filename == "dl.jsonl"),
        ("ENGINESTREAM_SINK_COMPARISONS_BUFFER_SIZE", "7", lambda s: s[1].buffer_size == 7),
        ("ENGINESTREAM_SINK_EVENTS_AUTO_FLUSH_SECONDS", "0.25",
         lambda s: s[0].auto_flush_seconds == 0.25),
    ],
)
def test_sink_variables(name: str, raw: str, check: Any) -> None:
    assert check(Settings.from_env({name: raw}).sinks)


@pytest.mark.parametrize(
    ("name", "raw"),
    [("ENGINESTREAM_SINK_EVENTS_ENABLED", "maybe"),
     ("ENGINESTREAM_SINK_EVENTS_BUFFER_SIZE", "lots"),
     ("ENGINESTREAM_SINK_EVENTS_BUFFER_SIZE", "0"),
     ("ENGINESTREAM_SINK_EVENTS_FILENAME", "../escape.jsonl"),
     ("ENGINESTREAM_SINK_EVENTS_AUTO_FLUSH_SECONDS", "soon")],
)
def test_bad_sink_variables(name: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=name.split("_SINK_")[0]):
        Settings.from_env({name: raw})


def test_every_field_is_settable() -> None:
    assert sorted(f for _, f, _ in VARIABLES.values()) == sorted(
        f.name for f in dataclasses.fields(Settings)
    )


@pytest.mark.parametrize("name", sorted(VARIABLES))
def test_each_variable_sets_its_field(name: str) -> None:
    raw, field, expected = VARIABLES[name]
    settings = Settings.from_env({name: raw})
    assert getattr(settings, field) == expected
    assert getattr(settings, field) != getattr(Settings(), field)
    # and nothing else changes
    for other in dataclasses.fields(Settings):
        if other.name != field:
            assert getattr(settings, other.name) == getattr(Settings(), other.name)


def test_all_variables_at_once() -> None:
    settings = Settings.from_env({name: raw for name, (raw, _, _) in VARIABLES.items()})
    for raw, field, expected in VARIABLES.values():
        assert getattr(settings, field) == expected, (field, raw)


@pytest.mark.parametrize("name", sorted(VARIABLES))
def test_empty_value_means_unset(name: str) -> None:
    assert Settings.from_env({name: ""}) == Settings()


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().web_port = 1  # type: ignore[misc]


def test_boundary_values_are_accepted() -> None:
    settings = Settings.from_env(
        {
            "ENGINESTREAM_WEB_PORT": "65535",
            "ENGINESTREAM_PARTITIONS": "1",
            "ENGINESTREAM_MAX_MESSAGE_BYTES": "64",
            "ENGINESTREAM_DEAD_LETTER_KEEP_BYTES": "0",
            "ENGINESTREAM_OUTPUT_BATCH_BYTES": "1024",
            "ENGINESTREAM_BATCH_WITHIN": "0",
        }
    )
    assert settings.web_port == 65535
    assert settings.partitions == 1
    assert settings.max_message_bytes == 64
    assert settings.dead_letter_keep_bytes == 0
    assert settings.output_batch_bytes == 1024
    assert settings.batch_within_s == 0.0


# ---------------------------------------------------------------- bad values --

BAD_VALUES = [
    ("ENGINESTREAM_WEB_PORT", "abc"),
    ("ENGINESTREAM_WEB_PORT", "80.5"),
    ("ENGINESTREAM_WEB_PORT", "0"),
    ("ENGINESTREAM_WEB_PORT", "-1"),
    ("ENGINESTREAM_WEB_PORT", "65536"),
    ("ENGINESTREAM_PARTITIONS", "-1"),
    ("ENGINESTREAM_PARTITIONS", "0"),
    ("ENGINESTREAM_PARTITIONS", "four"),
    ("ENGINESTREAM_REPLICATION_FACTOR", "0"),
    ("ENGINESTREAM_MAX_MESSAGE_BYTES", "63"),
    ("ENGINESTREAM_DEAD_LETTER_KEEP_BYTES", "-5"),
    ("ENGINESTREAM_OUTPUT_BATCH_BYTES", "100"),
    ("ENGINESTREAM_MAX_DEPTH", "3"),
    ("ENGINESTREAM_MAX_DEPTH", "201"),
    ("ENGINESTREAM_MAX_FUTURE_SKEW", "-1"),
    ("ENGINESTREAM_MAX_FUTURE_SKEW", "inf"),
    ("ENGINESTREAM_ROUTER_TAKE", "0"),
    ("ENGINESTREAM_BATCH_WITHIN", "soon"),
    ("ENGINESTREAM_BATCH_WITHIN", "-0.1"),
    ("ENGINESTREAM_BATCH_WITHIN", "nan"),
    ("ENGINESTREAM_BATCH_WITHIN", "inf"),
    ("ENGINESTREAM_WINDOW_SIZES", "abc"),
    ("ENGINESTREAM_WINDOW_SIZES", "60,0"),
    ("ENGINESTREAM_WINDOW_SIZES", "-60"),
    ("ENGINESTREAM_WINDOW_SIZES", ","),
    ("ENGINESTREAM_WINDOW_LATENESS", "-1"),
    ("ENGINESTREAM_WINDOW_LATENESS", "nan"),
    ("ENGINESTREAM_WINDOW_GRACE", "later"),
    ("ENGINESTREAM_WINDOW_RETENTION", "inf"),
    ("ENGINESTREAM_WINDOW_IDLE_TIMEOUT", "0"),
    ("ENGINESTREAM_LOG_LEVEL", "verbose"),
    ("ENGINESTREAM_LOG_LEVEL", "trace"),
    ("ENGINESTREAM_LOG_LEVEL", "warn"),
    ("ENGINESTREAM_LOG_FORMAT", "yaml"),
    ("ENGINESTREAM_LOG_FORMAT", "jsonl"),
    ("KAFKA_SECURITY_PROTOCOL", "TLS"),
    ("KAFKA_SASL_MECHANISM", "GSSAPI"),
    ("KAFKA_BOOTSTRAP_SERVERS", "nohost"),
    ("KAFKA_BOOTSTRAP_SERVERS", "host:"),
    ("KAFKA_BOOTSTRAP_SERVERS", ":9092"),
    ("KAFKA_BOOTSTRAP_SERVERS", "host:port"),
    ("KAFKA_BOOTSTRAP_SERVERS", "host:0"),
    ("KAFKA_BOOTSTRAP_SERVERS", "host:65536"),
    ("KAFKA_BOOTSTRAP_SERVERS", "a:1,nohost"),
    ("KAFKA_BOOTSTRAP_SERVERS", " , ; "),
    ("KAFKA_BOOTSTRAP_SERVERS", "kafka://"),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES, ids=[f"{n}={v}" for n, v in BAD_VALUES])
def test_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: value})
    assert name in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("value", ["", " ", ",", ";;", "kafka://"])
def test_empty_bootstrap_list_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="KAFKA_BOOTSTRAP_SERVERS"):
        parse_bootstrap(value)


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("kafka://a:1;b:2", "a:1,b:2"),
        ("a:1,b:2", "a:1,b:2"),
        (" a:1 , b:2 ", "a:1,b:2"),
        ("a:1,,b:2;", "a:1,b:2"),
        ("kafka://broker.example.com:9092", "broker.example.com:9092"),
        ("[::1]:9092", "[::1]:9092"),
        ("127.0.0.1:65535", "127.0.0.1:65535"),
    ],
)
def test_bootstrap_is_normalised(raw: str, normalised: str) -> None:
    assert parse_bootstrap(raw) == normalised
    assert Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": raw}).bootstrap_servers == normalised


# ------------------------------------------------------------------ describe --


def test_describe_masks_secrets() -> None:
    env = {name: raw for name, (raw, _, _) in VARIABLES.items()}
    shown = Settings.from_env(env).describe()
    assert sorted(shown) == sorted(f.name for f in dataclasses.fields(Settings))
    assert shown["api_token"] == "***"
    assert shown["sasl_password"] == "***"
    text = repr(shown)
    assert "tok-secret-123" not in text
    assert "pw-secret-456" not in text
    assert shown["sasl_username"] == "svc-enginestream"
    assert shown["web_port"] == "8080"
    assert shown["data_dir"] == str(Path("/tmp/es-data"))
    assert all(isinstance(v, str) for v in shown.values())


def test_describe_shows_unset_secrets_as_empty() -> None:
    shown = Settings().describe()
    assert shown["api_token"] == ""
    assert shown["sasl_password"] == ""
    assert shown["bootstrap_servers"] == "127.0.0.1:9092"


def test_repr_never_shows_a_secret() -> None:
    settings = Settings.from_env({"ENGINESTREAM_API_TOKEN": "tok-secret-123",
                                  "KAFKA_SASL_PASSWORD": "pw-secret-456"})  # fmt: skip
    for text in (repr(settings), str(settings)):
        assert "tok-secret-123" not in text and "pw-secret-456" not in text
        assert "bootstrap_servers=" in text  # the rest is still there
    assert settings.api_token == "tok-secret-123"  # and the values are kept


# ------------------------------------------------------ advertised address --


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "http://127.0.0.1:6066"),
        ({"ENGINESTREAM_WEB_HOST": "10.1.2.3", "ENGINESTREAM_WEB_PORT": "7000"},
         "http://10.1.2.3:7000"),
        ({"ENGINESTREAM_WEB_HOST": "0.0.0.0",
          "ENGINESTREAM_WEB_ADVERTISED_URL": "http://127.0.0.3:6066"}, "http://127.0.0.3:6066"),
        ({"ENGINESTREAM_WEB_HOST": "::1"}, "http://[::1]:6066"),
    ],
)
def test_advertised_url(env: dict[str, str], expected: str) -> None:
    assert Settings.from_env(env).advertised_url == expected


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::"])
def test_a_wildcard_bind_advertises_the_host_name(wildcard: str) -> None:
    import socket

    settings = Settings.from_env({"ENGINESTREAM_WEB_HOST": wildcard})
    assert settings.advertised_url == f"http://{socket.gethostname()}:6066"
    assert wildcard not in settings.advertised_url


@pytest.mark.parametrize(
    "raw", ["10.0.0.7:6066", "ftp://h:1", "http://h", "http://h:0", "http://h:1/x",
            "http://0.0.0.0:6066"],
)
def test_a_bad_advertised_url_names_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="ENGINESTREAM_WEB_ADVERTISED_URL"):
        Settings.from_env({"ENGINESTREAM_WEB_ADVERTISED_URL": raw})


@pytest.mark.parametrize("raw", ["maybe", "2"])
def test_a_bad_boolean_names_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="ENGINESTREAM_API_TOKEN_FOR_READS"):
        Settings.from_env({"ENGINESTREAM_API_TOKEN_FOR_READS": raw})


@pytest.mark.parametrize("raw", ["CRITICAL", "Info", "debug"])
def test_the_log_level_is_read_in_any_case(raw: str) -> None:
    assert Settings.from_env({"ENGINESTREAM_LOG_LEVEL": raw}).log_level == raw.lower()


def test_the_log_format_is_read_in_any_case() -> None:
    assert Settings.from_env({"ENGINESTREAM_LOG_FORMAT": "JSON"}).log_format == "json"
