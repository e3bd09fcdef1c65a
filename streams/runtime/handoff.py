"""Decoded messages handed from the router to the agents of the same worker that read them.

The router decodes every event to validate it and encodes it again to write it to its
typed topic; the window agent and the sinks of the same worker then read that message
back from Kafka and would decode it once more each. Instead, once the broker has
acknowledged a message, the router leaves its decoded events here under the message's
(topic, partition, offset), and a reader that gets the message takes them.

It is a shortcut, never a source of truth: a message that is not here (another worker
wrote it, it was evicted, the worker restarted) is decoded as before, and an entry is
used only when its bytes are the message's bytes. Every reader of a message gets the
same objects, so readers must not change them. The entries are bounded by their number
of events; the oldest go first.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any

# Enough for a router batch or several while the readers catch up (about 1.5 KB each).
DEFAULT_MAX_EVENTS = 100_000

Key = tuple[str, int, int]  # (topic, partition, offset)


@dataclass(slots=True)
class _Entry:
    value: bytes
    docs: list[Any]
    readers: int  # readers that have not taken it yet


class Handoff:
    """Decoded events of the messages this worker wrote, for its own readers."""

    def __init__(self, max_events: int = DEFAULT_MAX_EVENTS) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {max_events!r}")
        self.max_events = max_events
        self._readers: Counter[str] = Counter()
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._fed: set[str] = set()  # topics something was left for, ever
        self._events = 0
        self.hits = 0
        self.misses = 0
        self.evicted = 0

    def reads(self, topic: str) -> None:
        """Declare one more reader of `topic` in this worker."""
        self._readers[topic] += 1

    def wants(self, topic: str) -> bool:
        """Whether anyone in this worker reads `topic`."""
        return self._readers[topic] > 0

    def put(self, topic: str, partition: int, offset: int, value: bytes, docs: list[Any]) -> None:
        """Leave the decoded `docs` of the message `value` written at `offset`."""
        readers = self._readers[topic]
        if not readers:
            return
        self._fed.add(topic)
        key = (topic, partition, offset)
        old = self._entries.pop(key, None)
        if old is not None:
            self._events -= len(old.docs)
        self._entries[key] = _Entry(value, docs, readers)
        self._events += len(docs)
        while self._events > self.max_events and len(self._entries) > 1:
            _, dropped = self._entries.popitem(last=False)
            self._events -= len(dropped.docs)
            self.evicted += 1

    def take(
        self, topic: str, partition: int, offset: int, value: bytes | None
    ) -> list[Any] | None:
        """The decoded events of the message read at (topic, partition, offset) when
        its bytes are `value`; None when they must be decoded."""
        if topic not in self._fed:
            return None  # written by others only (a sink of the window records)
        key = (topic, partition, offset)
        entry = self._entries.get(key)
        if entry is None or value is None or entry.value != value:
            self.misses += 1
            return None
        entry.readers -= 1
        if entry.readers <= 0:
            del self._entries[key]
            self._events -= len(entry.docs)
        self.hits += 1
        return entry.docs

    def stats(self) -> dict[str, int]:
        """Counts since start: messages taken from here, decoded instead (of the topics
        the router fed), evicted before every reader took them."""
        return {"hits": self.hits, "misses": self.misses, "evicted": self.evicted,
                "held_events": self._events}  # fmt: skip
