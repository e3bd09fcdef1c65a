"""The moment a processor had its first input message in hand, passed from the
processor's process to the bench through a file (named by STAMP_ENV)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

STAMP_ENV = "BENCH_ROUTER_STAMP"
POLL_S = 0.05


def write_stamp(path: str | None) -> None:
    """Record now (epoch seconds) in `path`: the first input message is in hand.
    Written aside and renamed, so that the bench never reads half a number."""
    if path:
        tmp = Path(path + ".tmp")
        tmp.write_text(f"{time.time():.6f}\n")
        tmp.replace(path)


async def wait_stamp(stamp: Path, alive: Callable[[], None], timeout: float = 120.0) -> float:
    """Wait until the processor has written the epoch time at which its processing
    code got its first input message to `stamp`; answer that time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive()
        try:
            text = stamp.read_text().strip()
            if text:
                return float(text)
        except OSError:
            pass
        await asyncio.sleep(POLL_S)
    raise TimeoutError(f"no input message processed within {timeout}s")
