"""What the router has already written for a source partition, so that a message
delivered again after a crash is not routed twice.

Every message the router writes carries a header naming the source partition it
came from and the highest source offset it holds (`SOURCE_HEADER`). Messages from
one source partition to one destination partition are written in source order by an
idempotent producer, so for each destination the highest offset found is a clean
boundary: everything at or below it from that source is there, nothing above it is.
A source partition's ledger (saved after each batch's writes were acknowledged)
holds the last source offset fully routed and, per destination, the next offset the
ledger has accounted for; after a crash only the destinations' tails past those
offsets need reading to rebuild the boundaries.

Pure: no Kafka here; streams.agents.router_agent does the reading and writing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

SOURCE_HEADER = "es-source"


def source_header(topic: str, partition: int, offset: int) -> tuple[str, bytes]:
    """The header of a message holding events up to `offset` of a source partition."""
    return SOURCE_HEADER, f"{topic}|{partition}|{offset}".encode()


def parse_source_header(value: bytes) -> tuple[str, int, int] | None:
    """(topic, partition, offset) of a source header, None if it is not one."""
    try:
        topic, partition, offset = value.decode().rsplit("|", 2)
        return topic, int(partition), int(offset)
    except (UnicodeDecodeError, ValueError):
        return None


Destination = tuple[str, int]  # (topic, partition)


@dataclass
class SourceLedger:
    """Routing progress of one source partition."""

    last: int = -1  # every message up to here is routed and saved
    out: dict[Destination, int] = field(default_factory=dict)  # next offset accounted for
    # Highest source offset found on each destination past `out` (rebuilt after a crash).
    written: dict[Destination, int] = field(default_factory=dict)

    def needs(self, offset: int, destination: Destination) -> bool:
        """Whether the events of source `offset` bound for `destination` must be written."""
        return offset > self.last and offset > self.written.get(destination, -1)

    def seen(self, destination: Destination, source_offset: int) -> None:
        """Record a message found on `destination` holding source events up to here."""
        if source_offset > self.written.get(destination, -1):
            self.written[destination] = source_offset

    def routed_through(self, offset: int) -> None:
        """Every message up to `offset` is routed and its writes acknowledged."""
        self.last = max(self.last, offset)

    def acknowledged(self, destination: Destination, next_offset: int) -> None:
        """The broker acknowledged writes to `destination` up to `next_offset` - 1."""
        if next_offset > self.out.get(destination, 0):
            self.out[destination] = next_offset

    def to_state(self) -> dict[str, Any]:
        """JSON-ready state (the rebuilt boundaries are not saved: they are below `last`
        once the batch that used them is saved)."""
        return {"last": self.last, "out": {f"{t}|{p}": o for (t, p), o in self.out.items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SourceLedger:
        """Inverse of to_state."""
        out: dict[Destination, int] = {}
        for key, offset in state.get("out", {}).items():
            topic, partition = key.rsplit("|", 1)
            out[(topic, int(partition))] = int(offset)
        return cls(int(state["last"]), out)


def rebuild(
    ledger: SourceLedger,
    source: tuple[str, int],
    found: Iterable[tuple[Destination, bytes | None]],
) -> None:
    """Fold the source headers of messages read past `ledger.out` into `ledger.written`."""
    topic, partition = source
    for destination, header in found:
        if header is None:
            continue
        parsed = parse_source_header(header)
        if parsed is not None and parsed[:2] == (topic, partition):
            ledger.seen(destination, parsed[2])
