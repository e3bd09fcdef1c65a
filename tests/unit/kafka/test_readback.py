"""The takeover read waits for a broker that does not answer, up to its patience."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

from streams.config.settings import Settings
from streams.kafka import readback
from streams.kafka.readback import KafkaTails


class FlakyConsumer:
    """An AIOKafkaConsumer stand-in whose start and end_offsets fail `failures` times
    each, as while the broker is down."""

    failures = 0
    instances: list[FlakyConsumer] = []

    def __init__(self, **options: Any) -> None:
        self.stopped = False
        FlakyConsumer.instances.append(self)

    async def start(self) -> None:
        if FlakyConsumer.failures > 0:
            FlakyConsumer.failures -= 1
            raise KafkaConnectionError("Unable to bootstrap")

    async def stop(self) -> None:
        self.stopped = True

    def assign(self, tps: list[Any]) -> None:
        self.tps = tps

    async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        if FlakyConsumer.failures > 0:
            FlakyConsumer.failures -= 1
            raise KafkaTimeoutError()
        return {tp: 7 for tp in tps}


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> type[FlakyConsumer]:
    monkeypatch.setattr(readback, "AIOKafkaConsumer", FlakyConsumer)
    monkeypatch.setattr(readback, "RETRY_S", 0.01)
    FlakyConsumer.instances = []
    return FlakyConsumer


def test_connects_and_reads_once_the_broker_answers(flaky: type[FlakyConsumer]) -> None:
    flaky.failures = 3  # start fails three times...

    async def read() -> dict[tuple[str, int], int]:
        async with KafkaTails(Settings.from_env({}), patience_s=5) as tails:
            flaky.failures = 2  # ...then end_offsets twice
            return await tails.end_offsets([("t", 0), ("t", 1)])

    assert asyncio.run(read()) == {("t", 0): 7, ("t", 1): 7}
    assert len(flaky.instances) == 4
    assert all(c.stopped for c in flaky.instances)  # the failed ones too


def test_gives_up_after_its_patience(flaky: type[FlakyConsumer]) -> None:
    flaky.failures = 10**9
    with pytest.raises(KafkaConnectionError):
        asyncio.run(KafkaTails(Settings.from_env({}), patience_s=0.2).__aenter__())
    assert 5 <= len(flaky.instances) <= 40  # retried every RETRY_S, then stopped
