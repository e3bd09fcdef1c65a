"""The router places events where Kafka's Java client would: murmur2 test vectors
from Kafka's own UtilsTest, and the partition formula of its default partitioner."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import murmur2

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
