"""The producer patch (streams.client.metadata_backoff): after a failed metadata
update, the next one waits for the backoff instead of following at once; after a
successful one (or one that was cancelled or raised) there is no wait."""

from __future__ import annotations

import asyncio
import itertools
import time
from types import SimpleNamespace
from typing import Any

from streams.client.metadata_backoff import space_metadata_retries


class FakeClient:
    """aiokafka's client as the patch sees it: `force_metadata_update` answers a
    future that resolves to whether the update succeeded."""

    def __init__(self, outcomes: list[Any]) -> None:
        self.outcomes = outcomes  # True, False, or an exception, one per update
        self.calls: list[float] = []

    def force_metadata_update(self) -> asyncio.Future[Any]:
        self.calls.append(time.monotonic())
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        outcome = self.outcomes.pop(0)
        # Answered later, as a real update is (after the caller has its future).
        if isinstance(outcome, BaseException):
            loop.call_soon(future.set_exception, outcome)
        else:
            loop.call_soon(future.set_result, outcome)
        return future


def patched(outcomes: list[Any], backoff_s: float) -> FakeClient:
    client = FakeClient(outcomes)
    space_metadata_retries(SimpleNamespace(client=client), backoff_s)
    return client


async def update(client: FakeClient) -> Any:
    future = client.force_metadata_update()
    try:
        return await future
    except Exception as exc:
        return exc


def test_a_failed_update_spaces_the_next_one_by_the_backoff() -> None:
    async def scenario() -> tuple[list[Any], list[float]]:
        client = patched([False, False, True, True], backoff_s=0.2)
        results = [await update(client) for _ in range(4)]
        return results, client.calls

    results, calls = asyncio.run(scenario())
    assert results == [False, False, True, True]
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert gaps[0] >= 0.19 and gaps[1] >= 0.19  # each after a failure
    assert gaps[2] < 0.1  # after a success: at once


def test_only_a_failure_answer_counts_as_a_failure() -> None:
    async def scenario() -> list[float]:
        client = patched([RuntimeError("no broker"), True, True], backoff_s=5.0)
        assert isinstance(await update(client), RuntimeError)
        assert await update(client) is True
        assert await update(client) is True
        return client.calls

    calls = asyncio.run(asyncio.wait_for(scenario(), 3))
    assert calls[-1] - calls[0] < 1.0


def test_an_update_waiting_for_the_backoff_can_be_cancelled() -> None:
    async def scenario() -> int:
        client = patched([False, True], backoff_s=5.0)
        await update(client)
        waiting = client.force_metadata_update()
        await asyncio.sleep(0.01)
        waiting.cancel()
        await asyncio.sleep(0.01)
        return len(client.calls)

    assert asyncio.run(asyncio.wait_for(scenario(), 3)) == 1  # the retry never ran
