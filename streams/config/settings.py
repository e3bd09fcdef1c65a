"""Settings: one typed place, read from the environment, with laptop defaults.

Every knob of the worker, the CLI and the tests comes from here. A bad value is a
`SettingsError` naming the variable and what it accepts, never a stack trace.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from streams.config.channels import ChannelConfig, channel_configs, parse_flag


class SettingsError(ValueError):
    """An environment variable holds a value the project cannot use."""


def _int(
    env: Mapping[str, str], name: str, default: int, minimum: int = 0, maximum: int | None = None
) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name}={value} must be at most {maximum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise SettingsError(f"{name}={raw!r} is not a finite number")
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


def _str(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name)
    return default if raw is None or raw == "" else raw


def _choice(
    env: Mapping[str, str],
    name: str,
    default: str,
    choices: tuple[str, ...],
    *,
    casefold: bool = False,
) -> str:
    value = _str(env, name, default)
    if casefold:
        value = value.lower()
    if value not in choices:
        raise SettingsError(f"{name}={value!r} must be one of: {', '.join(choices)}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse_flag(raw, name)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def _replicas(env: Mapping[str, str], name: str) -> int:
    """A replica count, or "auto" (0): decided from the cluster's size at start."""
    raw = env.get(name)
    if raw is None or raw.strip() in ("", "auto"):
        return 0
    return _int(env, name, 0, minimum=1)


def _url(env: Mapping[str, str], name: str) -> str:
    raw = _str(env, name, "").rstrip("/")
    if not raw:
        return ""
    scheme, sep, rest = raw.partition("://")
    host, colon, port = rest.rpartition(":")
    if (
        scheme not in ("http", "https")
        or not sep
        or not colon
        or not host
        or "/" in rest
        or not port.isdigit()
        or not 0 < int(port) < 65536
    ):
        raise SettingsError(
            f"{name}={raw!r} must be http://host:port, the address other workers reach this "
            "one at (example: http://10.0.0.7:6066)"
        )
    if host in WILDCARD_HOSTS:
        raise SettingsError(f"{name}={raw!r} names a wildcard address; peers cannot reach it")
    return raw


