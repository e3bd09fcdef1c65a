"""Model store: atomic, size-capped, nothing left behind on refusal."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from streams.durable import model_store
from streams.durable.model_store import (
    MAX_MODEL_BYTES,
    ModelTooLarge,
    load_model,
    save_model,
)


class SimulatedCrash(Exception):
    pass


class CountingStream(io.RawIOBase):
    """An endless stream of b"x" that records how much was read from it."""

    def __init__(self, size: int | None = None) -> None:
        self.size = size
        self.delivered = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = len(buffer)
        if self.size is not None:
            n = min(n, self.size - self.delivered)
        buffer[:n] = b"x" * n
        self.delivered += n
        return n


def models(tmp_path: Path) -> list[str]:
    directory = tmp_path / "models"
    return sorted(os.listdir(directory)) if directory.exists() else []


def test_cap_is_200_mb() -> None:
    assert MAX_MODEL_BYTES == 200_000_000
    assert issubclass(ModelTooLarge, ValueError)


def test_bytes_saved_and_loadable(tmp_path: Path) -> None:
    path = save_model(tmp_path, "ranker-v1.bin", b"\x00weights\xff")
    assert path == tmp_path / "models" / "ranker-v1.bin"
    assert load_model(tmp_path, "ranker-v1.bin") == b"\x00weights\xff"
    assert models(tmp_path) == ["ranker-v1.bin"]


def test_exactly_at_the_cap_is_accepted(tmp_path: Path) -> None:
    save_model(tmp_path, "m", b"y" * 100, max_bytes=100)
    assert load_model(tmp_path, "m") == b"y" * 100
    save_model(tmp_path, "s", io.BytesIO(b"z" * 100), max_bytes=100)
    assert load_model(tmp_path, "s") == b"z" * 100


def test_save_replaces_an_existing_model(tmp_path: Path) -> None:
    save_model(tmp_path, "m", b"old")
    save_model(tmp_path, "m", io.BytesIO(b"new and longer"))
    assert load_model(tmp_path, "m") == b"new and longer"
    assert models(tmp_path) == ["m"]


def test_stream_saved_and_loadable(tmp_path: Path) -> None:
    data = os.urandom(3 * model_store.CHUNK_BYTES + 123)
    save_model(tmp_path, "big", io.BytesIO(data))
    assert load_model(tmp_path, "big") == data
    with open(tmp_path / "models" / "big", "rb") as f:
        save_model(tmp_path, "copy", f)
    assert load_model(tmp_path, "copy") == data
    assert models(tmp_path) == ["big", "copy"]


def test_bytes_over_the_cap(tmp_path: Path) -> None:
    with pytest.raises(ModelTooLarge):
        save_model(tmp_path, "m", b"y" * 101, max_bytes=100)
    assert models(tmp_path) == []


def test_bytes_over_the_cap_keeps_the_old_model(tmp_path: Path) -> None:
    save_model(tmp_path, "m", b"old", max_bytes=10)
    with pytest.raises(ModelTooLarge):
        save_model(tmp_path, "m", b"y" * 11, max_bytes=10)
    with pytest.raises(ModelTooLarge):
        save_model(tmp_path, "m", io.BytesIO(b"y" * 11), max_bytes=10)
    assert load_model(tmp_path, "m") == b"old"
    assert models(tmp_path) == ["m"]


def test_stream_over_the_cap_aborts_early(tmp_path: Path) -> None:
    endless = CountingStream()  # would never end: only the cap stops the copy
    with pytest.raises(ModelTooLarge):
        save_model(tmp_path, "m", io.BufferedReader(endless), max_bytes=5_000_000)
    assert models(tmp_path) == []
    # read at most one buffer past the cap
    assert endless.delivered <= 5_000_000 + model_store.CHUNK_BYTES


def test_stream_just_over_the_cap(tmp_path: Path) -> None:
    stream = CountingStream(size=1001)
    with pytest.raises(ModelTooLarge):
        save_model(tmp_path, "m", stream, max_bytes=1000)  # type: ignore[arg-type]
    assert models(tmp_path) == []
    assert stream.delivered == 1001


def test_default_cap_applies_to_streams(tmp_path: Path) -> None:
    stream = CountingStream(size=MAX_MODEL_BYTES + 1)
    with pytest.raises(ModelTooLarge):
        save_model(tmp_path, "m", stream)  # type: ignore[arg-type]
    assert models(tmp_path) == []


def test_failure_during_rename_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object) -> None:
        raise SimulatedCrash

    monkeypatch.setattr(model_store.os, "replace", crash)
    with pytest.raises(SimulatedCrash):
        save_model(tmp_path, "m", io.BytesIO(b"abc"))
    with pytest.raises(SimulatedCrash):
        save_model(tmp_path, "m", b"abc")
    monkeypatch.undo()
    assert models(tmp_path) == []


@pytest.mark.parametrize(
    "name", ["", "a/b", "../m", "..", ".", "a\\b", "x..y", ".hidden", "/abs", "nul\x00"]
)
def test_bad_names_rejected(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError) as info:
        save_model(tmp_path, name, b"x")
    assert not isinstance(info.value, ModelTooLarge)
    with pytest.raises(ValueError):
        load_model(tmp_path, name)
    assert models(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) in ([], ["models"])


def test_load_missing_model(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path, "nope")
