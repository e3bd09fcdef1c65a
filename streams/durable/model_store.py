"""Model binaries under ``<data_dir>/models/<name>``, saved atomically, size-capped.

A model is written to a temporary file in ``models/`` (``.<name>.<random>.tmp``),
fsynced, renamed over its final name and the directory fsynced: a reader sees the old
model or the new one, whole. A model larger than the cap is refused; when it arrives
as a stream, the copy stops as soon as the cap is exceeded (reading at most one byte
past it) and the temporary file is removed, so nothing is left behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from streams.durable.atomic import atomic_file, atomic_replace, fsync_dir

MAX_MODEL_BYTES = 200_000_000
CHUNK_BYTES = 1024 * 1024
MODELS_DIR = "models"


class ModelTooLarge(ValueError):
    """The model exceeds the size cap."""


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError("model name must be a non-empty string")
    if "/" in name or "\\" in name or (os.altsep and os.altsep in name) or "\x00" in name:
        raise ValueError(f"model name must not contain path separators: {name!r}")
    if ".." in name:
        raise ValueError(f"model name must not contain '..': {name!r}")
    if name.startswith("."):
        # Names starting with "." are reserved for the store's temporary files.
        raise ValueError(f"model name must not start with '.': {name!r}")


def model_path(data_dir: Path, name: str) -> Path:
    """Where model `name` lives (after validating the name)."""
    _check_name(name)
    return Path(data_dir) / MODELS_DIR / name


def _models_dir(data_dir: Path) -> Path:
    models = Path(data_dir) / MODELS_DIR
    if not models.is_dir():
        models.mkdir(parents=True, exist_ok=True)
        fsync_dir(models.parent)
    return models


def _stream_to(path: Path, source: BinaryIO, max_bytes: int) -> None:
    with atomic_file(path) as tmp:
        total = 0
        while True:
            # Never ask for more than one byte past the cap.
            chunk = source.read(min(CHUNK_BYTES, max_bytes - total + 1))
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                raise ModelTooLarge(f"model {path.name!r} exceeds {max_bytes} bytes")
            tmp.write(chunk)


def save_model(
    data_dir: Path, name: str, data: bytes | BinaryIO, max_bytes: int = MAX_MODEL_BYTES
) -> Path:
    """Store model `name` atomically under ``<data_dir>/models/`` and return its path.

    `data` is the model's bytes or a binary file object read to its end. Raises
    ValueError for a bad name (empty, a path separator, "..", a leading ".") and
    `ModelTooLarge` when the model has more than `max_bytes` bytes; either way nothing
    is written (an existing model of that name keeps its old content).
    """
    path = model_path(data_dir, name)
    if max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
    if isinstance(data, bytes | bytearray | memoryview):
        payload = bytes(data)  # no copy for bytes
        if len(payload) > max_bytes:
            raise ModelTooLarge(f"model {name!r} has {len(payload)} bytes, more than {max_bytes}")
        _models_dir(data_dir)
        atomic_replace(path, payload)
    else:
        _models_dir(data_dir)
        _stream_to(path, data, max_bytes)
    return path


def load_model(data_dir: Path, name: str) -> bytes:
    """The bytes of model `name`; FileNotFoundError if there is none."""
    return model_path(data_dir, name).read_bytes()
