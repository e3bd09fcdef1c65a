"""Packing tests: events become per-partition messages, bounded, none lost.

`pack_by_partition` (shared by the router and the SDK) must keep every item exactly
once, in order within its partition (Kafka's default partitioner's, see
test_partitioner.py), and respect `max_events` and `max_bytes` except for an item
that alone exceeds them; a message is keyed only when its items share a key and the
partition is known. The router's `pack` must do so for routed events per typed topic
and carry each message's highest source position.
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
from streams.kafka.packing import Outgoing, Packed, pack, pack_by_partition
from streams.kafka.partitioner import partition_for

NAMES = TopicNames()
TYPED = NAMES.typed
PARTITIONS = {topic: 4 for topic in TYPED.values()}
DEFAULT_PARTITIONER = DefaultPartitioner()


def kafka_partition(key: bytes, partitions: int) -> int:
    everything = list(range(partitions))
    result: int = DEFAULT_PARTITIONER(key, everything, everything)
    return result


def event(
    event_type: str, key: str, n: int = 0, pad: int = 0, offset: int = -1, index: int = -1
) -> RoutedEvent:
    doc = {"key": key, "n": n, "pad": "x" * pad}
    return RoutedEvent(event_type, key, doc, offset, None, index)


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
        assert message.docs == carried  # what the handoff gives readers: the same events
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


# ------------------------------------------------------------ pack_by_partition --

Item = tuple[bytes | None, bytes]


def body(n: int, pad: int = 0) -> bytes:
    return orjson.dumps({"n": n, "pad": "x" * pad})


def check_chunks(
    items: list[Item], partitions: int | None, max_bytes: int, max_events: int | None
) -> list[Packed[Item]]:
    """Pack `items` and check every property both the router and the SDK rely on."""
    out = pack_by_partition(items, partitions, max_bytes, max_events)
    by_partition: dict[int | None, list[Item]] = {}
    for message in out:
        assert message.count == len(message.items) >= 1
        if max_events is not None:
            assert message.count <= max_events
        value = message.value()
        if message.count == 1:
            assert value == message.items[0][1]
        else:
            assert len(value) <= max_bytes
            assert orjson.loads(value) == [orjson.loads(b) for _, b in message.items]
        keys = {key for key, _ in message.items}
        for key in keys:
            expected = None if key is None or partitions is None else partition_for(key, partitions)
            assert message.partition == expected
        shared = next(iter(keys)) if len(keys) == 1 and message.partition is not None else None
        assert message.key == shared
        by_partition.setdefault(message.partition, []).extend(message.items)
    # every item exactly once (the very objects), in input order within its partition
    expected_groups: dict[int | None, list[Item]] = {}
    for item in items:
        key = item[0]
        where = None if key is None or partitions is None else partition_for(key, partitions)
        expected_groups.setdefault(where, []).append(item)
    assert {p: [id(i) for i in g] for p, g in by_partition.items()} == {
        p: [id(i) for i in g] for p, g in expected_groups.items()
    }
    # greedy: a message is closed only because the next item would not fit
    for first, second in itertools.pairwise(out):
        if first.partition == second.partition:
            # the array's brackets, and each body with its comma (or the closing bracket)
            size = 1 + sum(len(b) + 1 for _, b in [*first.items, second.items[0]])
            full = max_events is not None and first.count >= max_events
            assert full or size > max_bytes
    return out


def test_nothing_to_chunk() -> None:
    assert pack_by_partition([], 4, 1000) == []
    assert pack_by_partition([], None, 1000, 10) == []


def test_chunks_respect_max_events() -> None:
    items: list[Item] = [(b"gpt-x", body(n)) for n in range(10)]
    out = check_chunks(items, 4, 1_000_000, 4)
    assert [m.count for m in out] == [4, 4, 2]
    assert {m.key for m in out} == {b"gpt-x"}
    assert [m.items for m in out] == [items[0:4], items[4:8], items[8:10]]


def test_without_partition_count_everything_goes_unkeyed_together() -> None:
    items: list[Item] = [(f"e-{n}".encode(), body(n)) for n in range(6)] + [(None, body(6))]
    [message] = check_chunks(items, None, 1_000_000, None)
    assert (message.partition, message.key, message.count) == (None, None, 7)
    lone = check_chunks([(b"gpt-x", body(0))], None, 1000, None)
    assert [(m.partition, m.key) for m in lone] == [(None, None)]


def test_keyless_items_go_to_no_partition_in_particular() -> None:
    items: list[Item] = [(None, body(0)), (b"gpt-x", body(1)), (None, body(2))]
    out = check_chunks(items, 4, 1000, None)
    assert [(m.partition, m.key, m.count) for m in out] == [
        (None, None, 2),
        (partition_for(b"gpt-x", 4), b"gpt-x", 1),
    ]


def test_an_item_over_both_bounds_travels_alone() -> None:
    items: list[Item] = [(b"k", body(0)), (b"k", body(1, pad=5000)), (b"k", body(2))]
    out = check_chunks(items, 4, 1000, 1)
    assert [m.count for m in out] == [1, 1, 1]
    assert out[1].value() == items[1][1]


def test_items_carry_what_the_caller_adds() -> None:
    items = [(b"a", body(n), ("anything", n)) for n in range(3)]
    [message] = pack_by_partition(items, 4, 1000)
    assert message.items == items and message.items[2][2] == ("anything", 2)


def test_a_topic_without_partitions_is_an_error() -> None:
    with pytest.raises(ValueError):
        pack_by_partition([(b"a", body(0))], 0, 1000)


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(
        st.tuples(
            st.sampled_from([None, b"gpt-x", b"a", b"b", b"sess-42"]) | st.binary(max_size=6),
            st.builds(body, st.integers(0, 10**6), st.integers(0, 300)),
        ),
        max_size=60,
    ),
    partitions=st.none() | st.integers(1, 9),
    max_bytes=st.integers(1, 3000),
    max_events=st.none() | st.integers(1, 8),
)
def test_chunks_keep_every_item_once_and_in_order(
    items: list[Item], partitions: int | None, max_bytes: int, max_events: int | None
) -> None:
    check_chunks(items, partitions, max_bytes, max_events)


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
        docs=[e.doc],
    )


def test_a_message_with_an_event_from_a_binary_wire_hands_no_decoded_events() -> None:
    """An Avro event's document may hold bytes; only its JSON body is the truth."""
    avro = RoutedEvent("engine_execution", "k", {"key": "k", "blob": b"\x00"}, 3,
                       b'{"key":"k","blob":"AA=="}', 0, binary=True)  # fmt: skip
    [message] = pack([event("engine_execution", "k"), avro], TYPED, PARTITIONS, 10_000)
    assert message.count == 2 and message.docs == []


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


def test_a_message_carries_the_highest_source_position_of_its_events() -> None:
    events = [
        event("engine_execution", "gpt-x", n, offset=offset, index=index)
        for n, (offset, index) in enumerate([(7, 2), (9, -1), (7, 5), (8, 0)])
    ]
    [message] = check_pack(events, PARTITIONS, 10_000)
    assert message.source_position == (9, -1)
    alone = check_pack(events, PARTITIONS, 1)
    assert [m.source_position for m in alone] == [(7, 2), (9, -1), (7, 5), (8, 0)]
    other = event("session_event", "sess-42", offset=3, index=1)
    assert [m.source_position for m in check_pack([*events, other], PARTITIONS, 10_000)] == [
        (9, -1),
        (3, 1),
    ]


def test_pre_encoded_bodies_are_sent_as_they_are() -> None:
    raw = b'{"key": "gpt-x",  "n": 1}'  # not orjson's spacing: kept to the byte
    routed = RoutedEvent("engine_execution", "gpt-x", {"key": "gpt-x", "n": 1}, 4, raw, -1)
    [message] = pack([routed], TYPED, PARTITIONS, 10_000)
    assert message.value == raw and message.source_position == (4, -1)


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
