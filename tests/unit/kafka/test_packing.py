"""Packing tests: routed events become per-partition messages, bounded in bytes, none lost.

`partition_for` must be Kafka's default partitioner (murmur2, as the Java client and
aiokafka's DefaultPartitioner compute it), so an entity's events land together whether
they travel alone or packed. `pack` must keep every event exactly once, in order within
its partition, and respect `max_bytes` except for an event that alone exceeds it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.config.topics import EVENT_ROUTES, TopicNames
from streams.domain.router import RoutedEvent
from streams.kafka.packing import Outgoing, pack
from streams.kafka.partitioner import partition_for

NAMES = TopicNames()
TYPED = NAMES.typed
PARTITIONS = {topic: 4 for topic in TYPED.values()}
DEFAULT_PARTITIONER = DefaultPartitioner()


def kafka_partition(key: bytes, partitions: int) -> int:
    everything = list(range(partitions))
    result: int = DEFAULT_PARTITIONER(key, everything, everything)
    return result


def event(event_type: str, key: str, n: int = 0, pad: int = 0) -> RoutedEvent:
    return RoutedEvent(event_type, key, {"key": key, "n": n, "pad": "x" * pad})


def unpack(message: Outgoing) -> list[dict[str, Any]]:
    """The events a message carries: an object is one event, an array several."""
    value = orjson.loads(message.value)
    if isinstance(value, dict):
        return [value]
    assert isinstance(value, list) and len(value) >= 2, "a batch carries two events or more"
    return value


def check_pack(
    events: list[RoutedEvent], partitions: dict[str, int], max_bytes: int
) -> list[Outgoing]:
    """Pack `events` and check every property the router relies on."""
    out = pack(events, TYPED, partitions, max_bytes)
    by_partition: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for message in out:
        carried = unpack(message)
        assert message.count == len(carried)
        keys = {doc["key"] for doc in carried}
        if message.count == 1:
            assert orjson.loads(message.value) == carried[0]
            assert message.key == carried[0]["key"].encode()
        else:
            assert message.value.startswith(b"[") and message.value.endswith(b"]")
            assert len(message.value) <= max_bytes
            assert message.key == (next(iter(keys)).encode() if len(keys) == 1 else None)
        assert 0 <= message.partition < partitions[message.topic]
        for key in keys:
            assert kafka_partition(key.encode(), partitions[message.topic]) == message.partition
        by_partition.setdefault((message.topic, message.partition), []).extend(carried)
    # every event exactly once, in input order within its partition
    expected: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for e in events:
        topic = TYPED[e.event_type]
        where = (topic, kafka_partition(e.key.encode(), partitions[topic]))
        expected.setdefault(where, []).append(e.doc)
    assert by_partition == expected
    assert sum(m.count for m in out) == len(events)
    # greedy: a message is closed only because the next event would not fit
    for first, second in itertools.pairwise(out):
        if (first.topic, first.partition) == (second.topic, second.partition):
            next_body = orjson.dumps(unpack(second)[0])
            bodies = [orjson.dumps(doc) for doc in unpack(first)]
            combined = 2 + sum(len(b) for b in bodies) + len(bodies) + len(next_body)
            assert combined > max_bytes
    return out


# -------------------------------------------------------------- partitioner --

KNOWN_KEYS = [
    b"",
    b"a",
    b"gpt-x",
    b"llm-gw-1",
    b"sess-42",
    b"0123456789abcdef0123456789abcdef",
    "ünïcödé-engine".encode(),
    b"\x00\xff\x80\x7f",
    b"x" * 1000,
]


@pytest.mark.parametrize(
    ("key", "partition"),
    [(b"", 681), (b"a", 524), (b"ab", 434), (b"abc", 107), (b"123456789", 566), (b"\x00 ", 742)],
)
def test_partition_for_matches_the_java_client(key: bytes, partition: int) -> None:
    # vectors from Kafka's Java client (org.apache.kafka.common.utils.Utils.murmur2), 1000
    # partitions, as kafka-python's compatibility test lists them
    assert partition_for(key, 1000) == partition


@pytest.mark.parametrize("partitions", [1, 2, 3, 4, 7, 12, 64, 1000])
def test_partition_for_matches_default_partitioner(partitions: int) -> None:
    for key in KNOWN_KEYS + [f"engine-{i}".encode() for i in range(500)]:
        assert partition_for(key, partitions) == kafka_partition(key, partitions)


@settings(max_examples=500, deadline=None)
@given(key=st.binary(max_size=64) | st.text(max_size=32).map(str.encode), n=st.integers(1, 512))
def test_partition_for_matches_default_partitioner_for_any_key(key: bytes, n: int) -> None:
    assert partition_for(key, n) == kafka_partition(key, n)


def test_keys_spread_over_partitions() -> None:
    used = {partition_for(f"engine-{i}".encode(), 8) for i in range(200)}
    assert used == set(range(8))


# -------------------------------------------------------------------- pack --


def test_nothing_to_pack() -> None:
    assert pack([], TYPED, PARTITIONS, 1000) == []


def test_lone_event_is_an_object_with_its_key() -> None:
    e = event("engine_execution", "gpt-x")
    [message] = check_pack([e], PARTITIONS, 10_000)
    assert message == Outgoing(
        TYPED["engine_execution"],
        partition_for(b"gpt-x", 4),
        b"gpt-x",
        orjson.dumps(e.doc),
        1,
    )


def _keys_in_one_partition(count: int, partitions: int = 4) -> list[str]:
    keys: list[str] = []
    i = 0
    while len(keys) < count:
        key = f"engine-{i}"
        if partition_for(key.encode(), partitions) == 0:
            keys.append(key)
        i += 1
    return keys


def test_several_events_of_one_partition_are_an_array_without_key() -> None:
    keys = _keys_in_one_partition(3)
    events = [event("engine_execution", k, n) for n, k in enumerate(keys)]
    [message] = check_pack(events, PARTITIONS, 10_000)
    assert (message.partition, message.key, message.count) == (0, None, 3)
    assert orjson.loads(message.value) == [e.doc for e in events]


def test_several_events_of_one_key_share_it() -> None:
    events = [event("session_event", "sess-42", n) for n in range(5)]
    [message] = check_pack(events, PARTITIONS, 10_000)
    assert message.key == b"sess-42"
    assert message.count == 5
    assert message.topic == TYPED["session_event"]


def test_groups_by_topic_and_partition() -> None:
    events = [
        event(t, f"id-{i}", i)
        for i in range(40)
        for t in ("engine_execution", "engine_event", "ml_job_command")
    ]
    out = check_pack(events, PARTITIONS, 100_000)
    places = [(m.topic, m.partition) for m in out]
    assert len(places) == len(set(places))  # one message per partition when all fit
    assert {m.topic for m in out} == {
        TYPED["engine_execution"],
        TYPED["engine_event"],
        TYPED["ml_job_command"],
    }
    # an engine's lifecycle and execution events use the same partition number for its id
    for m in out:
        for doc in unpack(m):
            assert m.partition == partition_for(doc["key"].encode(), 4)


def test_partition_counts_per_topic() -> None:
    partitions = {topic: 1 for topic in TYPED.values()}
    partitions[TYPED["engine_execution"]] = 12
    events = [event("engine_execution", f"e-{i}") for i in range(100)]
    events += [event("comparison_result", f"c-{i}") for i in range(10)]
    out = check_pack(events, partitions, 100_000)
    assert {m.partition for m in out if m.topic == TYPED["comparison_result"]} == {0}
    assert len({m.partition for m in out if m.topic == TYPED["engine_execution"]}) == 12


@pytest.mark.parametrize(("slack", "per_message"), [(-1, 2), (0, 3), (1, 3)])
def test_messages_respect_max_bytes(slack: int, per_message: int) -> None:
    events = [event("engine_execution", "gpt-x", n, pad=90) for n in range(10, 60)]
    body = len(orjson.dumps(events[0].doc))
    assert {len(orjson.dumps(e.doc)) for e in events} == {body}
    max_bytes = 3 * body + 4 + slack  # three events: "[", "]" and two commas
    out = check_pack(events, PARTITIONS, max_bytes)
    counts = [per_message] * (50 // per_message) + ([50 % per_message] if 50 % per_message else [])
    assert [m.count for m in out] == counts
    assert all(len(m.value) <= max_bytes for m in out)
    if per_message == 3:
        assert len(out[0].value) == 3 * body + 4


def test_event_larger_than_max_bytes_goes_alone() -> None:
    small = event("engine_execution", "gpt-x", 0)
    big = event("engine_execution", "gpt-x", 1, pad=5000)
    out = check_pack([small, big, small], PARTITIONS, 1000)
    assert [m.count for m in out] == [1, 1, 1]
    assert len(out[1].value) > 1000
    assert out[1].key == b"gpt-x"


def test_unicode_keys() -> None:
    events = [event("engine_event", "ünïcödé", n) for n in range(3)]
    [message] = check_pack(events, PARTITIONS, 10_000)
    assert message.key == "ünïcödé".encode()
    assert message.partition == partition_for("ünïcödé".encode(), 4)


def test_pack_accepts_any_iterable() -> None:
    def generate() -> Iterable[RoutedEvent]:
        for n in range(10):
            yield event("training_sample", f"s-{n % 3}", n)

    out = check_pack(list(generate()), PARTITIONS, 10_000)
    assert pack(generate(), TYPED, PARTITIONS, 10_000) == out


# -------------------------------------------------------------- properties --

routed_events = st.builds(
    event,
    st.sampled_from(list(EVENT_ROUTES)),
    st.sampled_from(["gpt-x", "llm-gw-1", "a", "b", "c", "sess-42", "ü"]) | st.text(max_size=8),
    st.integers(0, 10**6),
    st.integers(0, 300),
)


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(routed_events, max_size=60),
    max_bytes=st.integers(1, 3000),
    counts=st.lists(st.integers(1, 9), min_size=len(TYPED), max_size=len(TYPED)),
)
def test_pack_keeps_every_event_once_and_in_order(
    events: list[RoutedEvent], max_bytes: int, counts: list[int]
) -> None:
    partitions = dict(zip(TYPED.values(), counts, strict=True))
    check_pack(events, partitions, max_bytes)
