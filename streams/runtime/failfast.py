"""Stop the worker at once when an agent cannot finish a batch.

Faust's `take_events` acknowledges a batch when its generator is closed, even by an
exception, and the next commit would then skip messages whose effect never reached
disk or the changelog. Exiting without a commit leaves them uncommitted, so the next
worker (or this one restarted) processes them again from the saved state.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable

log = logging.getLogger(__name__)

EXIT_CODE = 70  # EX_SOFTWARE


async def or_exit(step: Awaitable[None], what: str) -> None:
    """Await `step`; on any error, log it and end the process without committing."""
    try:
        await step
    except Exception:
        log.critical("%s failed; exiting so that nothing unprocessed is committed", what,
                     exc_info=True)
        logging.shutdown()
        os._exit(EXIT_CODE)
