"""streams.runtime.worker.tune_gc: startup objects frozen, full collections rarer."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from streams.runtime.worker import GC_THRESHOLDS, tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restore_gc")
def test_tune_gc_freezes_what_is_loaded_and_raises_the_full_collection_threshold() -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    tune_gc()
    assert gc.get_freeze_count() > 1000  # the modules and objects loaded so far
    assert gc.get_threshold() == GC_THRESHOLDS
    assert GC_THRESHOLDS[2] > 10  # CPython's default full-collection threshold
