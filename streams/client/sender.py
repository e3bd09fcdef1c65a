"""The publisher's side on its event loop: one idempotent producer and the task that
feeds it.

The sender task takes the groups that are due out of the `Buffer`, packs them into
messages (`streams.client.batching`) and hands those to one idempotent aiokafka
producer; a message's events count as published when the broker acknowledges it,
as dropped when the producer gives up on it. The task also keeps the connection:
it connects (bounded by `connect_timeout_s`), switches the publisher to its no-op
mode when messages wait for an acknowledgement and none comes for
`unavailable_after_s` (or one cannot be handed over in that time), and starts a
fresh producer, with backoff, once the old one has nothing left to retry.

When the event loop ends with the publisher open (`asyncio.run()` returning, which
cancels every task, aiokafka's too), the cancelled task starts a fresh producer,
sends what is buffered and waits for the acknowledgements, at most `last_flush_s`
in all, then hands over to `on_loop_end` to
count the rest and stop the producer: the loop is about to close, so nothing later
could.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, RecordTooLargeError

from streams.client.batching import Batch
from streams.client.buffer import Buffer
from streams.client.metadata_backoff import space_metadata_retries

log = logging.getLogger("streams.client.publisher")  # the one name for all it logs

TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError)


class Sender:
    """Sends what `buffer` holds to `topic` through a producer made with
    `producer_options`. Everything but `wake()` runs on the event loop of `start()`."""

    def __init__(
        self,
        buffer: Buffer,
        topic: str,
        producer_options: dict[str, Any],
        *,
        connect_timeout_s: float,
        unavailable_after_s: float,
        backoff_s: tuple[float, float],
        last_flush_s: float = 0.0,
        on_loop_end: Callable[[], Awaitable[None]] | None = None,
        explain: Callable[[], Awaitable[str | None]] | None = None,
    ) -> None:
        self._buffer = buffer
        self._topic = topic
        self._producer_options = producer_options
        self._connect_timeout = connect_timeout_s
        self._unavailable_after = unavailable_after_s
        self._tick = min(0.25, unavailable_after_s / 4)
        self._backoff_min, self._backoff_max = backoff_s
        self._last_flush = last_flush_s
        self._on_loop_end = on_loop_end
        self._explain = explain
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = False
        self._producer: AIOKafkaProducer | None = None
        self._partitions: int | None = None
        self._in_flight: dict[int, tuple[float, int]] = {}  # id -> (handed at, events)
        self._last_ack = 0.0
        self._ids = itertools.count()
        self._failed_connects = 0
        # Set while the loop-end flush runs (see _run); done once it has finished.
        self._finishing: asyncio.Future[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the sender task is started (and not stopped)."""
        return self._task is not None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the sender was started on (None before `start()`)."""
        return self._loop

    def on_loop(self) -> bool:
        """Whether the caller runs on the sender's event loop thread."""
        return threading.get_ident() == self._loop_thread

    async def start(self) -> None:
        """Connect (bounded by `connect_timeout_s`; unavailable if that fails) and
        start the sender task on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._buffer.set_connecting()
        if not await self._connect_once():
            self._set_unavailable("no broker answered")
        self._task = self._loop.create_task(self._run(), name="enginestream-publisher")

    def wake(self) -> None:
        """Have the sender look at the buffer now (from any thread)."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        if self.on_loop():
            wake.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to wake
            loop.call_soon_threadsafe(wake.set)

    @property
    def finishing(self) -> bool:
        """Whether the loop-end flush has begun (it closes the publisher itself)."""
        return self._finishing is not None

    async def finished(self) -> None:
        """Wait until the loop-end flush has closed the publisher (at once if none)."""
        if self._finishing is not None:
            await asyncio.shield(self._finishing)

    async def stop(self) -> None:
        """Stop the sender task (the producer stays, see `close_producer`); while the
        loop-end flush runs, wait for it instead of cutting it short."""
        if self._finishing is not None:
            await self.finished()
            return
        task, self._task = self._task, None
        self._stop = True
        if task is None:
            return
        if self._wake is not None:
            self._wake.set()
        for _ in range(20):
            if task.done():
                break
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("enginestream publisher: sender failed", exc_info=task.exception())

    def give_up(self) -> tuple[int, int]:
        """Forget the messages still waiting for an acknowledgement (the caller counts
        them as dropped): how many messages, and how many events they hold."""
        stuck = list(self._in_flight.values())
        self._in_flight.clear()
        return len(stuck), sum(count for _, count in stuck)

    async def close_producer(self, *, abandon: bool) -> None:
        """Stop the producer; with `abandon`, first fail the messages it would
        otherwise retry forever, so that stopping does not wait for them."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        if abandon:
            accumulator = getattr(producer, "_message_accumulator", None)
            if accumulator is not None:
                accumulator.fail_all(KafkaTimeoutError("publisher closed"))
        await _stop_producer(producer)

    # --- the task ----------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._work()
        except asyncio.CancelledError:
            if self._stop or self._on_loop_end is None:
                raise  # stopped by close()
            # Cancelled by the loop's shutdown: the last chance to deliver and count.
            # A close() running meanwhile (its caller cancelled by the same shutdown)
            # waits for this instead of dropping what is being sent (see `finished`).
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # so the timeouts below work; the cancel is re-raised
            self._stop = True
            self._task = None
            self._finishing = asyncio.get_running_loop().create_future()
            try:
                if self._last_flush > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._last_flush):
                            await self._last_chance(time.monotonic() + self._last_flush)
                await self._on_loop_end()
            except Exception:
                log.exception("enginestream publisher: the last flush failed")
            finally:
                self._finishing.set_result(None)
            raise

    async def _last_chance(self, deadline: float) -> None:
        """Deliver what is buffered through a fresh producer before `deadline`: the
        loop's shutdown cancelled the old one's own tasks along with ours, so it can
        send no more (what it held unacknowledged is counted as dropped)."""
        await self.close_producer(abandon=True)
        if self._buffer.pending() and await self._connect_once():
            await self._send_everything(deadline)

    async def _send_everything(self, deadline: float) -> None:
        """Hand every buffered event to the producer and wait for the broker's answers,
        until `deadline`."""
        with self._buffer.flushing():
            while self._buffer.pending() and time.monotonic() < deadline:
                producer = self._producer
                if producer is None or self._buffer.state != "connected":
                    return
                batches = self._buffer.take(self._partition_count(producer))
                if batches:
                    await self._send(batches)
                else:
                    await asyncio.sleep(0.005)

    async def _work(self) -> None:
        backoff = self._backoff_min
        while not self._stop:
            try:
                if self._producer is None:
                    await self._idle(backoff, scan=False)
                    if self._stop:
                        return
                    if await self._connect_once():
                        backoff = self._backoff_min
                    else:
                        backoff = min(backoff * 2, self._backoff_max)
                    continue
                self._check_stall()
                if self._buffer.state == "unavailable":
                    if not self._in_flight:
                        # Nothing left for this producer to retry: start afresh.
                        producer, self._producer = self._producer, None
                        await _stop_producer(producer)
                        backoff = self._backoff_min
                    else:
                        await self._idle(self._tick, scan=False)
                    continue
                batches = self._buffer.take(self._partition_count(self._producer))
                if batches:
                    await self._send(batches)
                else:
                    await self._idle(self._tick if self._in_flight else None, scan=True)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the sender die: log, back off, go on
                log.exception("enginestream publisher: unexpected error in the sender")
                await asyncio.sleep(self._backoff_min)

    async def _idle(self, timeout: float | None, *, scan: bool) -> None:
        """Sleep until woken, or `timeout`, or (with `scan`) the next batch is due."""
        wake = self._wake
        assert wake is not None
        due = self._buffer.due_in(scan=scan)
        if due is not None:
            timeout = due if timeout is None else min(timeout, due)
        if timeout is not None and timeout <= 0:
            return
        wake.clear()
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancel that
        # arrives as its timeout fires, and the task would then never end.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await wake.wait()

    def _partition_count(self, producer: AIOKafkaProducer) -> int | None:
        """The topic's partitions in the producer's metadata now (while it has none,
        the last count known)."""
        parts = producer.client.cluster.partitions_for_topic(self._topic)
        if parts:
            self._partitions = len(parts)
        return self._partitions

    async def _send(self, batches: list[Batch]) -> None:
        producer = self._producer
        assert producer is not None
        for i, batch in enumerate(batches):
            try:
                future = await asyncio.wait_for(
                    producer.send(
                        self._topic,
                        batch.value(),
                        key=batch.key,
                        partition=batch.partition,
                        headers=batch.headers,
                    ),
                    self._unavailable_after,
                )
            except asyncio.CancelledError:
                self._buffer.requeue(batches[i:])
                raise
            except TOO_LARGE:
                self._buffer.settle(batch.count, "too_large", sending=True)
                continue
            except Exception as exc:
                # Not handed over (a timeout cancels the hand-over): keep them.
                self._buffer.requeue(batches[i:])
                self._set_unavailable(f"the producer did not take a message ({exc!r})")
                return
            self._register(future, batch.count)

    def _register(self, future: asyncio.Future[Any], count: int) -> None:
        ident = next(self._ids)
        self._in_flight[ident] = (time.monotonic(), count)
        self._buffer.handed_over(count)
        future.add_done_callback(functools.partial(self._delivered, ident))

    def _delivered(self, ident: int, future: asyncio.Future[Any]) -> None:
        entry = self._in_flight.pop(ident, None)
        if entry is None:  # already counted by close()
            return
        count = entry[1]
        error = None if future.cancelled() else future.exception()
        if future.cancelled() or error is not None:
            too_large = isinstance(error, TOO_LARGE)
            self._buffer.settle(count, "too_large" if too_large else "broker_unavailable")
            log.warning("enginestream publisher: %d events not delivered (%r)", count, error)
            return
        self._last_ack = time.monotonic()
        self._buffer.settle(count, None)
        if self._buffer.state == "unavailable":
            self._set_connected()
            self.wake()

    def _check_stall(self) -> None:
        """Unavailable when messages wait for an acknowledgement and none came for
        `unavailable_after_s` (counted from the later of the oldest hand-over and the
        last acknowledgement, so a backlog being worked off is not a stall)."""
        if self._buffer.state != "connected" or not self._in_flight:
            return
        oldest = next(iter(self._in_flight.values()))[0]  # handed over in order
        if time.monotonic() - max(oldest, self._last_ack) > self._unavailable_after:
            self._set_unavailable(f"no acknowledgement for {self._unavailable_after:.1f}s")

    # --- connection state ----------------------------------------------------------------

    async def _connect_once(self) -> bool:
        """Start a fresh producer and learn the topic's partitions (bounded by
        `connect_timeout_s`); False, with the producer stopped, on any failure."""
        producer = AIOKafkaProducer(**self._producer_options)  # bad options raise here
        space_metadata_retries(producer, self._producer_options["retry_backoff_ms"] / 1000)
        stage = "connect"
        try:
            await asyncio.wait_for(producer.start(), self._connect_timeout)
            stage = "topic"
            parts = await asyncio.wait_for(
                producer.partitions_for(self._topic), self._connect_timeout
            )
        except Exception as exc:
            await _stop_producer(producer)
            self._failed_connects += 1
            what = (
                f"cannot reach Kafka at {self._producer_options['bootstrap_servers']}"
                if stage == "connect"
                else f"topic {self._topic} is not available (create it: enginestream topics create)"
            )
            level = logging.WARNING if self._failed_connects == 1 else logging.DEBUG
            # A broker that answers and turns the publisher away (its login, a
            # certificate) is a setting to fix, not an outage to wait out: say which.
            # Not after a timeout: nothing answered, and asking again would double the wait.
            refusal = None
            if (stage == "connect" and self._failed_connects == 1 and self._explain is not None
                    and not isinstance(exc, TimeoutError)):
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(min(self._connect_timeout, 5.0)):
                        refusal = await self._explain()
            if refusal:
                log.error("enginestream publisher: %s; events are dropped until it is fixed",
                          refusal)
            else:
                log.log(level, "enginestream publisher: %s (%r); events are dropped until it is",
                        what, exc)
            return False
        except BaseException:
            await _stop_producer(producer)
            raise
        self._producer = producer
        self._partitions = len(parts) or None
        self._failed_connects = 0
        self._set_connected()
        return True

    def _set_connected(self) -> None:
        if self._buffer.set_connected():
            log.warning("enginestream publisher: broker available again, publishing resumed")

    def _set_unavailable(self, why: str) -> None:
        previous = self._buffer.set_unavailable()
        if previous is None:
            return
        # A failed first connection has just been logged as a warning already.
        level = logging.WARNING if previous == "connected" else logging.INFO
        log.log(level, "enginestream publisher: broker unavailable (%s); dropping new events", why)


async def _stop_producer(producer: AIOKafkaProducer | None) -> None:
    if producer is None:
        return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.stop(), 5.0)
