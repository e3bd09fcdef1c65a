"""Publishers still open when the interpreter exits are closed then, each within its
own `exit_timeout`, so that an engine that never calls `close()` does not lose what
it buffered without a word (the same promise OpenTelemetry's exporters make).

One `atexit` hook closes every open publisher, newest first. Publishers register on
start and leave on close; the registry holds them strongly, since an open publisher
lives until it is closed anyway (its sender task refers to it).
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Protocol

log = logging.getLogger("streams.client.publisher")


class ClosesAtExit(Protocol):
    def close_at_exit(self) -> None:
        """Flush and close within the publisher's exit timeout; never raise."""


_lock = threading.Lock()
_open: dict[int, ClosesAtExit] = {}
_hooked = False


def track(publisher: ClosesAtExit) -> None:
    """Close `publisher` at exit unless it is closed (and `untrack`ed) before."""
    global _hooked
    with _lock:
        _open[id(publisher)] = publisher
        if not _hooked:
            atexit.register(close_all)
            _hooked = True


def untrack(publisher: ClosesAtExit) -> None:
    """Forget `publisher` (it is closed, or something else closes it)."""
    with _lock:
        _open.pop(id(publisher), None)


def close_all() -> None:
    """Close every publisher still open, newest first (the atexit hook)."""
    with _lock:
        publishers = list(_open.values())[::-1]
        _open.clear()
    for publisher in publishers:
        try:
            publisher.close_at_exit()
        except Exception:  # at exit, one publisher's trouble must not stop the others
            log.exception("enginestream publisher: closing at exit failed")