def _sizes(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        sizes = tuple(sorted({int(part) for part in raw.split(",") if part.strip()}))
    except ValueError:
        raise SettingsError(f"{name}={raw!r} must be seconds, comma separated (60,300)") from None
    if not sizes or sizes[0] <= 0:
        raise SettingsError(f"{name}={raw!r} must list positive seconds (60,300)")
    return sizes


def parse_bootstrap(raw: str) -> str:
    """Normalise a bootstrap list ("kafka://h:p;h2:p2" or "h:p,h2:p2") to "h:p,h2:p2"."""
    servers = []
    for part in raw.replace(";", ",").split(","):
        part = part.strip()
        if part.startswith("kafka://"):
            part = part[len("kafka://") :]
        if not part:
            continue
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(
                f"KAFKA_BOOTSTRAP_SERVERS entry {part!r} is not host:port "
                "(example: KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092)"
            )
        servers.append(f"{host}:{port}")
    if not servers:
        raise SettingsError("KAFKA_BOOTSTRAP_SERVERS is empty (example: 127.0.0.1:9092)")
    return ",".join(servers)


# How log records are written: faust's text lines, or one JSON object per line.
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# Fields whose values are secrets: masked by describe(), hidden from repr.
SECRET_FIELDS = frozenset({"api_token", "sasl_password", "ssl_key_password"})

# Bind addresses that mean "every interface": never an address a peer can use.
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]", "*", ""})


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the defaults of the embedded laptop setup."""

    bootstrap_servers: str = "127.0.0.1:9092"
    app_id: str = "enginestream"
    # Prepended to every topic name; lets tests and tenants share one cluster.
    topic_prefix: str = ""
    data_dir: Path = field(default_factory=lambda: Path("data"))
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    # The URL other workers use to reach this one's views (forwarding, fan-out); empty:
    # http://web_host:web_port, or the host name when web_host is a wildcard.
    web_advertised_url: str = ""
    api_token: str = field(default="", repr=False)  # a secret: never in repr or logs
    # When true, GET views need the bearer token too (only /health stays open).
    api_token_for_reads: bool = False
    log_level: str = "warning"
    # One of LOG_FORMATS: "json" is for a log pipeline (streams.runtime.logs).
    log_format: str = "text"
    partitions: int = 4
    # Replicas per topic and the in-sync replicas a write needs; 0 = auto: 3 and 2 on a
    # cluster of three or more brokers, else 1 and 1 (see streams.kafka.admin).
    replication_factor: int = 0
    min_insync_replicas: int = 0
    # A message larger than this is dead-lettered as oversized.
    max_message_bytes: int = 1_000_000
    # How much of an oversized message its dead letter keeps (with size and digest).
    dead_letter_keep_bytes: int = 65_536
    # An event nested deeper than this is dead-lettered as too_deep.
    max_depth: int = 32
    # An event time further than this past the wall clock is dead-lettered as
    # future_timestamp (seconds), and never moves a window's watermark.
    max_future_skew_s: float = 300.0
    # Routed events bound for one partition are packed into messages up to this size.
    output_batch_bytes: int = 512_000
    # How many inbound messages the router takes at once before producing.
    router_take: int = 200
    # How many messages the training and state agents (jobs, sessions, engine status)
    # take at once: each batch writes each changed record to the changelog once.
    state_take: int = 500
    # How long any agent waits for a batch to fill before it processes what it has.
    batch_within_s: float = 0.05
    # How long a fetch waits at the broker for data (streams.runtime.fetch_wait).
    fetch_wait_s: float = 0.1
    # How often the consumer commits what the agents have done (faust's default). Longer
    # means fewer commits; a crashed worker's successor re-reads more, and every agent
    # takes a message read twice once.
    commit_interval_s: float = 2.8
    # Event-time windows (seconds): see streams/domain/windows.py for the vocabulary.
    window_sizes: tuple[int, ...] = (60,)
    window_lateness_s: float = 5.0
    window_grace_s: float = 0.0
    window_retention_s: float = 3600.0
    window_idle_timeout_s: float = 30.0
    # JSONL channels (streams/config/channels.py), with ENGINESTREAM_SINK_ROTATE_BYTES in each.
    sinks: tuple[ChannelConfig, ...] = field(
        default_factory=lambda: channel_configs({}, 64 * 1024 * 1024)
    )
    # A device session without events for this long is ended by the app.
    session_idle_timeout_s: float = 1800.0
    # Training-sample tiers by winner score.
    tier_gold: float = 0.9
    tier_silver: float = 0.75
    tier_bronze: float = 0.5
    # Kafka client security, for clusters other than the local one.
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)  # a secret: never in repr or logs
    ssl_cafile: str = ""
    # Mutual TLS: this client's certificate chain and private key (PEM), the key's password.
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_key_password: str = field(default="", repr=False)  # a secret

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from `env` (default: the process environment)."""
        env = os.environ if env is None else env
        rotate = _int(env, "ENGINESTREAM_SINK_ROTATE_BYTES", 64 * 1024 * 1024, minimum=1)
        try:
            sinks = channel_configs(env, rotate)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        return cls(
            bootstrap_servers=parse_bootstrap(
                _str(env, "KAFKA_BOOTSTRAP_SERVERS", cls.bootstrap_servers)
            ),
            app_id=_str(env, "ENGINESTREAM_APP_ID", cls.app_id),
            topic_prefix=_str(env, "ENGINESTREAM_TOPIC_PREFIX", cls.topic_prefix),
            data_dir=Path(_str(env, "ENGINESTREAM_DATA_DIR", "data")),
            web_host=_str(env, "ENGINESTREAM_WEB_HOST", cls.web_host),
            web_port=_int(env, "ENGINESTREAM_WEB_PORT", cls.web_port, minimum=1, maximum=65535),
            web_advertised_url=_url(env, "ENGINESTREAM_WEB_ADVERTISED_URL"),
            api_token=_str(env, "ENGINESTREAM_API_TOKEN", cls.api_token),
            api_token_for_reads=_bool(env, "ENGINESTREAM_API_TOKEN_FOR_READS", False),
            # Any case, as `--log-level` and Python's own level names are.
            log_level=_choice(
                env, "ENGINESTREAM_LOG_LEVEL", cls.log_level, LOG_LEVELS, casefold=True
            ),
            log_format=_choice(
                env, "ENGINESTREAM_LOG_FORMAT", cls.log_format, LOG_FORMATS, casefold=True
            ),
            partitions=_int(env, "ENGINESTREAM_PARTITIONS", cls.partitions, minimum=1),
            replication_factor=_replicas(env, "ENGINESTREAM_REPLICATION_FACTOR"),
            min_insync_replicas=_replicas(env, "ENGINESTREAM_MIN_INSYNC_REPLICAS"),
            max_message_bytes=_int(
                env, "ENGINESTREAM_MAX_MESSAGE_BYTES", cls.max_message_bytes, minimum=64
            ),
            dead_letter_keep_bytes=_int(
                env, "ENGINESTREAM_DEAD_LETTER_KEEP_BYTES", cls.dead_letter_keep_bytes
            ),
            max_depth=_int(env, "ENGINESTREAM_MAX_DEPTH", cls.max_depth, minimum=4, maximum=200),
            max_future_skew_s=_float(
                env, "ENGINESTREAM_MAX_FUTURE_SKEW", cls.max_future_skew_s
            ),
            output_batch_bytes=_int(
                env, "ENGINESTREAM_OUTPUT_BATCH_BYTES", cls.output_batch_bytes, minimum=1024
            ),
            router_take=_int(env, "ENGINESTREAM_ROUTER_TAKE", cls.router_take, minimum=1),
            state_take=_int(env, "ENGINESTREAM_STATE_TAKE", cls.state_take, minimum=1),
            batch_within_s=_float(env, "ENGINESTREAM_BATCH_WITHIN", cls.batch_within_s),
            fetch_wait_s=_float(
                env, "ENGINESTREAM_FETCH_WAIT", cls.fetch_wait_s, minimum=0.001
            ),
            commit_interval_s=_float(
                env, "ENGINESTREAM_COMMIT_INTERVAL", cls.commit_interval_s, minimum=0.1
            ),
            window_sizes=_sizes(env, "ENGINESTREAM_WINDOW_SIZES", cls.window_sizes),
            window_lateness_s=_float(
                env, "ENGINESTREAM_WINDOW_LATENESS", cls.window_lateness_s
            ),
            window_grace_s=_float(env, "ENGINESTREAM_WINDOW_GRACE", cls.window_grace_s),
            window_retention_s=_float(
                env, "ENGINESTREAM_WINDOW_RETENTION", cls.window_retention_s
            ),
            window_idle_timeout_s=_float(
                env, "ENGINESTREAM_WINDOW_IDLE_TIMEOUT", cls.window_idle_timeout_s, minimum=0.1
            ),
            sinks=sinks,
            session_idle_timeout_s=_float(
                env, "ENGINESTREAM_SESSION_IDLE_TIMEOUT", cls.session_idle_timeout_s, minimum=1
            ),
            tier_gold=_float(env, "ENGINESTREAM_TIER_GOLD", cls.tier_gold),
            tier_silver=_float(env, "ENGINESTREAM_TIER_SILVER", cls.tier_silver),
            tier_bronze=_float(env, "ENGINESTREAM_TIER_BRONZE", cls.tier_bronze),
            security_protocol=_choice(
                env,
                "KAFKA_SECURITY_PROTOCOL",
                cls.security_protocol,
                ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
            ),
            sasl_mechanism=_choice(
                env,
                "KAFKA_SASL_MECHANISM",
                cls.sasl_mechanism,
                ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
            ),
            sasl_username=_str(env, "KAFKA_SASL_USERNAME", ""),
            sasl_password=_str(env, "KAFKA_SASL_PASSWORD", ""),
            ssl_cafile=_str(env, "KAFKA_SSL_CAFILE", ""),
            ssl_certfile=_str(env, "KAFKA_SSL_CERTFILE", ""),
            ssl_keyfile=_str(env, "KAFKA_SSL_KEYFILE", ""),
            ssl_key_password=_str(env, "KAFKA_SSL_KEY_PASSWORD", ""),
        )

    @property
    def advertised_url(self) -> str:
        """The URL peers reach this worker's views at (see `web_advertised_url`)."""
        if self.web_advertised_url:
            return self.web_advertised_url
        host = socket.gethostname() if self.web_host in WILDCARD_HOSTS else self.web_host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.web_port}"

    def describe(self) -> dict[str, str]:
        """The settings as strings, secrets masked, for logs and `--help` output."""
        shown = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = "***"
            shown[f.name] = str(value)
        return shown
