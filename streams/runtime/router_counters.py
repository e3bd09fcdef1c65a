"""Running counts of what the worker did, for the web views and the live summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RouterCounters:
    """What the router has read and where it sent it, since the worker started."""

    messages_in: Counter[str] = field(default_factory=Counter)
    events_routed: Counter[str] = field(default_factory=Counter)
    messages_out: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            "messages_in": dict(self.messages_in),
            "events_routed": dict(self.events_routed),
            "messages_out": dict(self.messages_out),
            "dead_letters": dict(self.dead_letters),
        }
