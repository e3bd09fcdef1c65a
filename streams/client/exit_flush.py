"""Publishers still open when the interpreter exits are closed then, each within its
own `exit_timeout`, so that an engine that never calls `close()` does not lose what
it buffered without a word (the same promise OpenTelemetry's exporters make).

One `atexit` hook closes every open publisher, newest first. Publishers register on
start and leave on close; the registry holds them strongly, since an open publisher
lives until it is closed anyway (its sender task refers to it). A forked child starts
with an empty registry: its parent's publishers, and their loop threads, are not its.

One limit, from Python: at interpreter exit host names can no longer be resolved (the
thread pools that resolve them are shut down before `atexit` hooks run), so the flush
there goes through the connections the publisher has open. An event that needs a new
one (to a broker not connected to yet) is dropped, counted and logged. `close()`
before exit, or an `asyncio.run()` that ends with the publisher open, has no such limit.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import Protocol

log = logging.getLogger("streams.client.publisher")


class ClosesAtExit(Protocol):
    """What the registry closes: a publisher (async or sync)."""

    def close_at_exit(self) -> None:
        """Flush and close within the publisher's exit timeout; never raise."""


class ExitRegistry:
    """The open publishers, to close at exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, ClosesAtExit] = {}

    def track(self, publisher: ClosesAtExit) -> None:
        """Close `publisher` at exit unless it is closed (and `untrack`ed) before."""
        with self._lock:
            self._open[id(publisher)] = publisher

    def untrack(self, publisher: ClosesAtExit) -> None:
        """Forget `publisher` (it is closed, or something else closes it)."""
        with self._lock:
            self._open.pop(id(publisher), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)

    def forget_all(self) -> None:
        """Forget every publisher without closing it (a forked child's registry)."""
        with self._lock:
            self._open.clear()

    def close_all(self) -> None:
        """Close every publisher still open, newest first."""
        with self._lock:
            publishers = list(self._open.values())[::-1]
            self._open.clear()
        for publisher in publishers:
            try:
                publisher.close_at_exit()
            except Exception:  # at exit, one publisher's trouble must not stop the others
                log.exception("enginestream publisher: closing at exit failed")


REGISTRY = ExitRegistry()
atexit.register(REGISTRY.close_all)
os.register_at_fork(after_in_child=REGISTRY.forget_all)


def track(publisher: ClosesAtExit) -> None:
    """Close `publisher` at interpreter exit unless it is closed before."""
    REGISTRY.track(publisher)


def untrack(publisher: ClosesAtExit) -> None:
    """Do not close `publisher` at exit (it is closed, or owned by a facade)."""
    REGISTRY.untrack(publisher)
