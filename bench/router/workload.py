"""The router benchmark's input: fleet events, about 2% made invalid, encoded once,
and the two shapes of messages they are produced in."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import orjson

from bench.common.kafka import InputMessage, json_array
from streams.config.topics import EVENT_ROUTES
from streams.domain.validation import default_registry
from streams.kafka.fleet import Fleet

INVALID_SHARE = 0.02


@dataclass
class Workload:
    """The benchmark's events, encoded once, and what the outputs must hold."""

    encoded: list[tuple[str, bytes]]  # (event_type, JSON bytes), in generation order
    invalid: int
    valid_per_type: Counter[str]

    @property
    def total(self) -> int:
        """Number of input events."""
        return len(self.encoded)


def make_workload(n: int, seed: int = 1, bad_seed: int = 2) -> Workload:
    """`n` fleet events (seeded), about 2% of them made invalid by removing their
    required entity-id field; each checked against the shipped schemas."""
    registry = default_registry()
    fleet = Fleet(rng=random.Random(seed), engines=50).mixed()
    bad = random.Random(bad_seed)
    encoded: list[tuple[str, bytes]] = []
    valid: Counter[str] = Counter()
    invalid = 0
    for _ in range(n):
        event_type, doc = next(fleet)
        if bad.random() < INVALID_SHARE:
            del doc[EVENT_ROUTES[event_type].key_field]
            if registry.check(event_type, doc) is None:
                raise AssertionError(f"{event_type} without its key field still validates")
            invalid += 1
        else:
            violation = registry.check(event_type, doc)
            if violation is not None:
                raise AssertionError(f"the fleet made an invalid {event_type}: {violation}")
            valid[event_type] += 1
        encoded.append((event_type, orjson.dumps(doc)))
    return Workload(encoded, invalid, valid)


def _typed(event_type: str, value: bytes, events: int) -> InputMessage:
    """A message for engine.ingest: no key, so produced round robin, with the
    `event-type` header the router reads."""
    return InputMessage(value, events, headers=(("event-type", event_type.encode()),))


def single_messages(work: Workload) -> list[InputMessage]:
    """One event per message, in generation order (types mixed)."""
    return [_typed(t, body, 1) for t, body in work.encoded]


def batched_messages(work: Workload, batch: int) -> list[InputMessage]:
    """JSON arrays of up to `batch` events of one type (events grouped by type)."""
    by_type: dict[str, list[bytes]] = {}
    for event_type, body in work.encoded:
        by_type.setdefault(event_type, []).append(body)
    out: list[InputMessage] = []
    for event_type, bodies in by_type.items():
        for start in range(0, len(bodies), batch):
            chunk = bodies[start : start + batch]
            out.append(_typed(event_type, json_array(chunk), len(chunk)))
    return out
