"""The JSONL output channels: which topic feeds each file, and what identifies a record.

Every channel is written exactly once per record id (streams.agents.sink_agent): the
id, not only the Kafka offset, because the same event may reach a topic twice (an
engine that retries, a duplicate published on purpose).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from streams.filesink import ChannelConfig
from streams.topics import TopicNames
from streams.windows import emission_id


@dataclass(frozen=True)
class Channel:
    """One JSONL channel of the contract."""

    name: str
    filename: str
    topic: Callable[[TopicNames], str]
    record_id: Callable[[dict[str, Any]], str]


def _window_id(record: dict[str, Any]) -> str:
    return "/".join(str(part) for part in emission_id(record))


CHANNELS: tuple[Channel, ...] = (
    Channel("events", "events.jsonl", lambda n: n.typed["engine_execution"],
            lambda r: str(r["trace_id"])),
    Channel("comparisons", "comparisons.jsonl", lambda n: n.typed["comparison_result"],
            lambda r: str(r["comparison_id"])),
    Channel("training_samples", "training_samples.jsonl",
            lambda n: n.typed["training_sample"], lambda r: str(r["sample_id"])),
    Channel("aggregated_stats", "aggregated_stats.jsonl", lambda n: n.metrics_windows,
            _window_id),
    Channel("dead_letters", "dead_letters.jsonl", lambda n: n.dead_letter,
            lambda r: str(r["id"])),
)


def _flag(raw: str, name: str) -> bool:
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
        enabled = _flag(raw, name)
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
