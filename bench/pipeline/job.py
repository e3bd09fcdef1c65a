"""What the comparison systems (the plain loop, Quix Streams) do to each event, in one
place so that both do exactly the same job: find its type (the `event_type` field, else
the message's `event-type` header), validate it against the same JSON Schema file as
the worker, by the worker's own validator (streams.domain.validation: jsonschema_rs for
the verdict, the same `date-time` check), window the executions, write the valid
executions as JSON lines with an fsync per batch."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streams.domain.validation import SchemaRegistry, default_registry

EXECUTION = "engine_execution"
WINDOW_S = 60
LATENESS_S = 5.0  # the worker's default lateness (grace 0); Quix: grace 5 s


def event_type_of(doc: dict[str, Any], headers: Sequence[tuple[str, bytes]] | None) -> str | None:
    """The event's type: its `event_type` field, else the message's header."""
    named = doc.get("event_type")
    if named is not None:
        return str(named)
    for key, value in headers or ():
        if key.lower() == "event-type":
            return value.decode("utf-8", "replace")
    return None


class Checker:
    """Validates events; counts the refused ones (the worker would dead-letter them)."""

    def __init__(self) -> None:
        self.registry: SchemaRegistry = default_registry()
        self.refused = 0

    def valid_type(self, doc: Any, headers: Sequence[tuple[str, bytes]] | None) -> str | None:
        """The type of a valid event (without its `event_type` field), else None."""
        if not isinstance(doc, dict):
            self.refused += 1
            return None
        event_type = event_type_of(doc, headers)
        if event_type is None or event_type not in self.registry:
            self.refused += 1
            return None
        body = {k: v for k, v in doc.items() if k != "event_type"} if "event_type" in doc else doc
        if self.registry.check(event_type, body) is not None:
            self.refused += 1
            return None
        return event_type


class JsonlFile:
    """An append-only JSONL file: `add` buffers lines, `flush` writes and fsyncs them."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.pending: list[bytes] = []

    def add(self, line: bytes) -> None:
        """Buffer one line (without its newline)."""
        self.pending.append(line)

    def flush(self) -> None:
        """Write the buffered lines in one call, then fsync."""
        if self.pending:
            os.write(self.fd, b"\n".join(self.pending) + b"\n")
            os.fsync(self.fd)
            self.pending.clear()

    def close(self) -> None:
        """Flush and close."""
        self.flush()
        os.close(self.fd)


def window_record(engine: str, start: int, acc: Sequence[float]) -> dict[str, Any]:
    """A final window in the fields the benchmark reads from the worker's records
    (schemas/v1/window_stats.json: engine_id, kind, window_start, revision, count)."""
    count, total, low, high = acc
    return {
        "engine_id": engine, "kind": "engine", "window_start": start,
        "window_end": start + WINDOW_S, "window_size_s": WINDOW_S, "revision": 0,
        "count": int(count), "latency_sum": total, "latency_min": low, "latency_max": high,
    }  # fmt: skip
