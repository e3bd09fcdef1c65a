"""The worker's Kafka producer is idempotent and waits for every in-sync replica, so a
batch retried after a broker dies is not written twice (streams.runtime.app)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from streams.config.settings import Settings
from streams.runtime.app import IdempotentProducer, create_app


def test_the_worker_producer_is_idempotent_with_acks_all(tmp_path: Path) -> None:
    async def client_options() -> tuple[type, bool, int]:
        settings = Settings(bootstrap_servers="127.0.0.1:1", data_dir=tmp_path)
        app = create_app(settings)
        producer = app.producer
        client = producer._new_producer()  # type: ignore[attr-defined]
        try:
            return type(producer), client._txn_manager is not None, client._sender._acks
        finally:
            await client.stop()

    kind, idempotent, acks = asyncio.run(client_options())
    assert kind is IdempotentProducer
    assert idempotent  # aiokafka keeps producer id and sequence numbers only then
    assert acks == -1  # all in-sync replicas
