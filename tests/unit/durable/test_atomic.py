"""atomic_replace: whole content or the old one, and no temp file left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streams.durable import atomic
from streams.durable.atomic import atomic_replace, fsync_dir


class SimulatedCrash(Exception):
    pass


def test_creates_a_new_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic_replace(target, b'{"a":1}')
    assert target.read_bytes() == b'{"a":1}'
    assert os.listdir(tmp_path) == ["state.json"]


def test_replaces_content_whole(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old content that is longer than the new one")
    atomic_replace(target, b"new")
    assert target.read_bytes() == b"new"
    atomic_replace(target, b"")
    assert target.read_bytes() == b""
    assert os.listdir(tmp_path) == ["state.json"]


def test_large_content(tmp_path: Path) -> None:
    target = tmp_path / "big.bin"
    data = os.urandom(3 * 1024 * 1024 + 7)
    atomic_replace(target, data)
    assert target.read_bytes() == data


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_crash_before_rename_keeps_old_file_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")

    def crash(*args: object) -> None:
        raise SimulatedCrash

    monkeypatch.setattr(atomic.os, failing, crash)
    with pytest.raises(SimulatedCrash):
        atomic_replace(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["state.json"]


def test_crash_on_first_write_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state.json"

    def crash(*args: object) -> None:
        raise SimulatedCrash

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(SimulatedCrash):
        atomic_replace(target, b"new")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_directory_is_fsynced_after_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_replace, real_fsync_dir = os.replace, atomic.fsync_dir

    def replace(src: str, dst: Path) -> None:
        calls.append("replace")
        real_replace(src, dst)

    def sync_dir(path: Path) -> None:
        calls.append(f"fsync_dir {Path(path).name}")
        real_fsync_dir(path)

    monkeypatch.setattr(atomic.os, "replace", replace)
    monkeypatch.setattr(atomic, "fsync_dir", sync_dir)
    atomic_replace(tmp_path / "f", b"x")
    assert calls == ["replace", f"fsync_dir {tmp_path.name}"]


def test_fsync_dir_accepts_a_directory(tmp_path: Path) -> None:
    fsync_dir(tmp_path)
    with pytest.raises(FileNotFoundError):
        fsync_dir(tmp_path / "missing")
