"""A synchronous facade over `Publisher`, for engines that are not asyncio programs.

`SyncPublisher` runs a `Publisher` on its own event loop in a daemon thread.
`publish()` is the publisher's own thread-safe call, made on the caller's thread:
it appends to the bounded buffer and returns - within `block_budget` (seconds) even when
the buffer is full (it then waits at most that long for room, and drops), and at
once while the broker is unavailable (no-op mode). It never waits on the network.
`flush()` and `close()` block the caller, each for at most its timeout (plus a
small margin for the thread hand-over). Still open at interpreter exit, it is
closed then, within `exit_timeout` seconds (see `streams.client.exit_flush`): the
loop thread is a daemon, so without that what it buffered would vanish.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Mapping
from types import TracebackType
from typing import Any, TypeVar

from streams.client import exit_flush
from streams.client.buffer import PublisherStats, State
from streams.client.publisher import Publisher
from streams.client.typed import EventMethods
from streams.config.settings import Settings

T = TypeVar("T")

# Extra time a blocking call allows the loop thread beyond the operation's own timeout.
_MARGIN_S = 5.0


class SyncPublisher(EventMethods):
    """A `Publisher` for threads: same options (see `Publisher`), same guarantees,
    the same one-call methods (`execution(...)`, `engine_started(...)`, ...).

    The constructor connects, waiting at most `connect_timeout` seconds (it never raises
    for an unreachable broker: it starts in no-op mode and reconnects in the
    background). Use it as a context manager, or call `close()`.
    """

    def __init__(self, settings: Settings | None = None, **options: Any) -> None:
        self._publisher = Publisher(settings, **options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._serve, name="enginestream-publisher", daemon=True
        )
        self._closed = False
        self._thread.start()
        try:
            self._call(self._publisher.start(), self._publisher.connect_timeout + _MARGIN_S)
        except BaseException:
            self._stop_loop()
            raise
        # Closed at exit by this facade (the inner loop runs in the thread, not here).
        exit_flush.untrack(self._publisher)
        if self._publisher.exit_timeout > 0:
            exit_flush.track(self)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError("the publisher's event loop did not answer in time") from None

    def _stop_loop(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=_MARGIN_S)

    @property
    def publisher(self) -> Publisher:
        """The underlying asyncio publisher (runs on this facade's loop thread)."""
        return self._publisher

    @property
    def topic(self) -> str:
        """The topic events are published to (the prefixed `engine.ingest`)."""
        return self._publisher.topic

    @property
    def state(self) -> State:
        """new, connecting, connected, unavailable (no-op mode) or closed."""
        return self._publisher.state

    @property
    def stats(self) -> PublisherStats:
        """A consistent snapshot of the counters."""
        return self._publisher.stats

    def publish(self, event_type: str, event: Mapping[str, Any]) -> bool:
        """Accept `event` for sending (True) or drop it (False, counted); returns
        within `block_budget` seconds. Raises only `ConfidentialityError` / `InvalidEvent`
        (see `Publisher.publish`)."""
        return self._publisher.publish(event_type, event)

    def flush(self, timeout: float = 10.0) -> bool:
        """Send what is buffered and wait up to `timeout` seconds until every
        accepted event is acknowledged or dropped; False when time ran out."""
        if self._closed:
            return self.stats.pending == 0
        return self._call(self._publisher.flush(timeout), timeout + _MARGIN_S)

    def close(self, timeout: float = 10.0) -> PublisherStats:
        """Flush for up to `timeout` seconds, drop the rest, stop the loop thread;
        answers the final stats. Safe to call twice."""
        if not self._closed:
            self._closed = True
            exit_flush.untrack(self)
            try:
                self._call(self._publisher.close(timeout), timeout + 2 * _MARGIN_S)
            finally:
                self._stop_loop()
        return self.stats

    def close_at_exit(self) -> None:
        """`close(exit_timeout)`, at interpreter exit (what is left undelivered is
        counted and logged by the close)."""
        self.close(self._publisher.exit_timeout)

    def __enter__(self) -> SyncPublisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
