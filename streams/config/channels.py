"""The JSONL output channels: which topic feeds each file, and what identifies a record.

Every channel is written exactly once per record id (streams.agents.sink_agent): the
id, not only the Kafka offset, because the same event may reach a topic twice (an
engine that retries, a duplicate published on purpose).

Ids are injective: two different records never share one, whatever characters
their fields hold. An execution's `trace_id` is not an id (several engines run
one trace), so an execution is identified by its whole content: the SHA-256 of
its canonical JSON (keys sorted). A window revision is identified by the JSON
array of its key fields; comparisons, samples and dead letters carry their own id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from streams.config.topics import TopicNames
from streams.domain.windows import emission_id

MIB = 1024 * 1024
SUFFIX = ".jsonl"


@dataclass(frozen=True)
class ChannelConfig:
    """One JSONL output channel.

    `buffer_size` and `auto_flush_seconds` are for the caller that batches lines before
    `PartitionFile.write`; `rotate_bytes` is the size after which the live segment is
    completed and a new one started.
    """

    name: str
    filename: str
    enabled: bool = True
    buffer_size: int = 500
    auto_flush_seconds: float = 1.0
    rotate_bytes: int = 64 * MIB

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("channel name must not be empty")
        if (
            not self.filename.endswith(SUFFIX)
            or len(self.filename) == len(SUFFIX)
            or "/" in self.filename
            or "\\" in self.filename
            or self.filename.startswith(".")
        ):
            raise ValueError(
                f"channel filename must be a plain '<stem>.jsonl' name, got {self.filename!r}"
            )
        if self.buffer_size < 1:
            raise ValueError("buffer_size must be >= 1")
        if not self.auto_flush_seconds > 0:
            raise ValueError("auto_flush_seconds must be > 0")
        if self.rotate_bytes < 1:
            raise ValueError("rotate_bytes must be >= 1")

    @property
    def stem(self) -> str:
        """`filename` without its ``.jsonl`` suffix."""
        return self.filename[: -len(SUFFIX)]


@dataclass(frozen=True)
class Channel:
    """One JSONL channel of the contract."""

    name: str
    filename: str
    topic: Callable[[TopicNames], str]
    # Raises (KeyError, TypeError) for a record that has no id.
    record_id: Callable[[dict[str, Any]], Hashable]
    event_type: str | None = None  # the event type of its records, if they are events
    # Lines are written as canonical JSON (keys sorted) and the id is content_id, so the
    # id is the SHA-256 of the line itself: one encoding per record instead of two.
    canonical: bool = False


def canonical_json(record: dict[str, Any]) -> bytes:
    """`record` as canonical JSON: keys sorted, no whitespace."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def content_id(record: dict[str, Any]) -> bytes:
    """The id of a record that carries none: SHA-256 of its canonical JSON."""
    return hashlib.sha256(canonical_json(record)).digest()


def window_id(record: dict[str, Any]) -> str:
    """The id of a window revision: its key fields as a JSON array."""
    return orjson.dumps(emission_id(record)).decode()


def _field(name: str) -> Callable[[dict[str, Any]], str]:
    def read(record: dict[str, Any]) -> str:
        value = record[name]
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {type(value).__name__}")
        return value

    return read


CHANNELS: tuple[Channel, ...] = (
    Channel("events", "events.jsonl", lambda n: n.typed["engine_execution"],
            content_id, "engine_execution", canonical=True),
    Channel("comparisons", "comparisons.jsonl", lambda n: n.typed["comparison_result"],
            _field("comparison_id"), "comparison_result"),
    Channel("training_samples", "training_samples.jsonl",
            lambda n: n.typed["training_sample"], _field("sample_id"), "training_sample"),
    Channel("aggregated_stats", "aggregated_stats.jsonl", lambda n: n.metrics_windows,
            window_id),
    Channel("dead_letters", "dead_letters.jsonl", lambda n: n.dead_letter, _field("id")),
)


def parse_flag(raw: str, name: str) -> bool:
    """A true/false setting (1/0, true/false, yes/no, on/off); ValueError naming `name`."""
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={raw!r} must be true or false")


def channel_configs(env: Mapping[str, str], rotate_bytes: int) -> tuple[ChannelConfig, ...]:
    """Each channel's settings from ENGINESTREAM_SINK_<NAME>_{ENABLED,FILENAME,
    BUFFER_SIZE,AUTO_FLUSH_SECONDS} (ValueError naming the variable when bad)."""
    configs = []
    for channel in CHANNELS:
        prefix = f"ENGINESTREAM_SINK_{channel.name.upper()}_"

        def get(suffix: str, default: str, prefix: str = prefix) -> tuple[str, str]:
            return prefix + suffix, env.get(prefix + suffix) or default

        name, raw = get("ENABLED", "true")
        enabled = parse_flag(raw, name)
        _, filename = get("FILENAME", channel.filename)
        name, raw = get("BUFFER_SIZE", "500")
        try:
            buffer_size = int(raw)
        except ValueError:
            raise ValueError(f"{name}={raw!r} is not an integer") from None
        name, raw = get("AUTO_FLUSH_SECONDS", "1.0")
        try:
            flush = float(raw)
        except ValueError:
            raise ValueError(f"{name}={raw!r} is not a number") from None
        try:
            config = ChannelConfig(
                name=channel.name,
                filename=filename,
                enabled=enabled,
                buffer_size=buffer_size,
                auto_flush_seconds=flush,
                rotate_bytes=rotate_bytes,
            )
        except ValueError as exc:
            raise ValueError(f"{prefix}*: {exc}") from None
        configs.append(config)
    return tuple(configs)
