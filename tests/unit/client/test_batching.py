"""The SDK's messages (streams.client.batching): events are packed by partition of
their entity id, bounded in events and bytes, keyed when they share the id."""

from __future__ import annotations

import orjson

from streams.client import ENGINE_EXECUTION, EVENT_TYPE_HEADER, events
from streams.client.batching import pack
from streams.kafka.partitioner import partition_for


def test_pack_groups_events_by_partition_of_their_entity_and_bounds_messages() -> None:
    items = []
    for i in range(1_000):
        doc = events.execution(f"engine-{i % 13}", "in", "out", latency_ms=i, trace_id=f"t{i}")
        items.append((doc["engine_id"].encode(), orjson.dumps(doc)))
    keyless = events.execution("x", "in", "out", latency_ms=1, trace_id="keyless")
    items.append((None, orjson.dumps(keyless)))
    batches = pack(ENGINE_EXECUTION, items, 4, batch_events=50, batch_bytes=8_000)
    assert sum(b.count for b in batches) == len(items)
    for batch in batches:
        value = batch.value()
        assert batch.count <= 50 and (len(value) <= 8_000 or batch.count == 1)
        decoded = orjson.loads(value)
        docs = decoded if batch.count > 1 else [decoded]
        assert isinstance(decoded, list) == (batch.count > 1)
        for (key, _), doc in zip(batch.items, docs, strict=True):
            if key is None:
                assert batch.partition is None and batch.key is None
            else:
                assert batch.partition == partition_for(key, 4)
                assert doc["engine_id"].encode() == key
        keys = {key for key, _ in batch.items}
        assert batch.key == (next(iter(keys)) if len(keys) == 1 else None)
    # Publish order is kept within each entity.
    order = [orjson.loads(body)["trace_id"] for b in batches for _, body in b.items]
    order.remove("keyless")
    for n in range(13):
        mine = [t for t in order if int(t[1:]) % 13 == n]
        assert mine == sorted(mine, key=lambda t: int(t[1:]))
    # Without partition metadata everything goes unkeyed.
    assert {b.partition for b in pack(ENGINE_EXECUTION, items, None, 500, 512_000)} == {None}
    # An event larger than batch_bytes travels alone.
    huge = [(b"k", b"x" * 10_000), (b"k", b"y" * 10)]
    assert [b.count for b in pack(ENGINE_EXECUTION, huge, 4, 500, 1_000)] == [1, 1]


def test_a_batch_names_its_event_type_in_a_header_and_is_keyed_only_on_a_partition() -> None:
    doc = events.execution("gpt-x", "in", "out", latency_ms=1)
    items = [(b"gpt-x", orjson.dumps(doc))]
    [batch] = pack(ENGINE_EXECUTION, items, 4, 500, 512_000)
    assert batch.event_type == ENGINE_EXECUTION
    assert batch.headers == [(EVENT_TYPE_HEADER, b"engine_execution")]
    assert (batch.partition, batch.key, batch.value()) == (
        partition_for(b"gpt-x", 4),
        b"gpt-x",
        items[0][1],
    )
    # Partition count unknown: unkeyed, to any partition, even when alone.
    [anywhere] = pack(ENGINE_EXECUTION, items, None, 500, 512_000)
    assert (anywhere.partition, anywhere.key) == (None, None)
    assert pack(ENGINE_EXECUTION, [], 4, 500, 512_000) == []
