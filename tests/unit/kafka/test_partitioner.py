"""`partition_for` is Kafka's default partitioner: the router and the SDK place events
where Kafka's Java client (and aiokafka's DefaultPartitioner) would, so an entity's
events land together whether they travel alone or packed. Murmur2 test vectors from
Kafka's own UtilsTest, the partition formula of its default partitioner, and
aiokafka's partitioner for any key.
"""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner, murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.kafka.partitioner import partition_for

# clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java (testMurmur2)
KAFKA_VECTORS = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
}


def _signed(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


@pytest.mark.parametrize(("text", "expected"), sorted(KAFKA_VECTORS.items()))
def test_murmur2_matches_kafka(text: str, expected: int) -> None:
    assert _signed(murmur2(text.encode())) == expected


@pytest.mark.parametrize(("text", "expected"), sorted(KAFKA_VECTORS.items()))
@pytest.mark.parametrize("partitions", [1, 3, 4, 12])
def test_partition_is_kafka_default(text: str, expected: int, partitions: int) -> None:
    # Java: Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions
    assert partition_for(text.encode(), partitions) == (expected & 0x7FFFFFFF) % partitions


# --- against aiokafka's default partitioner -------------------------------------------

DEFAULT_PARTITIONER = DefaultPartitioner()


def kafka_partition(key: bytes, partitions: int) -> int:
    everything = list(range(partitions))
    result: int = DEFAULT_PARTITIONER(key, everything, everything)
    return result


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


def test_a_topic_without_partitions_has_no_partition() -> None:
    with pytest.raises(ValueError, match="at least one partition"):
        partition_for(b"gpt-x", 0)
