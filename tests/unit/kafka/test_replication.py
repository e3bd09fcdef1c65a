"""Replica counts decided from the cluster's size (streams.kafka.admin.replication)."""

from __future__ import annotations

import pytest

from streams.config.settings import Settings
from streams.kafka.admin import replication


@pytest.mark.parametrize(
    ("brokers", "expected"), [(1, (1, 1)), (2, (1, 1)), (3, (3, 2)), (5, (3, 2))]
)
def test_auto_replicas_follow_the_cluster(brokers: int, expected: tuple[int, int]) -> None:
    decided = replication(Settings(), brokers)
    assert (decided.replication_factor, decided.min_insync_replicas) == expected


def test_explicit_counts_are_kept() -> None:
    decided = replication(Settings(replication_factor=2, min_insync_replicas=1), 3)
    assert (decided.replication_factor, decided.min_insync_replicas) == (2, 1)


def test_in_sync_never_exceeds_the_replicas() -> None:
    decided = replication(Settings(replication_factor=1, min_insync_replicas=2), 3)
    assert (decided.replication_factor, decided.min_insync_replicas) == (1, 1)


def test_explicit_factor_with_auto_in_sync() -> None:
    decided = replication(Settings(replication_factor=3), 1)
    assert (decided.replication_factor, decided.min_insync_replicas) == (3, 2)
